//! The load generator: producers and consumers on pinned glommio executors,
//! talking Kafka to any broker.
//!
//! Honest by construction:
//! * **Open loop.** With a target rate, record *i* of a producer is due at
//!   `t0 + i / rate`, whether or not the broker kept up. Latency is measured
//!   from that intended time, not from when the generator got around to
//!   sending, so a broker stall shows up in the tail instead of silently
//!   lowering the offered load (coordinated omission).
//! * **Unthrottled** runs are closed loop (a window of batches in flight);
//!   latency is then from the actual send.
//! * Each worker records into its own HdrHistogram; they are merged at the
//!   end. Warm-up records are sent but not measured.
//! * End-to-end latency: every value starts with its intended send time;
//!   consumers subtract it from their clock (same host, same clock).

pub mod cli;
pub mod client;
pub mod output;
pub mod partition;
pub mod records;
pub mod sink;

use client::{ClientError, Leaders};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};
use records::BatchBuilder;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Latencies are recorded in microseconds, up to 10 minutes.
const LATENCY_MAX_US: u64 = 600_000_000;
/// How often workers report interval counts to the main thread.
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// Batches a producer may have built but not yet sent (waiting for an
/// in-flight slot) before it stops generating: bounds memory when the
/// target rate is above what the broker takes. Skipped records are counted.
const QUEUED_BATCHES_MAX: usize = 10_000;
/// Least time between two Metadata refreshes after errors that ask for one.
const METADATA_REFRESH_MIN: Duration = Duration::from_millis(200);
/// Refreshes a consumer tries before it gives up finding its partitions'
/// leaders at start (50 × 200 ms).
const METADATA_ATTEMPTS: u32 = 50;
/// Resends of a batch refused because its partition's leader moved (25 ×
/// 200 ms); other errors are counted, not retried.
const PRODUCE_RETRIES: u32 = 25;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("histogram bounds")
}

#[derive(Clone, Debug)]
pub enum KeyDist {
    None,
    Uniform(u64),
    Zipf(u64, f64),
}

#[derive(Clone, Debug)]
pub enum SizeDist {
    Fixed(usize),
    Uniform(usize, usize),
}

#[derive(Clone, Debug)]
pub enum Rate {
    Unthrottled,
    RecordsPerSec(f64),
    MiBPerSec(f64),
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub bootstrap: SocketAddr,
    pub topic: String,
    pub partitions: i32,
    pub record_size: SizeDist,
    pub keys: KeyDist,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub acks: i16,
    pub compression: Compression,
    pub producers: usize,
    pub consumers: usize,
    pub rate: Rate,
    pub duration: Duration,
    pub records: Option<u64>,
    pub warmup: Duration,
    pub max_in_flight: usize,
    pub cpus: Vec<usize>,
    pub seed: u64,
    pub quiet: bool,
}

impl LoadOptions {
    fn mean_record_bytes(&self) -> f64 {
        match self.record_size {
            SizeDist::Fixed(n) => n as f64,
            SizeDist::Uniform(a, b) => (a + b) as f64 / 2.0,
        }
    }

    /// Records per second per producer (`None`: unthrottled).
    fn per_producer_rate(&self) -> Option<f64> {
        let total = match self.rate {
            Rate::Unthrottled => return None,
            Rate::RecordsPerSec(r) => r,
            Rate::MiBPerSec(m) => m * 1024.0 * 1024.0 / self.mean_record_bytes(),
        };
        Some(total / self.producers.max(1) as f64)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub skipped: u64,
    /// Records (and their bytes) sent after the warm-up: the throughput figures.
    pub measured_records: u64,
    pub measured_bytes: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.measured_records += o.measured_records;
        self.measured_bytes += o.measured_bytes;
    }
}

enum Report {
    Interval {
        produce: Counts,
        consume: Counts,
        produce_hist: Histogram<u64>,
        e2e_hist: Histogram<u64>,
    },
    Done {
        produce: Counts,
        consume: Counts,
        produce_hist: Histogram<u64>,
        e2e_hist: Histogram<u64>,
        request_hist: Histogram<u64>,
        error: Option<String>,
    },
}

/// One second of the run, as printed live.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Second {
    pub t: f64,
    pub produced_records: u64,
    pub produced_bytes: u64,
    pub consumed_records: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub e2e_p99_ms: f64,
}

pub struct LoadResult {
    pub opts: LoadOptions,
    /// Seconds measured (after warm-up).
    pub measured_secs: f64,
    pub produce: Counts,
    pub consume: Counts,
    pub produce_hist: Histogram<u64>,
    pub e2e_hist: Histogram<u64>,
    /// Produce requests, from written to answered: the broker and the
    /// network, without the batch's wait for a request slot.
    pub request_hist: Histogram<u64>,
    pub timeline: Vec<Second>,
    pub interrupted: bool,
    pub errors: Vec<String>,
}

struct Clock {
    t0: Instant,
    unix0_ns: i64,
    /// Consumers that have their start offsets (the log ends before any
    /// record of the run): producers wait for all of them, so a consumer
    /// slow to find its partitions' leaders misses nothing.
    consumers_ready: std::sync::atomic::AtomicUsize,
}

impl Clock {
    fn unix_ns(&self, at: Instant) -> i64 {
        self.unix0_ns + at.duration_since(self.t0).as_nanos() as i64
    }
    fn now_unix_ns() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Creates the topic if needed; returns its partition count.
pub fn prepare(opts: &LoadOptions) -> Result<i32, String> {
    let (addr, topic, partitions) = (opts.bootstrap, opts.topic.clone(), opts.partitions);
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let conn = client::Conn::connect(addr).await.map_err(|e| e.to_string())?;
            client::ensure_topic(&conn, &topic, partitions).await.map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|e| format!("{e:?}"))?
}

/// Runs the workload; `stop` (Ctrl-C) ends it early with what was measured.
pub fn run(opts: LoadOptions, stop: Arc<AtomicBool>) -> Result<LoadResult, String> {
    let partitions = prepare(&opts)?;
    let cpus = if opts.cpus.is_empty() {
        (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect()
    } else {
        opts.cpus.clone()
    };
    let (tx, rx) = mpsc::channel::<Report>();
    // Consumers start first (from the log end) so they see every record.
    let start_at = Instant::now() + Duration::from_millis(500);
    let clock = Arc::new(Clock {
        t0: start_at,
        unix0_ns: Clock::now_unix_ns() + 500_000_000,
        consumers_ready: Default::default(),
    });
    let workers = opts.producers + opts.consumers;
    // One executor per CPU, not per worker: workers sharing a CPU run as
    // tasks of one executor instead of threads that preempt each other
    // (two executors on one core spent a fifth of it switching).
    let executors = cpus.len().min(workers);
    // `--cores 1` is a count (CPU 0), `--cores 1-1` is CPU 1: say which.
    eprintln!(
        "spindle-bench: {} producer(s), {} consumer(s) on CPU {:?}",
        opts.producers,
        opts.consumers,
        &cpus[..executors]
    );
    let mut handles = Vec::new();
    for (e, &cpu) in cpus.iter().take(executors).enumerate() {
        let mine: Vec<usize> = (0..workers).filter(|w| w % executors == e).collect();
        let (opts, tx, stop, clock) = (opts.clone(), tx.clone(), stop.clone(), clock.clone());
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("bench-{e}"))
            .io_memory(1 << 20)
            .spawn(move || async move {
                let (opts, stop, clock) = (&opts, &stop, &clock);
                futures::future::join_all(mine.into_iter().map(|w| {
                    let tx = tx.clone();
                    async move {
                        let r = if w < opts.producers {
                            producer(w, opts, partitions, clock, stop, &tx).await
                        } else {
                            consumer(w - opts.producers, opts, partitions, clock, stop, &tx).await
                        };
                        if let Err(e) = r {
                            let _ = tx.send(Report::Done {
                                produce: Counts::default(),
                                consume: Counts::default(),
                                produce_hist: new_histogram(),
                                e2e_hist: new_histogram(),
                                request_hist: new_histogram(),
                                error: Some(e.to_string()),
                            });
                        }
                    }
                }))
                .await;
            })
            .map_err(|e| e.to_string())?;
        handles.push(h);
    }
    drop(tx);
    let mut result = LoadResult {
        measured_secs: 0.0,
        produce: Counts::default(),
        consume: Counts::default(),
        produce_hist: new_histogram(),
        e2e_hist: new_histogram(),
        request_hist: new_histogram(),
        timeline: Vec::new(),
        interrupted: false,
        errors: Vec::new(),
        opts: opts.clone(),
    };
    let mut done = 0;
    let mut sec = (Counts::default(), Counts::default(), new_histogram(), new_histogram());
    let mut next_print = start_at + Duration::from_secs(1);
    while done < workers {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Report::Interval { produce, consume, produce_hist, e2e_hist }) => {
                sec.0.add(&produce);
                sec.1.add(&consume);
                let _ = sec.2.add(&produce_hist);
                let _ = sec.3.add(&e2e_hist);
            }
            Ok(Report::Done { produce, consume, produce_hist, e2e_hist, request_hist, error }) => {
                done += 1;
                result.produce.add(&produce);
                result.consume.add(&consume);
                let _ = result.produce_hist.add(&produce_hist);
                let _ = result.e2e_hist.add(&e2e_hist);
                let _ = result.request_hist.add(&request_hist);
                if let Some(e) = error {
                    result.errors.push(e);
                    stop.store(true, Ordering::Release);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_print {
            let t = next_print.duration_since(start_at).as_secs_f64();
            let s = Second {
                t,
                produced_records: sec.0.records,
                produced_bytes: sec.0.bytes,
                consumed_records: sec.1.records,
                errors: sec.0.errors + sec.1.errors,
                p50_ms: ms(&sec.2, 0.5),
                p99_ms: ms(&sec.2, 0.99),
                p999_ms: ms(&sec.2, 0.999),
                e2e_p99_ms: ms(&sec.3, 0.99),
            };
            if !opts.quiet {
                println!(
                    "[{:>4.0}s] {:>9} rec/s {:>8.1} MiB/s  consumed {:>9} rec/s  ack p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  e2e p99 {:>7.3} ms  errors {}",
                    s.t,
                    s.produced_records,
                    s.produced_bytes as f64 / (1 << 20) as f64,
                    s.consumed_records,
                    s.p50_ms,
                    s.p99_ms,
                    s.p999_ms,
                    s.e2e_p99_ms,
                    s.errors
                );
            }
            result.timeline.push(s);
            sec = (Counts::default(), Counts::default(), new_histogram(), new_histogram());
            next_print += Duration::from_secs(1);
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let elapsed = Instant::now().saturating_duration_since(start_at);
    result.measured_secs = elapsed
        .saturating_sub(opts.warmup)
        .as_secs_f64()
        .min(opts.duration.saturating_sub(opts.warmup).as_secs_f64().max(0.001));
    if stop.load(Ordering::Acquire) && result.errors.is_empty() {
        result.interrupted = true;
        result.measured_secs = elapsed.saturating_sub(opts.warmup).as_secs_f64().max(0.001);
    }
    Ok(result)
}

fn record_size(d: &SizeDist, rng: &mut rand::rngs::SmallRng) -> usize {
    match *d {
        SizeDist::Fixed(n) => n,
        SizeDist::Uniform(a, b) => rng.random_range(a..=b),
    }
}

/// Draws keys: none, uniform over `n`, or Zipf(`n`, `s`).
struct KeyGen {
    dist: KeyDist,
    zipf: Option<rand_distr::Zipf<f64>>,
}

impl KeyGen {
    fn new(dist: &KeyDist) -> Self {
        let zipf = match *dist {
            KeyDist::Zipf(n, s) => rand_distr::Zipf::new(n as f64, s).ok(),
            _ => None,
        };
        KeyGen { dist: dist.clone(), zipf }
    }
    fn next(&self, rng: &mut rand::rngs::SmallRng) -> Option<Vec<u8>> {
        match self.dist {
            KeyDist::None => None,
            KeyDist::Uniform(n) => Some(format!("key-{}", rng.random_range(0..n.max(1))).into_bytes()),
            KeyDist::Zipf(..) => {
                let k = rand::distr::Distribution::sample(self.zipf.as_ref().unwrap(), rng) as u64;
                Some(format!("key-{k}").into_bytes())
            }
        }
    }
}

struct ProducerState {
    counts: Cell<Counts>,
    interval: RefCell<(Counts, Histogram<u64>)>,
    hist: RefCell<Histogram<u64>>,
    /// Measured produce requests, from written to answered.
    requests: RefCell<Histogram<u64>>,
    queued: Cell<usize>,
    /// A produce failed in a way that says leadership may have moved.
    stale_leaders: Cell<bool>,
}

impl ProducerState {
    fn bump(&self, f: impl Fn(&mut Counts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
        f(&mut self.interval.borrow_mut().0);
    }
}

async fn producer(
    index: usize,
    opts: &LoadOptions,
    partitions: i32,
    clock: &Clock,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Report>,
) -> Result<(), ClientError> {
    let leaders = Rc::new(Leaders::new(opts.bootstrap, &opts.topic).await?);
    let mut last_refresh = Instant::now();
    let mut rng =
        rand::rngs::SmallRng::seed_from_u64(opts.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let filler: Vec<u8> = (0..(1 << 20)).map(|_| rng.random()).collect();
    let max_value = match opts.record_size {
        SizeDist::Fixed(n) => n,
        SizeDist::Uniform(_, b) => b,
    };
    assert!(max_value <= filler.len(), "record size above 1 MiB");
    let keys = KeyGen::new(&opts.keys);
    let rate = opts.per_producer_rate();
    let per_producer_records =
        opts.records.map(|r| r / opts.producers as u64 + u64::from((index as u64) < r % opts.producers as u64));
    let warmup_end_ns = clock.unix_ns(clock.t0 + opts.warmup);
    let end = clock.t0 + opts.duration;
    let state = Rc::new(ProducerState {
        counts: Cell::new(Counts::default()),
        interval: RefCell::new((Counts::default(), new_histogram())),
        hist: RefCell::new(new_histogram()),
        requests: RefCell::new(new_histogram()),
        queued: Cell::new(0),
        stale_leaders: Cell::new(false),
    });
    let slots = Rc::new(glommio::sync::Semaphore::new(opts.max_in_flight as u64));
    let mut builders: HashMap<i32, (BatchBuilder, Instant)> = HashMap::new();
    let mut sticky = (index as i32) % partitions;
    let mut sent: u64 = 0;
    let mut last_report = Instant::now();
    glommio::timer::sleep(clock.t0.saturating_duration_since(Instant::now())).await;
    // Normally ready well before t0; if not, the first records' latency
    // includes the wait (they are due from t0 on).
    while clock.consumers_ready.load(Ordering::Acquire) < opts.consumers && !stop.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }

    let flush = |p: i32, b: &mut BatchBuilder| {
        let (batch, intended) = b.finish();
        let (leaders, state, slots) = (leaders.clone(), state.clone(), slots.clone());
        let (topic, acks, unthrottled) = (opts.topic.clone(), opts.acks, rate.is_none());
        let bytes = batch.len() as u64;
        state.queued.set(state.queued.get() + 1);
        glommio::spawn_local(async move {
            let _permit = slots.acquire_permit(1).await;
            state.queued.set(state.queued.get() - 1);
            let sent_at = clock_now_ns();
            // As a Kafka producer: a batch refused because leadership moved
            // (nothing was appended) goes again to the new leader; its
            // latency includes the wait.
            let mut attempt = 0;
            let r = loop {
                let r = match leaders.conn(p).await {
                    Ok(conn) => client::produce(&conn, &topic, p, acks, batch.clone()).await,
                    Err(e) => Err(e),
                };
                match r {
                    Err(ClientError::Partition { code, .. })
                        if client::code_wants_metadata(code) && attempt < PRODUCE_RETRIES =>
                    {
                        attempt += 1;
                        state.stale_leaders.set(true);
                        glommio::timer::sleep(METADATA_REFRESH_MIN).await;
                    }
                    r => break r,
                }
            };
            let done_ns = clock_now_ns();
            match r {
                Ok(_) => {
                    let n = intended.len() as u64;
                    let measured = intended.iter().filter(|t| **t >= warmup_end_ns).count() as u64;
                    let measured_bytes = bytes * measured / n.max(1);
                    state.bump(|c| {
                        c.records += n;
                        c.bytes += bytes;
                        c.measured_records += measured;
                        c.measured_bytes += measured_bytes;
                    });
                    if measured > 0 {
                        let us = ((done_ns - sent_at) / 1000).clamp(1, LATENCY_MAX_US as i64) as u64;
                        let _ = state.requests.borrow_mut().record(us);
                    }
                    let mut h = state.hist.borrow_mut();
                    let mut iv = state.interval.borrow_mut();
                    for t in intended {
                        let from = if unthrottled { sent_at } else { t };
                        let us = ((done_ns - from) / 1000).clamp(1, LATENCY_MAX_US as i64) as u64;
                        if t >= warmup_end_ns {
                            let _ = h.record(us);
                        }
                        let _ = iv.1.record(us);
                    }
                }
                Err(e) => {
                    tracing_error(&e);
                    state.stale_leaders.set(state.stale_leaders.get() || e.wants_metadata());
                    state.bump(|c| c.errors += 1);
                }
            }
        })
        .detach();
    };

    loop {
        let now = Instant::now();
        if stop.load(Ordering::Acquire) || now >= end || per_producer_records.is_some_and(|n| sent >= n) {
            break;
        }
        // How many records are due by now.
        let due = match rate {
            Some(r) => (now.duration_since(clock.t0).as_secs_f64() * r) as u64,
            // Closed loop: keep the window full, one batch at a time.
            None if state.queued.get() == 0 && slots.available() > 0 => {
                sent + (opts.batch_bytes / opts.mean_record_bytes().max(1.0) as usize).max(1) as u64
            }
            None => sent,
        };
        let due = per_producer_records.map_or(due, |n| due.min(n));
        // Closed loop: the records taken in this pass are all due now.
        let now_ns = if rate.is_none() && sent < due { clock_now_ns() } else { 0 };
        while sent < due {
            if state.queued.get() >= QUEUED_BATCHES_MAX {
                state.bump(|c| c.skipped += due - sent);
                sent = due;
                break;
            }
            let intended_ns = match rate {
                Some(r) => clock.unix_ns(clock.t0 + Duration::from_secs_f64(sent as f64 / r)),
                None => now_ns,
            };
            let key = keys.next(&mut rng);
            let p = match &key {
                Some(k) => partition::partition_for_key(k, partitions),
                None => sticky,
            };
            let size = record_size(&opts.record_size, &mut rng);
            let (b, first) = builders.entry(p).or_insert_with(|| (BatchBuilder::new(opts.compression), now));
            if b.is_empty() {
                *first = now;
            }
            let off = rng.random_range(0..filler.len() - size.max(records::STAMP_BYTES) + 1);
            b.push(key.as_deref(), size, &filler[off..], intended_ns);
            if b.bytes >= opts.batch_bytes {
                flush(p, b);
                if key.is_none() {
                    sticky = (sticky + 1) % partitions;
                }
            }
            sent += 1;
        }
        // Linger: send batches whose first record waited long enough, once
        // a request slot is free. While every slot is busy, a lingering
        // batch stays open and keeps filling, as in Kafka's accumulator, so
        // under load batches grow instead of requests multiplying.
        let mut free_slots = (slots.available() as usize).saturating_sub(state.queued.get());
        for (&p, (b, first)) in builders.iter_mut() {
            if free_slots > 0 && !b.is_empty() && now.duration_since(*first) >= opts.linger {
                free_slots -= 1;
                flush(p, b);
                if p == sticky && matches!(opts.keys, KeyDist::None) {
                    sticky = (sticky + 1) % partitions;
                }
            }
        }
        if state.stale_leaders.get() && last_refresh.elapsed() >= METADATA_REFRESH_MIN {
            last_refresh = Instant::now();
            state.stale_leaders.set(false);
            if let Err(e) = leaders.refresh().await {
                tracing_error(&e);
            }
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let (c, h) = std::mem::replace(&mut *state.interval.borrow_mut(), (Counts::default(), new_histogram()));
            let _ = tx.send(Report::Interval {
                produce: c,
                consume: Counts::default(),
                produce_hist: h,
                e2e_hist: new_histogram(),
            });
        }
        let wait = match rate {
            Some(r) => {
                let next_due = clock.t0 + Duration::from_secs_f64((sent + 1) as f64 / r);
                next_due.saturating_duration_since(Instant::now()).min(opts.linger.max(Duration::from_micros(50)))
            }
            None => Duration::from_micros(50),
        };
        glommio::timer::sleep(wait.max(Duration::from_micros(20))).await;
    }
    for (&p, (b, _)) in builders.iter_mut() {
        if !b.is_empty() {
            flush(p, b);
        }
    }
    // Drain: wait for every in-flight batch (bounded).
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while (state.queued.get() > 0 || slots.available() < opts.max_in_flight as u64) && Instant::now() < drain_deadline {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let (c, h) = std::mem::replace(&mut *state.interval.borrow_mut(), (Counts::default(), new_histogram()));
    let _ = tx.send(Report::Interval {
        produce: c,
        consume: Counts::default(),
        produce_hist: h,
        e2e_hist: new_histogram(),
    });
    let hist = state.hist.borrow().clone();
    let _ = tx.send(Report::Done {
        produce: state.counts.get(),
        consume: Counts::default(),
        produce_hist: hist,
        e2e_hist: new_histogram(),
        request_hist: state.requests.borrow().clone(),
        error: None,
    });
    Ok(())
}

fn clock_now_ns() -> i64 {
    Clock::now_unix_ns()
}

fn tracing_error(e: &ClientError) {
    // Errors are counted and shown in the live line; the first few are printed.
    thread_local!(static SHOWN: Cell<u32> = const { Cell::new(0) });
    SHOWN.with(|s| {
        if s.get() < 3 {
            s.set(s.get() + 1);
            eprintln!("spindle-bench: {e}");
        }
    });
}

async fn consumer(
    index: usize,
    opts: &LoadOptions,
    partitions: i32,
    clock: &Clock,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Report>,
) -> Result<(), ClientError> {
    let leaders = Leaders::new(opts.bootstrap, &opts.topic).await?;
    let mine: Vec<i32> = (0..partitions).filter(|p| *p as usize % opts.consumers == index).collect();
    if mine.is_empty() {
        clock.consumers_ready.fetch_add(1, Ordering::AcqRel);
        let _ = tx.send(Report::Done {
            produce: Counts::default(),
            consume: Counts::default(),
            produce_hist: new_histogram(),
            e2e_hist: new_histogram(),
            request_hist: new_histogram(),
            error: None,
        });
        return Ok(());
    }
    // Each partition's offsets come from its leader, as its records do;
    // a leader that moved meanwhile means asking Metadata again.
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    let mut attempts = 0;
    while offsets.len() < mine.len() {
        let missing: Vec<i32> = mine.iter().copied().filter(|p| !offsets.contains_key(p)).collect();
        for group in leaders.by_leader(&missing) {
            let latest = match leaders.conn(group[0]).await {
                Ok(conn) => client::latest_offsets(&conn, &opts.topic, &group).await,
                Err(e) => Err(e),
            };
            match latest {
                Ok(latest) => offsets.extend(group.iter().copied().zip(latest)),
                Err(e) if e.wants_metadata() && attempts < METADATA_ATTEMPTS => {
                    attempts += 1;
                    glommio::timer::sleep(METADATA_REFRESH_MIN).await;
                    leaders.refresh().await?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    clock.consumers_ready.fetch_add(1, Ordering::AcqRel);
    let warmup_end_ns = clock.unix_ns(clock.t0 + opts.warmup);
    // Consumers run until producers are done plus a grace period to drain.
    let end = clock.t0 + opts.duration + Duration::from_secs(2);
    let mut total = Counts::default();
    let mut interval = (Counts::default(), new_histogram());
    let mut hist = new_histogram();
    let mut last_report = Instant::now();
    let mut last_refresh = Instant::now();
    while Instant::now() < end && !stop.load(Ordering::Acquire) {
        // One fetch per leader, in parallel.
        let groups = leaders.by_leader(&mine);
        let fetches = groups.iter().map(|group| {
            let at: Vec<i64> = group.iter().map(|p| offsets[p]).collect();
            let (leaders, topic) = (&leaders, &opts.topic);
            async move {
                let conn = leaders.conn(group[0]).await?;
                client::fetch(&conn, topic, group, &at, 100).await
            }
        });
        let results = futures::future::join_all(fetches).await;
        let now_ns = clock_now_ns();
        let mut stale = false;
        let mut failed = 0;
        for result in results {
            let parts = match result {
                Ok(parts) => parts,
                Err(e) => {
                    tracing_error(&e);
                    stale |= e.wants_metadata();
                    total.errors += 1;
                    interval.0.errors += 1;
                    failed += 1;
                    continue;
                }
            };
            for (p, err, recs) in parts {
                if !offsets.contains_key(&p) {
                    continue;
                }
                if err != 0 {
                    stale |= client::code_wants_metadata(err);
                    total.errors += 1;
                    interval.0.errors += 1;
                    continue;
                }
                let w = records::walk(&recs);
                if let Some(n) = w.next_offset {
                    offsets.insert(p, n);
                }
                total.records += w.records;
                total.bytes += w.bytes;
                let measured = w.stamps.iter().filter(|t| **t >= warmup_end_ns).count() as u64;
                total.measured_records += measured;
                total.measured_bytes += w.bytes * measured / w.records.max(1);
                interval.0.records += w.records;
                interval.0.bytes += w.bytes;
                for ts in w.stamps {
                    let us = ((now_ns - ts) / 1000).clamp(1, LATENCY_MAX_US as i64) as u64;
                    if ts >= warmup_end_ns {
                        let _ = hist.record(us);
                    }
                    let _ = interval.1.record(us);
                }
            }
        }
        if stale && last_refresh.elapsed() >= METADATA_REFRESH_MIN {
            last_refresh = Instant::now();
            if let Err(e) = leaders.refresh().await {
                tracing_error(&e);
            }
        }
        if failed == groups.len() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let (c, h) = std::mem::replace(&mut interval, (Counts::default(), new_histogram()));
            let _ = tx.send(Report::Interval {
                produce: Counts::default(),
                consume: c,
                produce_hist: new_histogram(),
                e2e_hist: h,
            });
        }
    }
    let _ = tx.send(Report::Interval {
        produce: Counts::default(),
        consume: interval.0,
        produce_hist: new_histogram(),
        e2e_hist: interval.1,
    });
    let _ = tx.send(Report::Done {
        produce: Counts::default(),
        consume: total,
        produce_hist: new_histogram(),
        e2e_hist: hist,
        request_hist: new_histogram(),
        error: None,
    });
    Ok(())
}
