//! This host's physical limits, measured in the same run as the engine
//! numbers they put in proportion.
//!
//! Disk numbers come from `fio` when it is installed (its JSON output is
//! parsed), because fio is what anyone else would run to check them; without
//! fio, from built-in loops of `pwrite`/`pread` on an `O_DIRECT` file with
//! one thread per outstanding request. Loopback TCP, memcpy and CRC-32C are
//! always built in: they are not disk questions and fio has no good answer.
//!
//! Every write job starts from a fresh file, as a new log segment does. fio
//! lays a new file out with `fallocate` (full size, unwritten extents); the
//! `append` job instead writes past the end of an empty file, as the engine
//! does (it preallocates with `FALLOC_FL_KEEP_SIZE`), which on ext4 turns
//! every direct write into an i_size-extending one. Reads run on a file
//! written in full first, so no read hits an unwritten extent (which the
//! filesystem answers with zeros without touching the disk).

use crate::sys::{percentile, prepare_dir};
use crate::{GB, MIB};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LimitsOptions {
    pub dir: PathBuf,
    /// File size of each bandwidth job.
    pub size_mib: u64,
    /// Cap on each job's duration.
    pub runtime_s: u64,
    /// Queue depth of the headline jobs.
    pub iodepth: u32,
    /// Runs of each bandwidth job; the median is reported.
    pub repeat: u32,
    /// Use fio if it is installed.
    pub use_fio: bool,
    pub tcp_secs: f64,
}

/// One measured quantity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub value: f64,
    pub unit: String,
    /// How it was measured (tool and parameters).
    pub how: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Limits {
    /// "fio-3.33" or "built-in".
    pub disk_tool: String,
    pub dir: String,
    pub rows: Vec<Row>,
    /// Headline: 1 MiB O_DIRECT sequential writes to a fresh preallocated
    /// file at the headline queue depth. The denominator of the append ratio.
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub direct_write_1m_mib_s: f64,
    /// Same, but appending past end of file (the engine's pattern).
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub direct_append_1m_mib_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub direct_read_1m_mib_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub fdatasync_p50_us: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub fdatasync_p99_us: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub tcp_loopback_gb_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub memcpy_gb_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub crc32c_gb_s: f64,
}

/// `fio --version`, or `None` if fio is not installed.
pub fn fio_version() -> Option<String> {
    let out = Command::new("fio").arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn measure(opts: &LimitsOptions) -> Result<Limits, String> {
    prepare_dir(&opts.dir)?;
    let fio = if opts.use_fio { fio_version() } else { None };
    let mut rows = Vec::new();
    let disk = match &fio {
        Some(v) => {
            eprintln!("limits: disk jobs with {v}");
            disk_with_fio(opts, &mut rows)?
        }
        None => {
            eprintln!("limits: fio not used; built-in direct-I/O loops");
            disk_built_in(opts, &mut rows)?
        }
    };
    let tcp = tcp_loopback_gb_s(opts.tcp_secs).map_err(|e| format!("loopback TCP: {e}"))?;
    rows.push(Row {
        name: "tcp loopback".into(),
        value: tcp,
        unit: "GB/s".into(),
        how: format!("built-in: one connection, 1 MiB writes, {:.0} s", opts.tcp_secs),
    });
    let memcpy = memcpy_gb_s();
    rows.push(Row {
        name: "memcpy".into(),
        value: memcpy,
        unit: "GB/s".into(),
        how: "built-in: 64 MiB copy_from_slice, one thread".into(),
    });
    let crc = crc32c_gb_s();
    rows.push(Row {
        name: "crc32c".into(),
        value: crc,
        unit: "GB/s".into(),
        how: "built-in: crc32c crate over 64 MiB, one thread".into(),
    });
    Ok(Limits {
        disk_tool: fio.unwrap_or_else(|| "built-in".into()),
        dir: opts.dir.display().to_string(),
        rows,
        direct_write_1m_mib_s: disk.write_1m,
        direct_append_1m_mib_s: disk.append_1m,
        direct_read_1m_mib_s: disk.read_1m,
        fdatasync_p50_us: disk.sync_p50_us,
        fdatasync_p99_us: disk.sync_p99_us,
        tcp_loopback_gb_s: tcp,
        memcpy_gb_s: memcpy,
        crc32c_gb_s: crc,
    })
}

struct DiskHeadlines {
    write_1m: f64,
    append_1m: f64,
    read_1m: f64,
    sync_p50_us: f64,
    sync_p99_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------
// fio
// ---------------------------------------------------------------------------

struct FioJob {
    name: String,
    rw: &'static str,
    bs: &'static str,
    iodepth: u32,
    /// Write past the end of an initially empty file.
    append: bool,
    /// Cap the job at `runtime_s` (otherwise it writes the whole size).
    capped: bool,
    /// File to use.
    file: &'static str,
    /// Delete the file first (a new segment); otherwise overwrite it.
    fresh: bool,
    extra: Vec<String>,
}

struct FioResult {
    bw_mib_s: f64,
    iops: f64,
    clat_p50_us: f64,
    clat_p99_us: f64,
    sync_p50_us: f64,
    sync_p99_us: f64,
}

fn fio_args(job: &FioJob, opts: &LimitsOptions) -> Vec<String> {
    let mut a = vec![
        format!("--name={}", job.name),
        format!("--filename={}", opts.dir.join(job.file).display()),
        format!("--rw={}", job.rw),
        format!("--bs={}", job.bs),
        format!("--iodepth={}", job.iodepth),
        "--direct=1".into(),
        format!("--size={}M", opts.size_mib),
        "--output-format=json".into(),
    ];
    if !job.extra.iter().any(|e| e.starts_with("--ioengine")) {
        a.push("--ioengine=io_uring".into());
    }
    if job.rw == "write" {
        a.push("--end_fsync=1".into());
    }
    if job.append {
        a.push("--file_append=1".into());
    }
    if job.capped {
        a.push(format!("--runtime={}", opts.runtime_s));
    }
    a.extend(job.extra.iter().cloned());
    a
}

/// The command line of a fio job, for the record.
fn fio_cmdline(job: &FioJob, opts: &LimitsOptions) -> String {
    let mut s = String::from("fio");
    for a in fio_args(job, opts) {
        if a != "--output-format=json" {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

fn run_fio(job: &FioJob, opts: &LimitsOptions) -> Result<FioResult, String> {
    let path = opts.dir.join(job.file);
    if job.fresh {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", path.display())),
        }
        if job.append {
            std::fs::write(&path, b"").map_err(|e| format!("create {}: {e}", path.display()))?;
        }
    }
    let out = Command::new("fio").args(fio_args(job, opts)).output().map_err(|e| format!("run fio: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "fio job {} failed ({}): {}",
            job.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("")
        ));
    }
    parse_fio_json(&String::from_utf8_lossy(&out.stdout), job.rw)
        .map_err(|e| format!("fio job {}: cannot parse JSON output: {e}", job.name))
}

/// The percentile `p` ("50.000000") of a fio latency object, in µs.
fn fio_pct(lat: &serde_json::Value, p: &str) -> f64 {
    lat.get("percentile").and_then(|x| x.get(p)).and_then(|x| x.as_f64()).map_or(f64::NAN, |ns| ns / 1000.0)
}

/// Extracts bandwidth and latencies of the first job from fio's JSON. fio
/// may print warnings before the JSON; they are skipped.
fn parse_fio_json(text: &str, rw: &str) -> Result<FioResult, String> {
    let start = text.find('{').ok_or("no JSON object")?;
    let v: serde_json::Value = serde_json::from_str(&text[start..]).map_err(|e| e.to_string())?;
    let job = v.get("jobs").and_then(|j| j.get(0)).ok_or("no jobs[0]")?;
    if job.get("error").and_then(|e| e.as_i64()).unwrap_or(0) != 0 {
        return Err(format!("job error {}", job["error"]));
    }
    let dir = if rw.contains("read") { "read" } else { "write" };
    let d = job.get(dir).ok_or("no read/write section")?;
    let bw = d.get("bw_bytes").and_then(|x| x.as_f64()).ok_or("no bw_bytes")?;
    let iops = d.get("iops").and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let clat = d.get("clat_ns").cloned().unwrap_or_default();
    let sync = job.get("sync").and_then(|s| s.get("lat_ns")).cloned().unwrap_or_default();
    Ok(FioResult {
        bw_mib_s: bw / MIB,
        iops,
        clat_p50_us: fio_pct(&clat, "50.000000"),
        clat_p99_us: fio_pct(&clat, "99.000000"),
        sync_p50_us: fio_pct(&sync, "50.000000"),
        sync_p99_us: fio_pct(&sync, "99.000000"),
    })
}

fn disk_with_fio(opts: &LimitsOptions, rows: &mut Vec<Row>) -> Result<DiskHeadlines, String> {
    let qd = opts.iodepth;
    let bw_job = |name: String, rw: &'static str, bs: &'static str, iodepth: u32, append: bool| FioJob {
        name,
        rw,
        bs,
        iodepth,
        append,
        capped: true,
        file: if rw == "write" { "fio-write.dat" } else { "fio-read.dat" },
        fresh: rw == "write",
        extra: vec![],
    };
    // The read file is written in full (uncapped) before any read job.
    let prepare =
        FioJob { capped: false, file: "fio-read.dat", ..bw_job("prepare-read-file".into(), "write", "1M", qd, false) };
    let write_jobs = vec![
        (bw_job("write-1m-qd1".into(), "write", "1M", 1, false), false),
        (bw_job(format!("write-1m-qd{qd}"), "write", "1M", qd, false), true),
        (bw_job("write-1m-qd32".into(), "write", "1M", 32, false), false),
        (bw_job(format!("append-1m-qd{qd}"), "write", "1M", qd, true), false),
        (bw_job("write-16k-qd1".into(), "write", "16k", 1, false), false),
        (bw_job("write-16k-qd32".into(), "write", "16k", 32, false), false),
    ];
    let read_jobs = vec![
        (bw_job("read-1m-qd1".into(), "read", "1M", 1, false), false),
        (bw_job(format!("read-1m-qd{qd}"), "read", "1M", qd, false), true),
        (bw_job("read-16k-qd1".into(), "read", "16k", 1, false), false),
        (bw_job("read-16k-qd32".into(), "read", "16k", 32, false), false),
    ];
    let mut h =
        DiskHeadlines { write_1m: 0.0, append_1m: 0.0, read_1m: 0.0, sync_p50_us: f64::NAN, sync_p99_us: f64::NAN };
    let bandwidth = |job: &FioJob, headline: bool, rows: &mut Vec<Row>| -> Result<f64, String> {
        let mut runs = Vec::new();
        for _ in 0..opts.repeat.max(1) {
            let r = run_fio(job, opts)?;
            eprintln!("  {:<16} {:>8.0} MiB/s  p99 {:>8.0} us", job.name, r.bw_mib_s, r.clat_p99_us);
            runs.push(r);
        }
        let bws: Vec<f64> = runs.iter().map(|r| r.bw_mib_s).collect();
        let (lo, hi) = (bws.iter().cloned().fold(f64::INFINITY, f64::min), bws.iter().cloned().fold(0.0, f64::max));
        let med = median(bws);
        let iops = median(runs.iter().map(|r| r.iops).collect());
        let p99 = median(runs.iter().map(|r| r.clat_p99_us).collect());
        rows.push(Row {
            name: format!("{}{}", job.name, if headline { " *" } else { "" }),
            value: med,
            unit: "MiB/s".into(),
            how: format!(
                "median of {} (min {lo:.0}, max {hi:.0}); {iops:.0} IOPS, clat p99 {p99:.0} us; `{}`",
                runs.len(),
                fio_cmdline(job, opts)
            ),
        });
        Ok(med)
    };
    for (job, headline) in &write_jobs {
        let bw = bandwidth(job, *headline, rows)?;
        if *headline {
            h.write_1m = bw;
        }
        if job.append {
            h.append_1m = bw;
        }
    }
    let _ = std::fs::remove_file(opts.dir.join("fio-write.dat"));
    run_fio(&prepare, opts)?;
    for (job, headline) in &read_jobs {
        let bw = bandwidth(job, *headline, rows)?;
        if *headline {
            h.read_1m = bw;
        }
    }
    let _ = std::fs::remove_file(opts.dir.join("fio-read.dat"));
    // fdatasync after every 4 KiB direct write: once overwriting written
    // blocks (a device cache flush only), once appending (every sync also
    // commits the journal for the new size and blocks, as a log's does).
    let sync_job = |name: &str, append: bool, file: &'static str| FioJob {
        name: name.into(),
        rw: "write",
        bs: "4k",
        iodepth: 1,
        append,
        capped: true,
        file,
        fresh: append,
        extra: vec!["--ioengine=psync".into(), "--fdatasync=1".into()],
    };
    let sync_opts = LimitsOptions { size_mib: 64, ..opts.clone() };
    let prep = FioJob {
        capped: false,
        fresh: true,
        bs: "1M",
        iodepth: 8,
        extra: vec![],
        ..sync_job("prepare-sync-file", false, "fio-sync.dat")
    };
    run_fio(&prep, &sync_opts)?;
    for (job, headline) in [
        (sync_job("fdatasync-overwrite", false, "fio-sync.dat"), true),
        (sync_job("fdatasync-append", true, "fio-sync-append.dat"), false),
    ] {
        let o = &sync_opts;
        let job = &job;
        let r = run_fio(job, o)?;
        eprintln!("  {:<20} fdatasync p50 {:>6.0} us  p99 {:>6.0} us", job.name, r.sync_p50_us, r.sync_p99_us);
        rows.push(Row {
            name: format!("{} p50{}", job.name, if headline { " *" } else { "" }),
            value: r.sync_p50_us,
            unit: "us".into(),
            how: format!("fdatasync latency; write clat p50 {:.0} us; `{}`", r.clat_p50_us, fio_cmdline(job, o)),
        });
        rows.push(Row {
            name: format!("{} p99{}", job.name, if headline { " *" } else { "" }),
            value: r.sync_p99_us,
            unit: "us".into(),
            how: format!("{:.0} write+fdatasync per second", r.iops),
        });
        if headline {
            h.sync_p50_us = r.sync_p50_us;
            h.sync_p99_us = r.sync_p99_us;
        }
    }
    let _ = std::fs::remove_file(opts.dir.join("fio-sync.dat"));
    let _ = std::fs::remove_file(opts.dir.join("fio-sync-append.dat"));
    Ok(h)
}

/// One run of the headline job (1 MiB O_DIRECT sequential writes to a fresh
/// file at queue depth `iodepth`, `size_mib` MiB), for an engine run to put
/// its throughput against a disk measured minutes, not tens of minutes, away.
/// Returns MiB/s and the command line; `None` if fio is not installed.
///
/// With `hugetlbfs` (a mounted hugetlbfs directory with free huge pages),
/// fio's buffers are on huge pages (`--iomem=mmaphuge`): physically
/// contiguous, as the engine's write buffers are
/// (`spindle_engine::dma_alloc`), so each 1 MiB write is one device segment
/// instead of 256.
pub fn fio_reference_write(
    dir: &Path,
    size_mib: u64,
    iodepth: u32,
    hugetlbfs: Option<&Path>,
) -> Result<Option<(f64, String)>, String> {
    if fio_version().is_none() {
        return Ok(None);
    }
    let opts = LimitsOptions {
        dir: dir.to_path_buf(),
        size_mib,
        runtime_s: 60,
        iodepth,
        repeat: 1,
        use_fio: true,
        tcp_secs: 0.0,
    };
    let job = FioJob {
        name: format!("reference-write-1m-qd{iodepth}{}", if hugetlbfs.is_some() { "-hugepages" } else { "" }),
        rw: "write",
        bs: "1M",
        iodepth,
        append: false,
        capped: true,
        file: "fio-reference.dat",
        fresh: true,
        extra: hugetlbfs
            .map(|d| vec![format!("--iomem=mmaphuge:{}", d.join("spindle-fio-buffers").display())])
            .unwrap_or_default(),
    };
    let r = run_fio(&job, &opts);
    let _ = std::fs::remove_file(dir.join(job.file));
    Ok(Some((r?.bw_mib_s, fio_cmdline(&job, &opts))))
}

// ---------------------------------------------------------------------------
// Built-in direct I/O
// ---------------------------------------------------------------------------

/// A sector-aligned heap buffer for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("valid layout");
        // SAFETY: non-zero size; freed in Drop with the same layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        let mut b = AlignedBuf { ptr, layout };
        crate::batch::Rng::new(len as u64).fill(b.as_mut());
        b
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

fn open_direct(path: &Path, flags: libc::c_int) -> std::io::Result<Fd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_DIRECT | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Fd(fd))
}

fn check(rc: isize, want: usize, what: &str) -> std::io::Result<()> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if rc as usize != want {
        return Err(std::io::Error::other(format!("short {what}: {rc} of {want}")));
    }
    Ok(())
}

/// `threads` threads each issuing `bs`-byte direct writes or reads, thread t
/// taking blocks t, t+threads, ...: sequential at queue depth `threads`.
/// Returns MiB/s. Writes include the final fdatasync.
fn direct_seq(path: &Path, write: bool, bs: usize, threads: u32, size: u64, cap: Duration) -> std::io::Result<f64> {
    let flags = if write { libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC } else { libc::O_RDONLY };
    let fd = open_direct(path, flags)?;
    if write {
        // SAFETY: valid fd; fallocate only reserves blocks.
        let rc = unsafe { libc::fallocate(fd.0, 0, 0, size as libc::off_t) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let blocks = size / bs as u64;
    let start = Instant::now();
    let done: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads as u64)
            .map(|t| {
                let fd = fd.0;
                s.spawn(move || -> std::io::Result<u64> {
                    let mut buf = AlignedBuf::new(bs);
                    let mut n = 0u64;
                    let mut b = t;
                    while b < blocks && start.elapsed() < cap {
                        let off = (b * bs as u64) as libc::off_t;
                        // SAFETY: buf is valid for bs bytes and aligned.
                        let rc = unsafe {
                            if write {
                                libc::pwrite(fd, buf.as_mut().as_ptr().cast(), bs, off)
                            } else {
                                libc::pread(fd, buf.as_mut().as_mut_ptr().cast(), bs, off)
                            }
                        };
                        check(rc, bs, if write { "write" } else { "read" })?;
                        n += bs as u64;
                        b += threads as u64;
                    }
                    Ok(n)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("I/O thread panicked")).collect::<std::io::Result<Vec<u64>>>()
    })?
    .into_iter()
    .sum();
    if write {
        // SAFETY: valid fd.
        if unsafe { libc::fdatasync(fd.0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(done as f64 / MIB / start.elapsed().as_secs_f64())
}

/// 4 KiB direct write + fdatasync, repeated; latencies of the fdatasync in µs.
fn fdatasync_loop(path: &Path, append: bool, cap: Duration) -> std::io::Result<Vec<f64>> {
    let fd = open_direct(path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC)?;
    let mut buf = AlignedBuf::new(4096);
    let size: u64 = 64 << 20;
    if !append {
        direct_seq(path, true, 1 << 20, 4, size, Duration::from_secs(3600))?;
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut off = 0u64;
    while start.elapsed() < cap && off < size {
        // SAFETY: buf valid and aligned for 4096 bytes.
        let rc = unsafe { libc::pwrite(fd.0, buf.as_mut().as_ptr().cast(), 4096, off as libc::off_t) };
        check(rc, 4096, "write")?;
        let t = Instant::now();
        // SAFETY: valid fd.
        if unsafe { libc::fdatasync(fd.0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        off += 4096;
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

/// The built-in sequential O_DIRECT jobs in one direction (1 MiB and 16 KiB,
/// QD1 and deeper), each run `repeat` times; pushes a row per job and
/// returns the median of the headline job (1 MiB at `--iodepth`).
fn sequential_jobs(opts: &LimitsOptions, rows: &mut Vec<Row>, path: &Path, write: bool) -> Result<f64, String> {
    let (size, cap, qd) = (opts.size_mib << 20, Duration::from_secs(opts.runtime_s), opts.iodepth);
    let (dir, how) = if write { ("write", "pwrite, fallocated file") } else { ("read", "pread") };
    let mut headline_med = 0.0;
    for (name, bs, threads, headline) in [
        (format!("{dir}-1m-qd1"), 1 << 20, 1, false),
        (format!("{dir}-1m-qd{qd}"), 1 << 20, qd, true),
        (format!("{dir}-16k-qd1"), 16 << 10, 1, false),
        (format!("{dir}-16k-qd32"), 16 << 10, 32, false),
    ] {
        let runs: Vec<f64> = (0..opts.repeat.max(1))
            .map(|_| direct_seq(path, write, bs, threads, size, cap))
            .collect::<Result<_, _>>()
            .map_err(|err| format!("{name}: {err}"))?;
        let med = median(runs.clone());
        eprintln!("  {name:<16} {med:>8.0} MiB/s");
        rows.push(Row {
            name: format!("{name}{}", if headline { " *" } else { "" }),
            value: med,
            unit: "MiB/s".into(),
            how: format!("built-in: {threads} threads of {bs}-byte O_DIRECT {how}; runs {runs:.0?}"),
        });
        if headline {
            headline_med = med;
        }
    }
    Ok(headline_med)
}

fn disk_built_in(opts: &LimitsOptions, rows: &mut Vec<Row>) -> Result<DiskHeadlines, String> {
    let size = opts.size_mib << 20;
    let cap = Duration::from_secs(opts.runtime_s);
    let wpath = opts.dir.join("builtin-write.dat");
    let rpath = opts.dir.join("builtin-read.dat");
    let e = |what: &str| {
        let what = what.to_string();
        move |err: std::io::Error| format!("{what}: {err}")
    };
    let mut h = DiskHeadlines {
        write_1m: 0.0,
        append_1m: f64::NAN,
        read_1m: 0.0,
        sync_p50_us: f64::NAN,
        sync_p99_us: f64::NAN,
    };
    let qd = opts.iodepth;
    h.write_1m = sequential_jobs(opts, rows, &wpath, true)?;
    let _ = std::fs::remove_file(&wpath);
    direct_seq(&rpath, true, 1 << 20, qd, size, Duration::from_secs(3600)).map_err(e("prepare read file"))?;
    h.read_1m = sequential_jobs(opts, rows, &rpath, false)?;
    let _ = std::fs::remove_file(&rpath);
    let spath = opts.dir.join("builtin-sync.dat");
    for (name, append) in [("fdatasync-overwrite", false), ("fdatasync-append", true)] {
        let lat = fdatasync_loop(&spath, append, cap).map_err(e(name))?;
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        eprintln!("  {name:<20} fdatasync p50 {p50:>6.0} us  p99 {p99:>6.0} us");
        let star = if append { "" } else { " *" };
        let how = format!("built-in: 4 KiB O_DIRECT pwrite then fdatasync, {} loops", lat.len());
        rows.push(Row { name: format!("{name} p50{star}"), value: p50, unit: "us".into(), how: how.clone() });
        rows.push(Row { name: format!("{name} p99{star}"), value: p99, unit: "us".into(), how });
        if !append {
            h.sync_p50_us = p50;
            h.sync_p99_us = p99;
        }
    }
    let _ = std::fs::remove_file(&spath);
    Ok(h)
}

// ---------------------------------------------------------------------------
// Network and CPU
// ---------------------------------------------------------------------------

/// One TCP connection over loopback, 1 MiB writes for `secs`; GB/s received.
pub fn tcp_loopback_gb_s(secs: f64) -> std::io::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        let start = Instant::now();
        loop {
            match s.read(&mut buf)? {
                0 => return Ok((n, start.elapsed())),
                k => n += k as u64,
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 1 << 20];
    crate::batch::Rng::new(3).fill(&mut buf);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        c.write_all(&buf)?;
    }
    drop(c);
    let (n, took) = server.join().expect("server thread panicked")?;
    Ok(n as f64 / GB / took.as_secs_f64())
}

pub fn memcpy_gb_s() -> f64 {
    let src = vec![7u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    dst.copy_from_slice(&src); // fault the pages in
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        n += src.len() as u64;
    }
    n as f64 / GB / start.elapsed().as_secs_f64()
}

pub fn crc32c_gb_s() -> f64 {
    let mut buf = vec![0u8; 64 << 20];
    crate::batch::Rng::new(5).fill(&mut buf);
    let start = Instant::now();
    let mut n = 0u64;
    let mut acc = 0u32;
    while start.elapsed() < Duration::from_secs(1) {
        acc ^= crc32c::crc32c(std::hint::black_box(&buf));
        n += buf.len() as u64;
    }
    std::hint::black_box(acc);
    n as f64 / GB / start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_with_leading_warning_parses() {
        let text = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version":"fio-3.33","jobs":[{"jobname":"x","error":0,
 "write":{"bw_bytes":1048576,"iops":1.0,"clat_ns":{"percentile":{"50.000000":2000,"99.000000":9000}}},
 "read":{"bw_bytes":0},
 "sync":{"lat_ns":{"percentile":{"50.000000":500000,"99.000000":1500000}}}}]}"#;
        let r = parse_fio_json(text, "write").unwrap();
        assert_eq!(r.bw_mib_s, 1.0);
        assert_eq!(r.clat_p50_us, 2.0);
        assert_eq!(r.sync_p50_us, 500.0);
        assert_eq!(r.sync_p99_us, 1500.0);
    }

    #[test]
    fn fio_json_without_jobs_is_an_error_not_a_panic() {
        assert!(parse_fio_json("{}", "write").is_err());
        assert!(parse_fio_json("garbage", "read").is_err());
        assert!(parse_fio_json(r#"{"jobs":[{"error":5}]}"#, "read").is_err());
    }
}
