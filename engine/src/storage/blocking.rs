//! Blocking helpers for the few files written outside a core's executor
//! (the broker's topic registry, shared by all cores under a lock). They
//! live here so that the engine stays the only crate that touches files.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `data` atomically and durably (temp file, fsync,
/// rename, directory fsync).
pub fn write_file_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The content of `path`, or `None` if it does not exist.
pub fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn create_dir_all(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Takes an exclusive advisory lock on `DIR/.lock` so two brokers never
/// share a data directory. The lock lives as long as the returned file.
pub fn lock_dir(dir: &Path) -> io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid, owned descriptor.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is in use by another process", dir.display()),
        ));
    }
    Ok(f)
}

/// Names of the subdirectories of `dir`.
pub fn list_subdirs(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes a directory tree, then makes the removal durable. A missing
/// tree is nothing to do.
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
}

/// Makes `dir`'s entries durable (renames, removals).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The regular files directly in `dir`, with their sizes, by name.
pub fn list_files_with_sizes(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_file() {
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Shrinks (or grows) the file at `path` to `size` bytes.
pub fn truncate_file(path: &Path, size: u64) -> io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(size)
}

/// The fraction of the file system holding `path` that is free for
/// unprivileged use (`statvfs`'s available blocks over its blocks).
pub fn free_fraction(path: &Path) -> io::Result<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid
    // NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.f_blocks == 0 {
        return Ok(1.0);
    }
    Ok(st.f_bavail as f64 / st.f_blocks as f64)
}

/// The length of the regular file at `path`; 0 for anything else,
/// including a missing path.
pub fn file_len(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).ok().filter(|m| m.is_file()).map_or(0, |m| m.len())
}

/// Removes a file; a missing one is nothing to do.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_fraction_matches_df_and_fails_for_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = free_fraction(dir.path()).unwrap();
        assert!(f > 0.0 && f <= 1.0, "{f}");
        // df's own figures, in 1K blocks: available over size.
        let out = std::process::Command::new("df").arg("-Pk").arg(dir.path()).output().unwrap();
        let line = String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().to_string();
        let cols: Vec<f64> = line.split_whitespace().skip(1).take(3).map(|c| c.parse().unwrap()).collect();
        let df = cols[2] / cols[0];
        assert!((f - df).abs() < 0.01, "statvfs {f}, df {df}");
        assert!(free_fraction(&dir.path().join("missing")).is_err());
    }
}
