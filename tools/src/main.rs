//! `spindle`: the broker and its command-line tools.

mod cluster;
mod groups;

use clap::{Args, Parser, Subcommand};
use spindle_net::config::{parse_cpus, BrokerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "spindle", version, about = "A Kafka-compatible streaming broker, thread-per-core on io_uring")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The cluster as one broker sees it: brokers, quorum, partition health.
    Cluster(cluster::ClusterArgs),
    /// Consumer groups: list, describe (lag per partition), reset offsets.
    Groups(groups::GroupsArgs),
    /// Topics in the cluster: leaders, replicas, ISR, leader epochs.
    Topics(cluster::TopicsArgs),
    /// Run the broker. With no flags: data in ./spindle-data, Kafka on
    /// 127.0.0.1:9092, admin HTTP on 127.0.0.1:9644, every CPU.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file with any of the keys below (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This broker's node id.
    #[arg(long)]
    node_id: Option<i32>,
    /// Directory for partition logs and metadata.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kafka listener address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// host:port given to clients in Metadata (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Number of cores ("2") or a CPU list ("0,2-3"); default: all.
    #[arg(long)]
    cores: Option<String>,
    /// Admin HTTP listener for /metrics and /healthz ("" disables it).
    #[arg(long)]
    admin_listen: Option<String>,
    /// auto.create.topics.enable
    #[arg(long)]
    auto_create_topics_enable: Option<bool>,
    /// num.partitions for auto-created topics and CreateTopics without a count.
    #[arg(long)]
    num_partitions: Option<i32>,
    /// socket.request.max.bytes: larger frames close the connection.
    #[arg(long)]
    socket_request_max_bytes: Option<usize>,
    /// Per-core batch cache budget in bytes.
    #[arg(long)]
    cache_bytes: Option<usize>,
    /// Per-core io_uring registered buffer memory in bytes.
    #[arg(long)]
    io_memory_bytes: Option<usize>,
    /// Microseconds a core runs ready tasks before it submits queued I/O
    /// and reaps completions (glommio's preempt timer).
    #[arg(long)]
    task_quota_us: Option<u64>,
    /// acks=all waits for fdatasync (true) or only for the direct write.
    #[arg(long)]
    acks_all_fsync: Option<bool>,
    /// log.segment.bytes default for topics.
    #[arg(long)]
    log_segment_bytes: Option<u64>,
    /// log.retention.ms default for topics.
    #[arg(long)]
    log_retention_ms: Option<i64>,
    /// log.retention.bytes default for topics.
    #[arg(long)]
    log_retention_bytes: Option<i64>,
    /// log.segment.recycle.enable: roll new segments into the files of
    /// segments retention deleted (one more kept than rolled between its last runs).
    #[arg(long)]
    log_segment_recycle_enable: Option<bool>,
    /// message.max.bytes default (topic max.message.bytes).
    #[arg(long)]
    message_max_bytes: Option<u32>,
    /// log.retention.check.interval.ms
    #[arg(long)]
    log_retention_check_interval_ms: Option<u64>,
    /// log.deletion.max.bytes.per.sec: how fast each core frees deleted
    /// files, of deleted partitions and deleted segments (0: at once).
    #[arg(long)]
    log_deletion_max_bytes_per_sec: Option<u64>,
    /// log.segment.delete.delay.ms: a deleted segment's file is freed no sooner than this.
    #[arg(long)]
    log_segment_delete_delay_ms: Option<u64>,
    /// producer.id.expiration.ms: an idempotent producer idle this long on a
    /// partition is forgotten there (its next batch starts a new sequence).
    #[arg(long)]
    producer_id_expiration_ms: Option<i64>,
    /// group.initial.rebalance.delay.ms: a new group's first rebalance waits
    /// this long for more members.
    #[arg(long)]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// group.max.size: the most members a consumer group admits.
    #[arg(long)]
    group_max_size: Option<u32>,
    /// ack.journal.dir: where each core keeps its ack journal (a tmpfs), or "off".
    /// Appends are acknowledged once copied there, before their disk write.
    #[arg(long)]
    ack_journal_dir: Option<String>,
    /// ack.journal.bytes: each core's ack journal ring (multiple of 4096).
    #[arg(long)]
    ack_journal_bytes: Option<u64>,
    /// offsets.compact.bytes: compact a __consumer_offsets partition after it grew this much.
    #[arg(long)]
    offsets_compact_bytes: Option<u64>,
    /// controller.quorum.voters: the metadata quorum, "0@127.0.0.1:9093,1@127.0.0.2:9093,...".
    /// This node listens for its peers on its own entry's address.
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// broker.session.timeout.ms: the controller fences a broker whose heartbeats stop this long.
    #[arg(long)]
    broker_session_timeout_ms: Option<u64>,
    /// broker.heartbeat.interval.ms
    #[arg(long)]
    broker_heartbeat_interval_ms: Option<u64>,
    /// default.replication.factor: replicas of topics created without one (cluster mode).
    #[arg(long)]
    default_replication_factor: Option<i16>,
    /// min.insync.replicas for topics that do not set it.
    #[arg(long)]
    min_insync_replicas: Option<usize>,
    /// replica.lag.time.max.ms: an ISR member not caught up this long leaves the ISR.
    #[arg(long)]
    replica_lag_time_max_ms: Option<u64>,
}

fn build_config(a: ServeArgs) -> Result<BrokerConfig, String> {
    let mut c = BrokerConfig::default();
    if let Some(p) = &a.config {
        c.apply_file(p).map_err(|e| e.to_string())?;
    }
    macro_rules! set {
        ($($field:ident => $target:expr),* $(,)?) => {$( if let Some(v) = a.$field { $target = v; } )*};
    }
    set!(node_id => c.node_id, data_dir => c.data_dir, listen => c.listen,
         auto_create_topics_enable => c.auto_create_topics_enable, num_partitions => c.num_partitions,
         socket_request_max_bytes => c.socket_request_max_bytes, cache_bytes => c.cache_bytes,
         io_memory_bytes => c.io_memory_bytes, task_quota_us => c.task_quota_us, acks_all_fsync => c.acks_all_fsync,
         log_segment_bytes => c.log_defaults.segment_bytes, log_retention_ms => c.log_defaults.retention_ms,
         log_retention_bytes => c.log_defaults.retention_bytes,
         log_segment_recycle_enable => c.log_defaults.recycle_segments, message_max_bytes => c.log_defaults.max_message_bytes,
         log_retention_check_interval_ms => c.retention_check_interval_ms,
         log_deletion_max_bytes_per_sec => c.deletion_bytes_per_sec,
         log_segment_delete_delay_ms => c.segment_delete_delay_ms,
         producer_id_expiration_ms => c.producer_id_expiration_ms,
         group_initial_rebalance_delay_ms => c.group_initial_rebalance_delay_ms,
         group_max_size => c.group_max_size, ack_journal_bytes => c.ack_journal_bytes,
         offsets_compact_bytes => c.offsets_compact_bytes,
         broker_session_timeout_ms => c.broker_session_timeout_ms,
         broker_heartbeat_interval_ms => c.broker_heartbeat_interval_ms,
         default_replication_factor => c.default_replication_factor,
         min_insync_replicas => c.min_insync_replicas,
         replica_lag_time_max_ms => c.replica_lag_time_max_ms);
    if let Some(v) = a.advertise {
        c.advertise = Some(v);
    }
    if let Some(v) = a.ack_journal_dir {
        c.ack_journal_dir = spindle_net::config::parse_ack_journal_dir(&v);
    }
    if let Some(v) = a.controller_quorum_voters {
        c.controller_quorum_voters = spindle_net::config::parse_voters(&v)?;
    }
    if let Some(v) = a.cores {
        c.cpus = parse_cpus(&v)?;
    }
    if let Some(v) = a.admin_listen {
        c.admin_listen = if v.is_empty() {
            None
        } else {
            Some(v.parse().map_err(|_| format!("--admin-listen: not an address: {v}"))?)
        };
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Most open files the broker asks for. Every client connection, segment
/// file and index costs a descriptor, and the usual default soft limit (1024)
/// runs out at about a thousand connections: accept() then fails on every
/// core, and the broker, admin endpoint included, stops answering new
/// clients. So, like Go's runtime and most servers, `serve` raises its soft
/// limit to the hard one at start. Capped because a hard limit of
/// RLIM_INFINITY cannot be set as the soft limit (Linux's default
/// `fs.nr_open` is this same 2^20).
const OPEN_FILES_WANTED: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE's soft limit towards the hard one; returns the soft
/// limit before and after.
fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = r.rlim_cur;
    let want = r.rlim_max.min(OPEN_FILES_WANTED);
    if before >= want {
        return Ok((before, before));
    }
    r.rlim_cur = want as libc::rlim_t;
    // SAFETY: setrlimit reads only the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, want))
}

/// Keeps a request whose array length lies from aborting the process (see
/// `spindle_net::alloc`).
#[global_allocator]
static ALLOC: spindle_net::alloc::GuardedAlloc = spindle_net::alloc::GuardedAlloc;

/// Largest allocation glibc serves from the heap instead of its own mmap
/// (and keeps for reuse instead of returning to the kernel at free).
const HEAP_REUSE_BYTES: i32 = 64 << 20;

/// Request buffers (up to a few MiB each) are allocated and freed all the
/// time, and the zero-copy batch cache keeps some alive for a while. By
/// default glibc serves large blocks with mmap and unmaps them at free, so
/// every request paid page faults and zeroing for fresh pages, and every
/// free a TLB shootdown across cores. Served from the heap and not trimmed,
/// the pages are reused instead. The cost: freed memory stays in the
/// process (bounded by the cache budget plus in-flight requests).
fn keep_heap_pages() {
    // SAFETY: mallopt only sets allocator parameters; called before the
    // executors start allocating from other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_REUSE_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_REUSE_BYTES * 4);
    }
}

/// Exit status of an admin subcommand, with its error on stderr.
fn report(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spindle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SPINDLE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // A log line that cannot be written (its disk is full) is lost; the
        // default reports it with eprint!, which panics on the same error.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Cluster(args) => report(cluster::run_cluster(args)),
        Command::Topics(args) => report(cluster::run_topics(args)),
        Command::Groups(args) => report(groups::run(args)),
        Command::Serve(args) => {
            let cfg = match build_config(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("spindle: {e}");
                    return ExitCode::from(2);
                }
            };
            match raise_open_files_limit() {
                Ok((before, after)) if after > before => {
                    tracing::info!(before, after, "raised the open-files soft limit")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit; clients may be refused"),
            }
            keep_heap_pages();
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
                    eprintln!("spindle: cannot install signal handler: {e}");
                    return ExitCode::FAILURE;
                }
            }
            match spindle_net::run(cfg, stop) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spindle: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nofile() -> libc::rlimit {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in raise_open_files_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        r
    }

    // Regression: started with the common default soft limit of 1024, the
    // broker hit EMFILE at ~1000 idle connections and stopped accepting any
    // client (tools/interop/test_robustness.py, half-open connections).
    #[test]
    fn serve_raises_open_files_soft_limit_to_the_hard_limit() {
        let mut r = nofile();
        let hard = r.rlim_max;
        r.rlim_cur = hard.min(256) as libc::rlim_t;
        // SAFETY: as in raise_open_files_limit. Each test runs in its own
        // process under nextest; the limit only matters to this one.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
        let (before, after) = raise_open_files_limit().unwrap();
        assert_eq!(before, hard.min(256));
        assert_eq!(after, hard.min(OPEN_FILES_WANTED));
        assert_eq!(nofile().rlim_cur, after);
        // Already raised: nothing to do.
        assert_eq!(raise_open_files_limit().unwrap(), (after, after));
    }
}
