//! What the OS can tell about a run: CPU time, block-device counters, the
//! filesystem and device under a directory.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// User and system CPU time.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct CpuTime {
    pub user_s: f64,
    pub sys_s: f64,
}

impl CpuTime {
    pub fn total_s(&self) -> f64 {
        self.user_s + self.sys_s
    }

    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime { user_s: self.user_s - earlier.user_s, sys_s: self.sys_s - earlier.sys_s }
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn rusage(who: libc::c_int) -> CpuTime {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage cannot fail with valid arguments");
    CpuTime { user_s: tv(ru.ru_utime), sys_s: tv(ru.ru_stime) }
}

/// CPU time of the whole process: every thread, including io_uring's io-wq
/// workers and glommio's blocking pool, which are threads of this process.
pub fn process_cpu() -> CpuTime {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of the calling thread only (the executor, when called on it).
pub fn thread_cpu() -> CpuTime {
    rusage(libc::RUSAGE_THREAD)
}

/// Counters of a block device, from `/sys/dev/block/MAJ:MIN/stat`
/// (Documentation/block/stat.rst).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct DiskStat {
    pub reads: u64,
    pub read_sectors: u64,
    pub writes: u64,
    pub write_sectors: u64,
    pub flushes: u64,
    /// Milliseconds with at least one request in flight.
    pub io_ticks_ms: u64,
    /// Sum over requests of their time in the device, milliseconds.
    pub weighted_ms: u64,
}

impl DiskStat {
    pub fn since(&self, e: &DiskStat) -> DiskStat {
        DiskStat {
            reads: self.reads - e.reads,
            read_sectors: self.read_sectors - e.read_sectors,
            writes: self.writes - e.writes,
            write_sectors: self.write_sectors - e.write_sectors,
            flushes: self.flushes - e.flushes,
            io_ticks_ms: self.io_ticks_ms - e.io_ticks_ms,
            weighted_ms: self.weighted_ms - e.weighted_ms,
        }
    }

    /// Average size of a write request that reached the device, KiB.
    pub fn avg_write_kib(&self) -> f64 {
        if self.writes == 0 {
            0.0
        } else {
            self.write_sectors as f64 * 512.0 / 1024.0 / self.writes as f64
        }
    }

    pub fn avg_read_kib(&self) -> f64 {
        if self.reads == 0 {
            0.0
        } else {
            self.read_sectors as f64 * 512.0 / 1024.0 / self.reads as f64
        }
    }

    /// Average number of requests in flight over `wall`.
    pub fn avg_queue_depth(&self, wall: Duration) -> f64 {
        self.weighted_ms as f64 / (wall.as_secs_f64() * 1000.0).max(1e-9)
    }
}

/// The block device holding `path`, as the `/sys/dev/block` entry of its
/// whole disk (for a partition, its parent, whose counters include it).
pub fn block_device_of(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if !sys.exists() {
        return None;
    }
    // A partition's directory has a `partition` file; use the disk above it.
    if sys.join("partition").exists() {
        let real = std::fs::canonicalize(&sys).ok()?;
        return real.parent().map(Path::to_path_buf);
    }
    std::fs::canonicalize(&sys).ok()
}

/// Current counters of the device at `sys_dir` (from [`block_device_of`]).
pub fn disk_stat(sys_dir: &Path) -> Option<DiskStat> {
    let s = std::fs::read_to_string(sys_dir.join("stat")).ok()?;
    let f: Vec<u64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    if f.len() < 11 {
        return None;
    }
    Some(DiskStat {
        reads: f[0],
        read_sectors: f[2],
        writes: f[4],
        write_sectors: f[6],
        flushes: f.get(15).copied().unwrap_or(0),
        io_ticks_ms: f[9],
        weighted_ms: f[10],
    })
}

/// Filesystem type of `path` (from /proc/self/mounts, longest matching
/// mount point), e.g. "ext4" or "tmpfs".
pub fn fs_type(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut it = line.split_whitespace();
        let (_dev, mnt, fs) = (it.next()?, it.next()?, it.next()?);
        if path.starts_with(mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() > *l) {
            best = Some((mnt.len(), fs.to_string()));
        }
    }
    best.map(|(_, fs)| fs)
}

/// Creates `dir` (and parents) and checks it is a writable directory on a
/// filesystem that supports direct I/O, so a bad `--dir` fails with one
/// clear line instead of deep inside a benchmark.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    // Check the filesystem of the nearest existing ancestor before creating
    // anything, so a tmpfs path is refused without leaving a directory.
    let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    if let Some(fs) = fs_type(existing) {
        if fs == "tmpfs" || fs == "ramfs" {
            return Err(format!("{} is on {fs}: no direct I/O there; pick a directory on a real disk", dir.display()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(".spindle-bench-write-probe");
    std::fs::write(&probe, b"x").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// JSON has no NaN: serde_json writes an unknown (NaN) measurement as
/// `null`; this reads it back as NaN.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Percentile `p` (0..=100) of `sorted` (ascending), nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_measurements_survive_a_json_round_trip() {
        #[derive(Serialize, Deserialize)]
        struct M {
            #[serde(deserialize_with = "f64_or_nan")]
            v: f64,
        }
        let text = serde_json::to_string(&M { v: f64::NAN }).unwrap();
        assert_eq!(text, r#"{"v":null}"#);
        assert!(serde_json::from_str::<M>(&text).unwrap().v.is_nan());
        assert_eq!(serde_json::from_str::<M>(r#"{"v":2.5}"#).unwrap().v, 2.5);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn process_cpu_time_grows_with_work() {
        let a = process_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process_cpu().since(&a).total_s() > 0.0);
    }
}
