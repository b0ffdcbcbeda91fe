//! `spindle-bench`: this host's limits, the engine measured against them,
//! and the tables of `bench/RESULTS.md`. See `bench/run-engine-bench.sh` for
//! the full run.

use clap::{Parser, Subcommand, ValueEnum};
use spindle_bench::engine::{self, EngineOptions, EngineResult, Mode};
use spindle_bench::limits::{self, Limits, LimitsOptions};
use spindle_bench::load::{self, cli::CompareArgs, cli::WorkloadArgs};
use spindle_bench::report;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Direct-I/O buffers on huge pages, as in `spindle serve`.
#[global_allocator]
static ALLOC: spindle_engine::dma_alloc::DmaAlloc = spindle_engine::dma_alloc::DmaAlloc;

#[derive(Parser)]
#[command(
    name = "spindle-bench",
    version,
    about = "Benchmarks of the Spindle storage engine and of this host's limits"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load generator: produce only (open loop with --rate, closed loop without).
    Produce(WorkloadArgs),
    /// Load generator: consume only, tailing the topic from its end.
    Consume {
        #[arg(long, default_value_t = 1)]
        consumers: usize,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Load generator: produce and consume together; end-to-end latency.
    E2e {
        #[arg(long, default_value_t = 1)]
        consumers: usize,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// The same workload against two brokers in alternation, with ratios.
    Compare(CompareArgs),
    /// A Kafka endpoint that acknowledges every produce and keeps nothing:
    /// the generator's own ceiling.
    NullSink {
        #[arg(long, default_value = "127.0.0.1:19999")]
        listen: std::net::SocketAddr,
        /// CPUs for the sink (count or list); default: CPU 0.
        #[arg(long)]
        cores: Option<String>,
    },
    /// Measure this host: direct-I/O write/read bandwidth, fdatasync latency,
    /// loopback TCP, memcpy and CRC-32C.
    Limits {
        /// Directory on the disk to measure (not tmpfs).
        #[arg(long)]
        dir: PathBuf,
        /// Size of each bandwidth job's file.
        #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(16..))]
        size_mib: u64,
        /// Cap on each job's duration.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        runtime_s: u64,
        /// Queue depth of the headline 1 MiB jobs.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        iodepth: u32,
        /// Runs of each bandwidth job (the median is reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Use the built-in loops even if fio is installed.
        #[arg(long)]
        no_fio: bool,
        /// Seconds of loopback TCP.
        #[arg(long, default_value_t = 3.0)]
        tcp_secs: f64,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the engine's Log on DmaStorage in a pinned glommio executor.
    Engine {
        /// Data directory (a log directory is created inside and removed after).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = ModeArg::Append)]
        mode: ModeArg,
        /// Kafka wire bytes of each appended batch.
        #[arg(long, default_value_t = 16384)]
        batch_bytes: usize,
        /// Approximate bytes of each record inside a batch.
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        /// MiB appended (append, read-cold) or read (read-cached).
        #[arg(long, default_value_t = 2048)]
        total_mib: u64,
        /// Request durability (wait_durable) after every this many acknowledged MiB; 0: only at the end.
        #[arg(long, default_value_t = 1.0)]
        sync_every_mib: f64,
        /// MiB of appends kept in flight.
        #[arg(long, default_value_t = 16.0)]
        inflight_mib: f64,
        /// Core to pin the executor to.
        #[arg(long, default_value_t = 0)]
        cpu: usize,
        /// glommio io_memory in MiB (registered buffers; counts against RLIMIT_MEMLOCK).
        #[arg(long, default_value_t = 4)]
        io_memory_mib: usize,
        /// Microseconds the executor runs ready tasks before it submits
        /// queued I/O (glommio's preempt timer; default: glommio's, as in
        /// `spindle serve`).
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
        task_quota_us: u64,
        /// Batch cache budget in MiB.
        #[arg(long, default_value_t = 256)]
        cache_mib: usize,
        /// max_bytes of each read (a consumer's fetch size).
        #[arg(long, default_value_t = 1 << 20)]
        fetch_bytes: usize,
        /// MiB in the segment recovered by `--mode recovery`.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=4000))]
        recovery_mib: u64,
        /// Timed opens in `--mode recovery`.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Keep the log directory afterwards.
        #[arg(long)]
        keep: bool,
        /// Append mode: run fio's 1 MiB direct-write job at this queue depth
        /// right before and after, for the ratio (0: off; needs fio).
        #[arg(long, default_value_t = 0)]
        reference_iodepth: u32,
        /// With --reference-iodepth: also run the reference with fio's
        /// buffers on huge pages from this mounted hugetlbfs directory
        /// (needs free huge pages: /proc/sys/vm/nr_hugepages).
        #[arg(long)]
        reference_hugetlbfs: Option<PathBuf>,
        /// Direct-I/O buffers from the system allocator (4 KiB pages), as
        /// before they moved to huge pages: for A/B runs.
        #[arg(long)]
        small_page_buffers: bool,
        /// Also write the result as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Print the markdown tables of RESULTS.md from saved JSON.
    Report {
        /// JSON written by `limits --json`.
        #[arg(long)]
        limits: Option<PathBuf>,
        /// JSON written by `engine --json` (repeatable).
        #[arg(long)]
        engine: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Append,
    ReadCached,
    ReadCold,
    Recovery,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Append => Mode::Append,
            ModeArg::ReadCached => Mode::ReadCached,
            ModeArg::ReadCold => Mode::ReadCold,
            ModeArg::Recovery => Mode::Recovery,
        }
    }
}

fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Produce(w) => {
            let opts = w.options(0, w.producers)?;
            load::cli::run_workload(opts, w.out.clone())?;
        }
        Cmd::Consume { consumers, workload } => {
            let opts = workload.options(consumers.max(1), 0)?;
            load::cli::run_workload(opts, workload.out.clone())?;
        }
        Cmd::E2e { consumers, workload } => {
            let opts = workload.options(consumers.max(1), workload.producers)?;
            load::cli::run_workload(opts, workload.out.clone())?;
        }
        Cmd::Compare(c) => load::cli::compare(c)?,
        Cmd::NullSink { listen, cores } => {
            let cpus = match cores {
                Some(c) => load::cli::parse_cpus(&c)?,
                None => vec![0],
            };
            load::sink::run(listen, cpus)?;
        }
        Cmd::Limits { dir, size_mib, runtime_s, iodepth, repeat, no_fio, tcp_secs, json } => {
            let opts = LimitsOptions { dir, size_mib, runtime_s, iodepth, repeat, use_fio: !no_fio, tcp_secs };
            let l = limits::measure(&opts)?;
            println!("{:<36} {:>12}  how", "measurement", "value");
            for r in &l.rows {
                println!("{:<36} {:>8.2} {:<5} {}", r.name, r.value, r.unit, r.how);
            }
            if let Some(p) = json {
                write_json(&p, &l)?;
            }
        }
        Cmd::Engine {
            dir,
            mode,
            batch_bytes,
            record_bytes,
            total_mib,
            sync_every_mib,
            inflight_mib,
            cpu,
            io_memory_mib,
            task_quota_us,
            cache_mib,
            fetch_bytes,
            recovery_mib,
            repeat,
            keep,
            reference_iodepth,
            reference_hugetlbfs,
            small_page_buffers,
            json,
        } => {
            if small_page_buffers {
                // No direct-I/O buffer exists yet: only arguments were parsed.
                spindle_engine::dma_alloc::use_small_pages();
            }
            if !(sync_every_mib >= 0.0 && inflight_mib > 0.0) {
                return Err("--sync-every-mib must be >= 0 and --inflight-mib > 0".into());
            }
            let opts = EngineOptions {
                dir,
                mode: mode.into(),
                batch_bytes,
                record_bytes,
                total_mib,
                sync_every_mib,
                inflight_mib,
                cpu,
                io_memory_mib,
                task_quota_us,
                cache_mib,
                fetch_bytes,
                recovery_mib,
                repeat,
                keep,
                reference_iodepth,
                reference_hugetlbfs,
            };
            let r = engine::run(&opts)?;
            engine::print(&r);
            if let Some(p) = json {
                write_json(&p, &r)?;
            }
        }
        Cmd::Report { limits, engine } => {
            let l: Option<Limits> = limits.as_deref().map(read_json).transpose()?;
            let rs: Vec<EngineResult> = engine.iter().map(|p| read_json(p)).collect::<Result<_, _>>()?;
            if let Some(l) = &l {
                println!("{}", report::limits_table(l));
            }
            if !rs.is_empty() {
                println!("{}", report::engine_table(l.as_ref(), &rs));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spindle-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
