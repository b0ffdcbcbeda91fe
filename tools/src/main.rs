//! `spindle`: the broker and its command-line tools.

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
    /// message.max.bytes default (topic max.message.bytes).
    #[arg(long)]
    message_max_bytes: Option<u32>,
    /// log.retention.check.interval.ms
    #[arg(long)]
    log_retention_check_interval_ms: Option<u64>,
    /// group.initial.rebalance.delay.ms: a new group's first rebalance waits
    /// this long for more members.
    #[arg(long)]
    group_initial_rebalance_delay_ms: Option<u64>,
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
         io_memory_bytes => c.io_memory_bytes, acks_all_fsync => c.acks_all_fsync,
         log_segment_bytes => c.log_defaults.segment_bytes, log_retention_ms => c.log_defaults.retention_ms,
         log_retention_bytes => c.log_defaults.retention_bytes, message_max_bytes => c.log_defaults.max_message_bytes,
         log_retention_check_interval_ms => c.retention_check_interval_ms,
         group_initial_rebalance_delay_ms => c.group_initial_rebalance_delay_ms);
    if let Some(v) = a.advertise {
        c.advertise = Some(v);
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SPINDLE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let cfg = match build_config(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("spindle: {e}");
                    return ExitCode::from(2);
                }
            };
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
