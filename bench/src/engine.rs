//! The engine end to end: a `spindle_engine::Log` on `DmaStorage` in one
//! glommio executor pinned to a core, as the broker runs it.
//!
//! * `append`: Kafka v2 batches of one size, many appends in flight (as many
//!   producers would keep), `wait_durable` requested after every
//!   `sync_every_mib` acknowledged, the way acks=all producers with a flush
//!   policy would ask; throughput counts until the last byte is durable.
//! * `read-cached`: a consumer at the tail: every read hits the batch cache.
//!   The log is filled to three quarters of the cache budget, then read
//!   from offset 0 over and over (at least `total_mib` and two seconds).
//!   Counted: Kafka wire bytes handed out, with each batch's Kafka header
//!   rebuilt; not counted: sending them (see the loopback TCP limit).
//! * `read-cold`: the log is closed and reopened with an empty cache, then
//!   read from offset 0: every byte comes from disk through read-ahead.
//! * `recovery`: one ~1 GiB active segment, the log dropped without close and
//!   its index checkpoints deleted, then `Log::open` timed: a full scan that
//!   reads and CRC-checks every byte.
//!
//! What is not measured here: Kafka request decoding and the network (the
//! `net` crate), replication.

use crate::batch::{batch_pool, MIN_BATCH_BYTES};
use crate::sys::{block_device_of, disk_stat, prepare_dir, process_cpu, thread_cpu, CpuTime, DiskStat};
use crate::{GB, MIB};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use spindle_engine::storage::dma::DmaStorage;
use spindle_engine::{AppendInfo, AppendOptions, BatchCache, Durability, Log, LogConfig};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Append,
    ReadCached,
    ReadCold,
    Recovery,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::ReadCached => "read-cached",
            Mode::ReadCold => "read-cold",
            Mode::Recovery => "recovery",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineOptions {
    pub dir: PathBuf,
    pub mode: Mode,
    /// Kafka wire size of each appended batch.
    pub batch_bytes: usize,
    /// Approximate size of each record in a batch.
    pub record_bytes: usize,
    /// Bytes appended (append, read-cold) or read (read-cached).
    pub total_mib: u64,
    /// Ask for durability after every this many acknowledged MiB; 0: only at
    /// the end.
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub sync_every_mib: f64,
    /// Bytes of appends kept in flight (as a number of batches, at least 1).
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub inflight_mib: f64,
    /// Core the executor is pinned to.
    pub cpu: usize,
    /// glommio `io_memory` (registered DMA buffers; counts against
    /// RLIMIT_MEMLOCK).
    pub io_memory_mib: usize,
    /// The executor's task quota (glommio's preempt timer) in µs. Results
    /// written before it was an option ran with glommio's default, 100 ms.
    #[serde(default = "glommio_default_task_quota_us")]
    pub task_quota_us: u64,
    /// Batch cache budget.
    pub cache_mib: usize,
    /// `max_bytes` of each read (a consumer's fetch size for the partition).
    pub fetch_bytes: usize,
    /// Size of the segment recovered in `recovery` mode.
    pub recovery_mib: u64,
    /// Number of timed opens in `recovery` mode.
    pub repeat: u32,
    /// Leave the log directory behind.
    pub keep: bool,
    /// In append mode, run fio's headline write job (1 MiB, fresh file, this
    /// queue depth, `total_mib`) right before and right after, so the ratio
    /// is taken against the disk as it was during the run. 0: off.
    #[serde(default)]
    pub reference_iodepth: u32,
    /// With the reference on: also run it with fio's buffers on huge pages
    /// from this mounted hugetlbfs directory.
    #[serde(default)]
    pub reference_hugetlbfs: Option<PathBuf>,
}

/// fio's 1 MiB direct-write bandwidth measured around an append run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reference {
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub before_mib_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub after_mib_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub mean_mib_s: f64,
    /// Engine append MiB/s over `mean_mib_s`.
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub append_ratio: f64,
    pub command: String,
    /// The same job with fio's buffers on huge pages, if asked for.
    #[serde(default)]
    pub hugepages: Option<Box<Reference>>,
}

/// Throughput and cost of a stream of appends.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppendResult {
    pub bytes: u64,
    pub appends: u64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub seconds: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub mib_s: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub appends_s: f64,
    pub inflight_appends: usize,
    pub cpu_process: CpuTime,
    pub cpu_executor: CpuTime,
    /// Process CPU (all threads, user+sys) per appended MiB.
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub cpu_ms_per_mib: f64,
    /// Executor thread CPU per appended MiB.
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub executor_cpu_ms_per_mib: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub latency_p50_us: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub latency_p99_us: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub latency_max_us: f64,
    /// Longest time without any append or sync completing, and when it
    /// started (seconds into the run): stalls.
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub longest_pause_ms: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub longest_pause_at_s: f64,
    pub sync_requests: u64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub sync_p50_us: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub sync_p99_us: f64,
    pub segments: usize,
    pub disk: Option<DiskStat>,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub disk_avg_write_kib: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub disk_avg_queue_depth: f64,
    /// Doorbell rings during the run, and rings that found no bell armed
    /// (`spindle_engine::storage::doorbell`).
    #[serde(default)]
    pub doorbell_rings: u64,
    #[serde(default)]
    pub doorbell_missed: u64,
    /// Of the rings, those made because a busy executor had disk I/O in
    /// flight without polling (`doorbell::nudge`).
    #[serde(default)]
    pub doorbell_nudges: u64,
    /// The log's fdatasync calls (one serves many sync requests), their
    /// latency, and the share of the run one was in flight: no segment
    /// write is submitted meanwhile (the log's I/O gate).
    #[serde(default)]
    pub fdatasyncs: u64,
    /// Write rounds submitted while an fdatasync was in flight, which the
    /// gate allows only while appends wait for staging room.
    #[serde(default)]
    pub rounds_beside_fdatasync: u64,
    #[serde(default, deserialize_with = "crate::sys::f64_or_nan")]
    pub fdatasync_p50_us: f64,
    #[serde(default, deserialize_with = "crate::sys::f64_or_nan")]
    pub fdatasync_p99_us: f64,
    #[serde(default, deserialize_with = "crate::sys::f64_or_nan")]
    pub fdatasync_share: f64,
    /// The log's segment writes (submission to completion) in the run.
    #[serde(default)]
    pub segment_writes: u64,
    #[serde(default, deserialize_with = "crate::sys::f64_or_nan")]
    pub segment_write_p50_us: f64,
    #[serde(default, deserialize_with = "crate::sys::f64_or_nan")]
    pub segment_write_p99_us: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadResult {
    /// Kafka wire bytes returned.
    pub bytes: u64,
    pub batches: u64,
    pub reads: u64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub seconds: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub gb_s: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cpu_process: CpuTime,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub cpu_ms_per_gb: f64,
    pub disk: Option<DiskStat>,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub disk_avg_read_kib: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub disk_avg_queue_depth: f64,
    /// Seconds to open the log before the reads (clean shutdown: no scan).
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub open_seconds: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecoveryResult {
    pub segment_bytes: u64,
    pub removed_files: Vec<String>,
    pub open_seconds: Vec<f64>,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub median_seconds: f64,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub scan_gb_s: f64,
    pub disk: Option<DiskStat>,
    #[serde(deserialize_with = "crate::sys::f64_or_nan")]
    pub disk_avg_read_kib: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineResult {
    pub options: EngineOptions,
    /// Appends that filled the log (the measurement itself in append mode).
    pub append: Option<AppendResult>,
    pub read: Option<ReadResult>,
    pub recovery: Option<RecoveryResult>,
    #[serde(default)]
    pub reference: Option<Reference>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs `f` to completion on a new executor pinned to `cpu`.
fn on_executor<T, F, Fut>(opts: &EngineOptions, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + 'static,
{
    LocalExecutorBuilder::new(Placement::Fixed(opts.cpu))
        .name("spindle-bench")
        .io_memory(opts.io_memory_mib << 20)
        .preempt_timer(Duration::from_micros(opts.task_quota_us))
        .spawn(f)
        .map_err(|e| format!("cannot start a glommio executor on cpu {}: {e}", opts.cpu))?
        .join()
        .map_err(|e| format!("executor failed: {e}"))?
}

fn glommio_default_task_quota_us() -> u64 {
    100_000
}

fn log_dir(opts: &EngineOptions) -> PathBuf {
    opts.dir.join(format!("log-{}", opts.mode.name()))
}

fn remove_dir(p: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", p.display())),
    }
}

async fn open_log(
    data_dir: &Path,
    dir: &Path,
    config: LogConfig,
    cache_mib: usize,
) -> Result<(Rc<Log<DmaStorage>>, Rc<BatchCache>, f64), String> {
    let storage = DmaStorage::new(data_dir).await.map_err(|e| format!("direct I/O on {}: {e}", data_dir.display()))?;
    let cache = Rc::new(BatchCache::new(cache_mib << 20));
    let t = Instant::now();
    let log = Log::open(storage, dir, config, cache.clone(), now_ms())
        .await
        .map_err(|e| format!("open log {}: {e}", dir.display()))?;
    Ok((Rc::new(log), cache, t.elapsed().as_secs_f64()))
}

fn pool_for(opts: &EngineOptions) -> Result<Vec<Bytes>, String> {
    // About 64 MiB of distinct batches: enough that the pool is not one hot
    // cache line, small enough to build in a moment.
    let count = ((64usize << 20) / opts.batch_bytes).clamp(16, 4096);
    batch_pool(count, opts.batch_bytes, opts.record_bytes, 42)
        .ok_or_else(|| format!("cannot build a {}-byte batch (minimum {MIN_BATCH_BYTES})", opts.batch_bytes))
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

enum Done {
    Append(Result<AppendInfo, spindle_engine::AppendError>, Instant, usize),
    Sync(Result<(), spindle_engine::AppendError>, Instant),
}

/// Appends `total` bytes of batches from `pool`, `inflight` appends at a
/// time, asking for durability every `sync_every` acknowledged bytes, and
/// waits until everything is durable.
async fn append_stream(
    log: &Rc<Log<DmaStorage>>,
    pool: &[Bytes],
    total: u64,
    inflight: usize,
    sync_every: u64,
    disk_dev: Option<&Path>,
) -> Result<AppendResult, String> {
    let opts = AppendOptions { leader_epoch: 0, now_ms: now_ms(), durability: Durability::Written };
    let mut pending: FuturesUnordered<LocalBoxFuture<'static, Done>> = FuturesUnordered::new();
    let (mut lat, mut sync_lat) = (hist(), hist());
    let (mut submitted, mut acked, mut appends, mut in_flight) = (0u64, 0u64, 0u64, 0usize);
    let mut next_sync = sync_every;
    let mut next_batch = 0usize;
    let disk0 = disk_dev.and_then(disk_stat);
    let bell0 = spindle_engine::storage::doorbell::counts();
    let nudges0 = spindle_engine::storage::doorbell::nudges();
    let io0 = spindle_engine::stats::snapshot();
    let (cpu0, tcpu0) = (process_cpu(), thread_cpu());
    let start = Instant::now();
    let (mut last_done, mut pause, mut pause_at) = (start, Duration::ZERO, Duration::ZERO);
    loop {
        while in_flight < inflight && submitted < total {
            let b = pool[next_batch % pool.len()].clone();
            next_batch += 1;
            submitted += b.len() as u64;
            in_flight += 1;
            let t = Instant::now();
            // Each append is a task of its own, as each connection is in the
            // broker: polled inside this one task, a thousand ready appends
            // kept the executor from submitting finished write rounds to
            // the kernel until all had run (bench/RESULTS.md).
            let log = log.clone();
            pending.push(
                glommio::spawn_local(async move {
                    let n = b.len();
                    Done::Append(log.append(b, opts).await, t, n)
                })
                .boxed_local(),
            );
        }
        let done = pending.next().await;
        let now = Instant::now();
        if now - last_done > pause {
            (pause, pause_at) = (now - last_done, last_done - start);
        }
        last_done = now;
        match done {
            None => break,
            Some(Done::Append(r, t, n)) => {
                in_flight -= 1;
                let info = r.map_err(|e| format!("append: {e}"))?;
                lat.saturating_record(t.elapsed().as_micros() as u64);
                acked += n as u64;
                appends += 1;
                if sync_every > 0 && acked >= next_sync {
                    while next_sync <= acked {
                        next_sync += sync_every;
                    }
                    let t = Instant::now();
                    let log = log.clone();
                    pending.push(
                        glommio::spawn_local(
                            async move { Done::Sync(log.wait_durable(info.last_offset + 1).await, t) },
                        )
                        .boxed_local(),
                    );
                }
            }
            Some(Done::Sync(r, t)) => {
                r.map_err(|e| format!("wait_durable: {e}"))?;
                sync_lat.saturating_record(t.elapsed().as_micros() as u64);
            }
        }
    }
    log.wait_durable(log.log_end_offset()).await.map_err(|e| format!("final wait_durable: {e}"))?;
    let wall = start.elapsed();
    let (cpu, tcpu) = (process_cpu().since(&cpu0), thread_cpu().since(&tcpu0));
    let bell = spindle_engine::storage::doorbell::counts();
    let nudges = spindle_engine::storage::doorbell::nudges();
    let io = spindle_engine::stats::snapshot();
    let since = |now: &Histogram<u64>, then: &Histogram<u64>| {
        let mut h = now.clone();
        h.subtract(then).expect("a later snapshot of the same histogram");
        h
    };
    let (fsync, writes) = (since(&io.fsync_us, &io0.fsync_us), since(&io.write_us, &io0.write_us));
    let disk = match (disk0, disk_dev.and_then(disk_stat)) {
        (Some(a), Some(b)) => Some(b.since(&a)),
        _ => None,
    };
    let secs = wall.as_secs_f64();
    let mib = acked as f64 / MIB;
    Ok(AppendResult {
        bytes: acked,
        appends,
        seconds: secs,
        mib_s: mib / secs,
        appends_s: appends as f64 / secs,
        inflight_appends: inflight,
        cpu_process: cpu,
        cpu_executor: tcpu,
        cpu_ms_per_mib: cpu.total_s() * 1000.0 / mib,
        executor_cpu_ms_per_mib: tcpu.total_s() * 1000.0 / mib,
        latency_p50_us: lat.value_at_quantile(0.5) as f64,
        latency_p99_us: lat.value_at_quantile(0.99) as f64,
        latency_max_us: lat.max() as f64,
        longest_pause_ms: pause.as_secs_f64() * 1000.0,
        longest_pause_at_s: pause_at.as_secs_f64(),
        sync_requests: sync_lat.len(),
        sync_p50_us: sync_lat.value_at_quantile(0.5) as f64,
        sync_p99_us: sync_lat.value_at_quantile(0.99) as f64,
        segments: log.segment_count(),
        disk_avg_write_kib: disk.map_or(f64::NAN, |d| d.avg_write_kib()),
        disk_avg_queue_depth: disk.map_or(f64::NAN, |d| d.avg_queue_depth(wall)),
        disk,
        doorbell_rings: bell.0 - bell0.0,
        doorbell_missed: bell.1 - bell0.1,
        doorbell_nudges: nudges - nudges0,
        fdatasyncs: fsync.len(),
        rounds_beside_fdatasync: io.rounds_beside_fsync - io0.rounds_beside_fsync,
        fdatasync_p50_us: fsync.value_at_quantile(0.5) as f64,
        fdatasync_p99_us: fsync.value_at_quantile(0.99) as f64,
        fdatasync_share: fsync.mean() * fsync.len() as f64 / 1e6 / secs,
        segment_writes: writes.len(),
        segment_write_p50_us: writes.value_at_quantile(0.5) as f64,
        segment_write_p99_us: writes.value_at_quantile(0.99) as f64,
    })
}

fn inflight_appends(opts: &EngineOptions) -> usize {
    ((opts.inflight_mib * MIB) / opts.batch_bytes as f64).ceil().max(1.0) as usize
}

fn sync_every_bytes(opts: &EngineOptions) -> u64 {
    (opts.sync_every_mib * MIB) as u64
}

/// Runs one benchmark mode. Progress goes to stderr; the result is returned.
pub fn run(opts: &EngineOptions) -> Result<EngineResult, String> {
    if opts.batch_bytes < MIN_BATCH_BYTES {
        return Err(format!("--batch-bytes must be at least {MIN_BATCH_BYTES}"));
    }
    if opts.batch_bytes as u64 > LogConfig::default().max_message_bytes as u64 {
        return Err(format!(
            "--batch-bytes must be at most max.message.bytes ({})",
            LogConfig::default().max_message_bytes
        ));
    }
    if opts.total_mib == 0 || opts.fetch_bytes == 0 {
        return Err("--total-mib and --fetch-bytes must be positive".into());
    }
    prepare_dir(&opts.dir)?;
    let dir = log_dir(opts);
    remove_dir(&dir)?;
    let result = match opts.mode {
        Mode::Append => run_append(opts, &dir),
        Mode::ReadCached => run_read_cached(opts, &dir),
        Mode::ReadCold => run_read_cold(opts, &dir),
        Mode::Recovery => run_recovery(opts, &dir),
    };
    if !opts.keep {
        remove_dir(&dir)?;
    }
    result
}

fn run_append(opts: &EngineOptions, dir: &Path) -> Result<EngineResult, String> {
    let pool = pool_for(opts)?;
    type Runs = (Option<(f64, String)>, Option<(f64, String)>);
    let reference = |when: &str| -> Result<Runs, String> {
        if opts.reference_iodepth == 0 {
            return Ok((None, None));
        }
        let r = crate::limits::fio_reference_write(&opts.dir, opts.total_mib, opts.reference_iodepth, None)?;
        match &r {
            Some((bw, _)) => eprintln!("  fio reference {when}: {bw:.0} MiB/s"),
            None => eprintln!("  fio not installed: no reference run"),
        }
        let huge = match (&r, &opts.reference_hugetlbfs) {
            (Some(_), Some(d)) => {
                let h = crate::limits::fio_reference_write(&opts.dir, opts.total_mib, opts.reference_iodepth, Some(d))?;
                if let Some((bw, _)) = &h {
                    eprintln!("  fio reference {when}, buffers on huge pages: {bw:.0} MiB/s");
                }
                h
            }
            _ => None,
        };
        Ok((r, huge))
    };
    let (before, huge_before) = reference("before")?;
    let (o, d) = (opts.clone(), dir.to_path_buf());
    let r = on_executor(opts, move || async move {
        let dev = block_device_of(&o.dir);
        let (log, _cache, _) = open_log(&o.dir, &d, LogConfig::default(), o.cache_mib).await?;
        let r =
            append_stream(&log, &pool, o.total_mib << 20, inflight_appends(&o), sync_every_bytes(&o), dev.as_deref())
                .await?;
        log.close().await.map_err(|e| format!("close: {e}"))?;
        Ok(r)
    })?;
    let (after, huge_after) = reference("after")?;
    let pair = |before: Option<(f64, String)>, after: Option<(f64, String)>| match (before, after) {
        (Some((b, command)), Some((a, _))) => {
            let mean = (a + b) / 2.0;
            Some(Reference {
                before_mib_s: b,
                after_mib_s: a,
                mean_mib_s: mean,
                append_ratio: r.mib_s / mean,
                command,
                hugepages: None,
            })
        }
        _ => None,
    };
    let reference = pair(before, after).map(|mut f| {
        f.hugepages = pair(huge_before, huge_after).map(Box::new);
        f
    });
    Ok(EngineResult { options: opts.clone(), append: Some(r), read: None, recovery: None, reference })
}

/// Reads from `from` to the high watermark in `fetch_bytes` reads, building
/// each batch's Kafka header as a fetch response would. Returns (bytes,
/// batches, reads).
async fn read_through(log: &Log<DmaStorage>, from: i64, fetch_bytes: usize) -> Result<(u64, u64, u64), String> {
    let (mut bytes, mut batches, mut reads) = (0u64, 0u64, 0u64);
    let mut next = from;
    let mut acc = 0u8;
    loop {
        let got = log.read(next, fetch_bytes, i64::MAX).await.map_err(|e| format!("read at {next}: {e}"))?;
        reads += 1;
        let Some(last) = got.last() else { break };
        next = last.header.next_offset();
        for v in &got {
            acc ^= v.header.kafka_header()[20];
            bytes += v.kafka_len() as u64;
            batches += 1;
        }
    }
    std::hint::black_box(acc);
    Ok((bytes, batches, reads))
}

fn run_read_cached(opts: &EngineOptions, dir: &Path) -> Result<EngineResult, String> {
    let pool = pool_for(opts)?;
    let (o, d) = (opts.clone(), dir.to_path_buf());
    let (fill, read) = on_executor(opts, move || async move {
        let (log, cache, _) = open_log(&o.dir, &d, LogConfig::default(), o.cache_mib).await?;
        // Three quarters of the cache: all of it stays resident.
        let fill_bytes = (o.total_mib << 20).min(((o.cache_mib as u64) << 20) / 4 * 3);
        let fill = append_stream(&log, &pool, fill_bytes, inflight_appends(&o), sync_every_bytes(&o), None).await?;
        let target = o.total_mib << 20;
        let s0 = cache.stats();
        let cpu0 = process_cpu();
        let start = Instant::now();
        let mut r = ReadResult::default();
        // At least the requested bytes and at least two seconds: one pass
        // over a resident cache takes milliseconds.
        while r.bytes < target || start.elapsed() < Duration::from_secs(2) {
            let (b, n, k) = read_through(&log, 0, o.fetch_bytes).await?;
            if b == 0 {
                return Err("log read back empty".into());
            }
            r.bytes += b;
            r.batches += n;
            r.reads += k;
        }
        r.seconds = start.elapsed().as_secs_f64();
        r.cpu_process = process_cpu().since(&cpu0);
        let s1 = cache.stats();
        r.cache_hits = s1.hits - s0.hits;
        r.cache_misses = s1.misses - s0.misses;
        r.gb_s = r.bytes as f64 / GB / r.seconds;
        r.cpu_ms_per_gb = r.cpu_process.total_s() * 1000.0 / (r.bytes as f64 / GB);
        log.close().await.map_err(|e| format!("close: {e}"))?;
        Ok((fill, r))
    })?;
    Ok(EngineResult { options: opts.clone(), append: Some(fill), read: Some(read), recovery: None, reference: None })
}

fn run_read_cold(opts: &EngineOptions, dir: &Path) -> Result<EngineResult, String> {
    let pool = pool_for(opts)?;
    let (o, d) = (opts.clone(), dir.to_path_buf());
    let fill = on_executor(opts, move || async move {
        let (log, _cache, _) = open_log(&o.dir, &d, LogConfig::default(), o.cache_mib).await?;
        let fill =
            append_stream(&log, &pool, o.total_mib << 20, inflight_appends(&o), sync_every_bytes(&o), None).await?;
        log.close().await.map_err(|e| format!("close: {e}"))?;
        Ok(fill)
    })?;
    let (o, d) = (opts.clone(), dir.to_path_buf());
    let read = on_executor(opts, move || async move {
        let dev = block_device_of(&o.dir);
        let (log, cache, open_s) = open_log(&o.dir, &d, LogConfig::default(), o.cache_mib).await?;
        let disk0 = dev.as_deref().and_then(disk_stat);
        let cpu0 = process_cpu();
        let start = Instant::now();
        let (bytes, batches, reads) = read_through(&log, log.log_start_offset(), o.fetch_bytes).await?;
        let wall = start.elapsed();
        let disk = match (disk0, dev.as_deref().and_then(disk_stat)) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        let cpu = process_cpu().since(&cpu0);
        let s = cache.stats();
        drop(log);
        Ok(ReadResult {
            bytes,
            batches,
            reads,
            seconds: wall.as_secs_f64(),
            gb_s: bytes as f64 / GB / wall.as_secs_f64(),
            cache_hits: s.hits,
            cache_misses: s.misses,
            cpu_process: cpu,
            cpu_ms_per_gb: cpu.total_s() * 1000.0 / (bytes as f64 / GB),
            disk_avg_read_kib: disk.map_or(f64::NAN, |d| d.avg_read_kib()),
            disk_avg_queue_depth: disk.map_or(f64::NAN, |d| d.avg_queue_depth(wall)),
            disk,
            open_seconds: open_s,
        })
    })?;
    if read.bytes != fill.bytes {
        return Err(format!("read back {} bytes of {} appended", read.bytes, fill.bytes));
    }
    Ok(EngineResult { options: opts.clone(), append: Some(fill), read: Some(read), recovery: None, reference: None })
}

/// Index files of the log in `dir` (checkpoints recovery would trust).
fn index_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("list {}: {e}", dir.display()))? {
        let p = e.map_err(|e| format!("list {}: {e}", dir.display()))?.path();
        if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn run_recovery(opts: &EngineOptions, dir: &Path) -> Result<EngineResult, String> {
    let pool = pool_for(opts)?;
    let data = opts.recovery_mib << 20;
    // Room for the data plus a margin, so the one segment never rolls.
    let segment_bytes = (data + (64 << 20)).min(spindle_engine::constants::SEGMENT_BYTES_MAX);
    let config = LogConfig { segment_bytes, ..LogConfig::default() };
    let (o, d, c) = (opts.clone(), dir.to_path_buf(), config.clone());
    let (fill, end) = on_executor(opts, move || async move {
        let (log, _cache, _) = open_log(&o.dir, &d, c, o.cache_mib).await?;
        let fill = append_stream(&log, &pool, data, inflight_appends(&o), sync_every_bytes(&o), None).await?;
        if log.segment_count() != 1 {
            return Err(format!("expected one segment, log has {}", log.segment_count()));
        }
        let end = log.log_end_offset();
        // Dropped without close(): no clean-shutdown marker, no final index.
        drop(log);
        Ok((fill, end))
    })?;
    let mut removed = Vec::new();
    let mut rec = RecoveryResult { segment_bytes: fill.bytes, ..Default::default() };
    let dev = block_device_of(&opts.dir);
    let disk0 = dev.as_deref().and_then(disk_stat);
    for i in 0..opts.repeat.max(1) {
        if dir.join(spindle_engine::CLEAN_SHUTDOWN_FILE).exists() {
            return Err("clean-shutdown marker present after an unclean drop".into());
        }
        for p in index_files(dir)? {
            std::fs::remove_file(&p).map_err(|e| format!("remove {}: {e}", p.display()))?;
            removed.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
        let (o, d, c) = (opts.clone(), dir.to_path_buf(), config.clone());
        let (secs, got_end) = on_executor(opts, move || async move {
            let (log, _cache, secs) = open_log(&o.dir, &d, c, o.cache_mib).await?;
            let end = log.log_end_offset();
            drop(log);
            Ok((secs, end))
        })?;
        if got_end != end {
            return Err(format!("recovered log end {got_end}, expected {end}"));
        }
        eprintln!("  recovery open {}: {secs:.3} s", i + 1);
        rec.open_seconds.push(secs);
    }
    let disk = match (disk0, dev.as_deref().and_then(disk_stat)) {
        (Some(a), Some(b)) => Some(b.since(&a)),
        _ => None,
    };
    let mut sorted = rec.open_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    rec.median_seconds = sorted[sorted.len() / 2];
    rec.scan_gb_s = rec.segment_bytes as f64 / GB / rec.median_seconds;
    rec.removed_files = removed;
    rec.disk_avg_read_kib = disk.map_or(f64::NAN, |d| d.avg_read_kib());
    rec.disk = disk;
    Ok(EngineResult { options: opts.clone(), append: Some(fill), read: None, recovery: Some(rec), reference: None })
}

/// Human-readable lines of a result.
pub fn print(r: &EngineResult) {
    let o = &r.options;
    println!(
        "mode {}  batch {} B  total {} MiB  sync every {} MiB  in flight {} MiB  cpu {}  task quota {} us",
        o.mode.name(),
        o.batch_bytes,
        o.total_mib,
        o.sync_every_mib,
        o.inflight_mib,
        o.cpu,
        o.task_quota_us
    );
    if let Some(a) = &r.append {
        let label = if o.mode == Mode::Append { "append" } else { "fill (append)" };
        println!(
            "{label:<14} {:>9.1} MiB/s  {:>9.0} appends/s  {:.2} s for {:.0} MiB in {} segment(s)",
            a.mib_s,
            a.appends_s,
            a.seconds,
            a.bytes as f64 / MIB,
            a.segments
        );
        println!(
            "{:<14} {:>9.2} ms process CPU per MiB (user {:.2} s, sys {:.2} s); executor thread {:.2} ms/MiB; I/O doorbell {} rings ({} nudges), {} missed",
            "  cpu",
            a.cpu_ms_per_mib,
            a.cpu_process.user_s,
            a.cpu_process.sys_s,
            a.executor_cpu_ms_per_mib,
            a.doorbell_rings,
            a.doorbell_nudges,
            a.doorbell_missed
        );
        println!(
            "{:<14} append p50 {:.0} us  p99 {:.0} us  max {:.0} us ({} in flight); longest pause {:.1} ms at {:.2} s; {} sync requests p50 {:.0} us p99 {:.0} us",
            "  latency",
            a.latency_p50_us,
            a.latency_p99_us,
            a.latency_max_us,
            a.inflight_appends,
            a.longest_pause_ms,
            a.longest_pause_at_s,
            a.sync_requests,
            a.sync_p50_us,
            a.sync_p99_us
        );
        if a.fdatasyncs > 0 || a.segment_writes > 0 {
            println!(
                "{:<14} {} segment writes p50 {:.0} us p99 {:.0} us; {} fdatasyncs p50 {:.0} us p99 {:.0} us, in flight {:.0}% of the run; {} write rounds beside one",
                "  log I/O",
                a.segment_writes,
                a.segment_write_p50_us,
                a.segment_write_p99_us,
                a.fdatasyncs,
                a.fdatasync_p50_us,
                a.fdatasync_p99_us,
                a.fdatasync_share * 100.0,
                a.rounds_beside_fdatasync
            );
        }
        if let Some(d) = &a.disk {
            println!(
                "{:<14} {} writes, avg {:.0} KiB, {} flushes, avg queue depth {:.2}, busy {:.0}% of the run",
                "  device",
                d.writes,
                a.disk_avg_write_kib,
                d.flushes,
                a.disk_avg_queue_depth,
                d.io_ticks_ms as f64 / (a.seconds * 10.0)
            );
        }
    }
    if let Some(f) = &r.reference {
        println!(
            "{:<14} fio 1 MiB direct write {:.0} MiB/s before, {:.0} after: append is {:.0}% of their mean",
            "  reference",
            f.before_mib_s,
            f.after_mib_s,
            f.append_ratio * 100.0
        );
        if let Some(h) = &f.hugepages {
            println!(
                "{:<14} fio with its buffers on huge pages {:.0} MiB/s before, {:.0} after: append is {:.0}% of their mean",
                "  reference",
                h.before_mib_s,
                h.after_mib_s,
                h.append_ratio * 100.0
            );
        }
    }
    if let Some(rd) = &r.read {
        println!(
            "{:<14} {:>9.2} GB/s  {:.0} MiB in {:.3} s, {} reads of <= {} B, {} batches; cache hits {} misses {}",
            o.mode.name(),
            rd.gb_s,
            rd.bytes as f64 / MIB,
            rd.seconds,
            rd.reads,
            o.fetch_bytes,
            rd.batches,
            rd.cache_hits,
            rd.cache_misses
        );
        println!("{:<14} {:>9.1} ms process CPU per GB", "  cpu", rd.cpu_ms_per_gb);
        if let Some(d) = &rd.disk {
            println!(
                "{:<14} {} reads, avg {:.0} KiB, avg queue depth {:.2}; log open took {:.3} s",
                "  device", d.reads, rd.disk_avg_read_kib, rd.disk_avg_queue_depth, rd.open_seconds
            );
        }
    }
    if let Some(rc) = &r.recovery {
        println!(
            "{:<14} {:>9.3} s median Log::open of an unclean {:.0} MiB segment ({:.2} GB/s scan); runs {:?}",
            "recovery",
            rc.median_seconds,
            rc.segment_bytes as f64 / MIB,
            rc.scan_gb_s,
            rc.open_seconds.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>()
        );
        println!("{:<14} index files removed before opening: {}", "", rc.removed_files.join(", "));
        if let Some(d) = &rc.disk {
            println!("{:<14} {} reads, avg {:.0} KiB over all opens", "  device", d.reads, rc.disk_avg_read_kib);
        }
    }
}
