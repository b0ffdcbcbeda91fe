//! Blocking helpers for the few files written outside a core's executor
//! (the broker's topic registry, shared by all cores under a lock). They
//! live here so that the engine stays the only crate that touches files.

use std::io::{self, Write};
use std::path::Path;

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
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
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

/// Removes a directory tree, then makes the removal durable.
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::remove_dir_all(dir)?;
    std::fs::File::open(dir.parent().unwrap_or(Path::new(".")))?.sync_all()
}
