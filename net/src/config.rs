//! Broker configuration: embedded defaults, a TOML file, and flags.
//!
//! Precedence: defaults < `--config FILE` < flags. Keys use Kafka's names
//! where Kafka has one (`num.partitions`, `auto.create.topics.enable`,
//! `log.retention.ms`, ...); in TOML they are written as quoted keys or with
//! underscores (`num_partitions`), both accepted.

use serde::Deserialize;
use spindle_engine::constants::DEFAULT_CACHE_BYTES_MAX;
use spindle_engine::storage::reaper;
use spindle_engine::LogConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_SOCKET_REQUEST_MAX_BYTES: usize = 100 * 1024 * 1024;
/// Requests a connection may have in flight before we stop reading from it.
/// librdkafka pipelines up to 5 produce requests per connection by default;
/// 16 leaves room without letting one client pin unbounded memory.
pub const DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Default io_uring registered-buffer memory per core. Small on purpose:
/// RLIMIT_MEMLOCK is often 8 MiB and buffers beyond this fall back to the heap.
pub const DEFAULT_IO_MEMORY_BYTES: usize = 4 << 20;
/// How long a core runs ready tasks before it hands queued I/O to the
/// kernel and reaps completions (glommio's preempt timer; glommio's default).
/// A shorter quota got the storage engine's own append benchmark from
/// 1441-1579 to 2126-2181 MiB/s, because finished write rounds no longer
/// waited in the submission queue while the core staged more appends; in
/// the broker at 800 MiB/s of acks=1 produce a 500 µs quota made the ack
/// p99 worse (11-37 ms against 5-6 ms), so the broker keeps glommio's
/// default (bench/RESULTS.md, "Write buffers on huge pages, and the task
/// quota").
pub const DEFAULT_TASK_QUOTA_US: u64 = 100_000;

/// Where the ack journals go by default: the host's shared-memory tmpfs.
pub const DEFAULT_ACK_JOURNAL_DIR: &str = "/dev/shm";

/// Each core's ack journal: at 600 MiB/s, 27 ms of writes.
pub const DEFAULT_ACK_JOURNAL_BYTES: u64 = 16 << 20;

/// `ack.journal.dir`'s value: a directory, or "off" (or empty) for none.
pub fn parse_ack_journal_dir(v: &str) -> Option<PathBuf> {
    match v.trim() {
        "" | "off" => None,
        dir => Some(PathBuf::from(dir)),
    }
}

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Address given to clients in Metadata; defaults to `listen`.
    pub advertise: Option<String>,
    /// CPUs to run one executor on each. Empty: every online CPU.
    pub cpus: Vec<usize>,
    pub admin_listen: Option<SocketAddr>,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub socket_request_max_bytes: usize,
    pub max_in_flight_per_connection: usize,
    /// Per-core batch cache budget.
    pub cache_bytes: usize,
    pub io_memory_bytes: usize,
    /// The executor's task quota in µs: see [`DEFAULT_TASK_QUOTA_US`].
    pub task_quota_us: u64,
    /// acks=all waits for fdatasync (true) or only for the direct write.
    pub acks_all_fsync: bool,
    /// `ack.journal.dir`: where each core keeps its ack journal (see
    /// [`spindle_engine::journal`]), a tmpfs; `None` ("off"): appends are
    /// acknowledged once written. Single node only for now.
    pub ack_journal_dir: Option<PathBuf>,
    /// `ack.journal.bytes`: each core's ack journal ring.
    pub ack_journal_bytes: u64,
    /// Broker-wide defaults of topic configs (`log.segment.bytes`, ...).
    pub log_defaults: LogConfig,
    /// How often each core checks retention (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// `log.deletion.max.bytes.per.sec`: how fast each core frees deleted
    /// files, of deleted partitions and deleted segments (0: at once). See
    /// [`spindle_engine::storage::reaper`].
    pub deletion_bytes_per_sec: u64,
    /// `log.segment.delete.delay.ms`: how long a deleted segment's file
    /// stays before it is freed (Kafka's default, 60 s).
    pub segment_delete_delay_ms: u64,
    /// `producer.id.expiration.ms`: an idempotent producer whose last batch
    /// to a partition is older than this is forgotten there at the next
    /// retention check (Kafka's default, one day).
    pub producer_id_expiration_ms: i64,
    /// `group.initial.rebalance.delay.ms`: how long a new group's first
    /// rebalance waits for more members (Kafka's default, 3 s).
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.max.size`: the most members a consumer group admits; one more
    /// gets GROUP_MAX_SIZE_REACHED (Kafka's default: 2147483647, no limit).
    pub group_max_size: u32,
    /// `offsets.compact.bytes`: a `__consumer_offsets` partition is
    /// compacted (snapshot of live keys, older records dropped) after
    /// growing this much.
    pub offsets_compact_bytes: u64,
    /// `controller.quorum.voters` (`1@127.0.0.1:9093,...`): the metadata
    /// quorum's voters and their controller listeners. Empty: single node,
    /// no quorum.
    pub controller_quorum_voters: Vec<(i32, SocketAddr)>,
    /// `broker.session.timeout.ms`: the controller fences a broker whose
    /// heartbeats stop this long (Kafka's default, 9 s).
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (Kafka's default, 2 s).
    pub broker_heartbeat_interval_ms: u64,
    /// `default.replication.factor`: CreateTopics with replication factor -1
    /// and auto-created topics (cluster mode; Kafka's default, 1).
    pub default_replication_factor: i16,
    /// `min.insync.replicas` for topics that do not set it (Kafka's default, 1).
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: an ISR member that has not caught up for
    /// this long leaves the ISR (Kafka's default, 30 s).
    pub replica_lag_time_max_ms: u64,
}

/// Parses Kafka's `controller.quorum.voters` form: `id@host:port,...`.
pub fn parse_voters(spec: &str) -> Result<Vec<(i32, SocketAddr)>, String> {
    let mut out: Vec<(i32, SocketAddr)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("controller.quorum.voters: expected id@host:port, got {part}"))?;
        let id: i32 =
            id.parse().ok().filter(|i| *i >= 0).ok_or_else(|| format!("controller.quorum.voters: bad node id {id}"))?;
        let addr: SocketAddr = addr.parse().map_err(|_| format!("controller.quorum.voters: not an address: {addr}"))?;
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("controller.quorum.voters: node {id} listed twice"));
        }
        out.push((id, addr));
    }
    Ok(out)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./spindle-data"),
            listen: "127.0.0.1:9092".parse().unwrap(),
            advertise: None,
            cpus: Vec::new(),
            admin_listen: Some("127.0.0.1:9644".parse().unwrap()),
            auto_create_topics_enable: true,
            num_partitions: 1,
            socket_request_max_bytes: DEFAULT_SOCKET_REQUEST_MAX_BYTES,
            max_in_flight_per_connection: DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
            cache_bytes: DEFAULT_CACHE_BYTES_MAX,
            io_memory_bytes: DEFAULT_IO_MEMORY_BYTES,
            task_quota_us: DEFAULT_TASK_QUOTA_US,
            acks_all_fsync: true,
            ack_journal_dir: Some(PathBuf::from(DEFAULT_ACK_JOURNAL_DIR)),
            ack_journal_bytes: DEFAULT_ACK_JOURNAL_BYTES,
            log_defaults: LogConfig::default(),
            retention_check_interval_ms: 5 * 60 * 1000,
            deletion_bytes_per_sec: reaper::DEFAULT_DELETION_BYTES_PER_SEC,
            segment_delete_delay_ms: reaper::DEFAULT_FILE_DELETE_DELAY.as_millis() as u64,
            producer_id_expiration_ms: spindle_engine::producers::PRODUCER_ID_EXPIRATION_MS,
            group_initial_rebalance_delay_ms: 3000,
            group_max_size: i32::MAX as u32,
            offsets_compact_bytes: crate::group::DEFAULT_COMPACT_AFTER_BYTES,
            controller_quorum_voters: Vec::new(),
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 2000,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{0}")]
    Invalid(String),
}

/// The TOML file's shape. Every field optional; absent means "keep".
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(alias = "node.id")]
    node_id: Option<i32>,
    #[serde(alias = "data.dir", alias = "log.dirs")]
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    cores: Option<String>,
    #[serde(alias = "admin.listen")]
    admin_listen: Option<String>,
    #[serde(alias = "auto.create.topics.enable")]
    auto_create_topics_enable: Option<bool>,
    #[serde(alias = "num.partitions")]
    num_partitions: Option<i32>,
    #[serde(alias = "socket.request.max.bytes")]
    socket_request_max_bytes: Option<usize>,
    #[serde(alias = "cache.bytes")]
    cache_bytes: Option<usize>,
    #[serde(alias = "io.memory.bytes")]
    io_memory_bytes: Option<usize>,
    #[serde(alias = "task.quota.us")]
    task_quota_us: Option<u64>,
    #[serde(alias = "acks.all.fsync")]
    acks_all_fsync: Option<bool>,
    #[serde(alias = "log.segment.bytes")]
    log_segment_bytes: Option<u64>,
    #[serde(alias = "log.roll.ms")]
    log_roll_ms: Option<i64>,
    #[serde(alias = "log.retention.ms")]
    log_retention_ms: Option<i64>,
    #[serde(alias = "log.retention.bytes")]
    log_retention_bytes: Option<i64>,
    #[serde(alias = "log.segment.recycle.enable")]
    log_segment_recycle_enable: Option<bool>,
    #[serde(alias = "message.max.bytes")]
    message_max_bytes: Option<u32>,
    #[serde(alias = "log.flush.interval.messages")]
    log_flush_interval_messages: Option<u64>,
    #[serde(alias = "log.flush.interval.ms")]
    log_flush_interval_ms: Option<i64>,
    #[serde(alias = "log.retention.check.interval.ms")]
    log_retention_check_interval_ms: Option<u64>,
    #[serde(alias = "log.deletion.max.bytes.per.sec")]
    log_deletion_max_bytes_per_sec: Option<u64>,
    #[serde(alias = "log.segment.delete.delay.ms")]
    log_segment_delete_delay_ms: Option<u64>,
    #[serde(alias = "producer.id.expiration.ms")]
    producer_id_expiration_ms: Option<i64>,
    #[serde(alias = "group.initial.rebalance.delay.ms")]
    group_initial_rebalance_delay_ms: Option<u64>,
    #[serde(alias = "group.max.size")]
    group_max_size: Option<u32>,
    #[serde(alias = "ack.journal.dir")]
    ack_journal_dir: Option<String>,
    #[serde(alias = "ack.journal.bytes")]
    ack_journal_bytes: Option<u64>,
    #[serde(alias = "offsets.compact.bytes")]
    offsets_compact_bytes: Option<u64>,
    #[serde(alias = "controller.quorum.voters")]
    controller_quorum_voters: Option<String>,
    #[serde(alias = "broker.session.timeout.ms")]
    broker_session_timeout_ms: Option<u64>,
    #[serde(alias = "broker.heartbeat.interval.ms")]
    broker_heartbeat_interval_ms: Option<u64>,
    #[serde(alias = "default.replication.factor")]
    default_replication_factor: Option<i16>,
    #[serde(alias = "min.insync.replicas")]
    min_insync_replicas: Option<usize>,
    #[serde(alias = "replica.lag.time.max.ms")]
    replica_lag_time_max_ms: Option<u64>,
}

/// Parses `--cores`: a count ("2") or a CPU list ("0,2-3").
pub fn parse_cpus(spec: &str) -> Result<Vec<usize>, String> {
    let spec = spec.trim();
    if !spec.contains([',', '-']) {
        let n: usize = spec.parse().map_err(|_| format!("--cores: not a count or CPU list: {spec}"))?;
        if n == 0 {
            return Err("--cores: must be at least 1".into());
        }
        return Ok((0..n).collect());
    }
    let mut cpus = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| format!("--cores: bad CPU {a}"))?,
                    b.trim().parse().map_err(|_| format!("--cores: bad CPU {b}"))?,
                );
                if a > b {
                    return Err(format!("--cores: empty range {part}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| format!("--cores: bad CPU {part}"))?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn addr(key: &str, v: &str) -> Result<SocketAddr, ConfigFileError> {
    v.parse().map_err(|_| ConfigFileError::Invalid(format!("{key}: not an address: {v}")))
}

impl BrokerConfig {
    /// Applies a TOML file over `self`.
    pub fn apply_file(&mut self, path: &std::path::Path) -> Result<(), ConfigFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigFileError::Read { path: path.display().to_string(), source })?;
        let f: FileConfig = toml::from_str(&text)
            .map_err(|source| ConfigFileError::Parse { path: path.display().to_string(), source })?;
        if let Some(v) = f.node_id {
            self.node_id = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = f.listen {
            self.listen = addr("listen", &v)?;
        }
        if let Some(v) = f.advertise {
            self.advertise = Some(v);
        }
        if let Some(v) = f.cores {
            self.cpus = parse_cpus(&v).map_err(ConfigFileError::Invalid)?;
        }
        if let Some(v) = f.admin_listen {
            self.admin_listen = if v.is_empty() { None } else { Some(addr("admin_listen", &v)?) };
        }
        if let Some(v) = f.auto_create_topics_enable {
            self.auto_create_topics_enable = v;
        }
        if let Some(v) = f.num_partitions {
            self.num_partitions = v;
        }
        if let Some(v) = f.socket_request_max_bytes {
            self.socket_request_max_bytes = v;
        }
        if let Some(v) = f.cache_bytes {
            self.cache_bytes = v;
        }
        if let Some(v) = f.io_memory_bytes {
            self.io_memory_bytes = v;
        }
        if let Some(v) = f.task_quota_us {
            self.task_quota_us = v;
        }
        if let Some(v) = f.acks_all_fsync {
            self.acks_all_fsync = v;
        }
        let d = &mut self.log_defaults;
        if let Some(v) = f.log_segment_bytes {
            d.segment_bytes = v;
        }
        if let Some(v) = f.log_roll_ms {
            d.segment_ms = v;
        }
        if let Some(v) = f.log_retention_ms {
            d.retention_ms = v;
        }
        if let Some(v) = f.log_retention_bytes {
            d.retention_bytes = v;
        }
        if let Some(v) = f.log_segment_recycle_enable {
            d.recycle_segments = v;
        }
        if let Some(v) = f.message_max_bytes {
            d.max_message_bytes = v;
        }
        if let Some(v) = f.log_flush_interval_messages {
            d.flush_messages = v;
        }
        if let Some(v) = f.log_flush_interval_ms {
            d.flush_ms = v;
        }
        if let Some(v) = f.log_retention_check_interval_ms {
            self.retention_check_interval_ms = v;
        }
        if let Some(v) = f.log_deletion_max_bytes_per_sec {
            self.deletion_bytes_per_sec = v;
        }
        if let Some(v) = f.log_segment_delete_delay_ms {
            self.segment_delete_delay_ms = v;
        }
        if let Some(v) = f.producer_id_expiration_ms {
            self.producer_id_expiration_ms = v;
        }
        if let Some(v) = f.group_initial_rebalance_delay_ms {
            self.group_initial_rebalance_delay_ms = v;
        }
        if let Some(v) = f.group_max_size {
            self.group_max_size = v;
        }
        if let Some(v) = f.ack_journal_dir {
            self.ack_journal_dir = parse_ack_journal_dir(&v);
        }
        if let Some(v) = f.ack_journal_bytes {
            self.ack_journal_bytes = v;
        }
        if let Some(v) = f.offsets_compact_bytes {
            self.offsets_compact_bytes = v;
        }
        if let Some(v) = f.controller_quorum_voters {
            self.controller_quorum_voters = parse_voters(&v).map_err(ConfigFileError::Invalid)?;
        }
        if let Some(v) = f.broker_session_timeout_ms {
            self.broker_session_timeout_ms = v;
        }
        if let Some(v) = f.broker_heartbeat_interval_ms {
            self.broker_heartbeat_interval_ms = v;
        }
        if let Some(v) = f.default_replication_factor {
            self.default_replication_factor = v;
        }
        if let Some(v) = f.min_insync_replicas {
            self.min_insync_replicas = v;
        }
        if let Some(v) = f.replica_lag_time_max_ms {
            self.replica_lag_time_max_ms = v;
        }
        self.validate()
    }

    pub fn validate(&self) -> Result<(), ConfigFileError> {
        if !(10..=1_000_000).contains(&self.task_quota_us) {
            return Err(ConfigFileError::Invalid("task.quota.us must be between 10 and 1000000".into()));
        }
        if self.num_partitions < 1 {
            return Err(ConfigFileError::Invalid("num.partitions must be at least 1".into()));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err(ConfigFileError::Invalid("socket.request.max.bytes must be at least 1024".into()));
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(ConfigFileError::Invalid("producer.id.expiration.ms must be at least 1".into()));
        }
        if self.offsets_compact_bytes < 4096 {
            return Err(ConfigFileError::Invalid("offsets.compact.bytes must be at least 4096".into()));
        }
        let (min, max) = (spindle_engine::journal::JOURNAL_BYTES_MIN, spindle_engine::journal::JOURNAL_BYTES_MAX);
        if !(min..=max).contains(&self.ack_journal_bytes) || !self.ack_journal_bytes.is_multiple_of(4096) {
            return Err(ConfigFileError::Invalid(format!(
                "ack.journal.bytes must be a multiple of 4096 between {min} and {max}"
            )));
        }
        if self.group_max_size == 0 || self.group_max_size > i32::MAX as u32 {
            return Err(ConfigFileError::Invalid("group.max.size must be between 1 and 2147483647".into()));
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_session_timeout_ms < 2 * self.broker_heartbeat_interval_ms
        {
            return Err(ConfigFileError::Invalid(
                "broker.session.timeout.ms must be at least twice broker.heartbeat.interval.ms (and that above 0)"
                    .into(),
            ));
        }
        if self.default_replication_factor < 1 || self.min_insync_replicas < 1 {
            return Err(ConfigFileError::Invalid(
                "default.replication.factor and min.insync.replicas must be at least 1".into(),
            ));
        }
        if self.replica_lag_time_max_ms < 2 * spindle_replication::partition_replica::ISR_CHECK_INTERVAL_MS {
            return Err(ConfigFileError::Invalid(format!(
                "replica.lag.time.max.ms must be at least {} (twice the ISR check interval)",
                2 * spindle_replication::partition_replica::ISR_CHECK_INTERVAL_MS
            )));
        }
        self.log_defaults.validate().map_err(|e| ConfigFileError::Invalid(e.to_string()))
    }

    /// Cluster mode: a metadata quorum decides placement, leaders and ISRs.
    pub fn is_cluster(&self) -> bool {
        !self.controller_quorum_voters.is_empty()
    }

    /// This node's controller listener: its address in the voter list.
    pub fn controller_listen(&self) -> Option<SocketAddr> {
        self.controller_quorum_voters.iter().find(|(id, _)| *id == self.node_id).map(|(_, a)| *a)
    }

    /// host and port clients are told to connect to.
    pub fn advertised(&self) -> (String, i32) {
        match &self.advertise {
            Some(a) => match a.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().unwrap_or(self.listen.port() as i32)),
                None => (a.clone(), self.listen.port() as i32),
            },
            None => (self.listen.ip().to_string(), self.listen.port() as i32),
        }
    }

    /// Broker-level configs as DescribeConfigs reports them.
    pub fn broker_entries(&self) -> Vec<(&'static str, String)> {
        let d = &self.log_defaults;
        vec![
            ("node.id", self.node_id.to_string()),
            ("broker.id", self.node_id.to_string()),
            ("log.dirs", self.data_dir.display().to_string()),
            ("listeners", format!("PLAINTEXT://{}", self.listen)),
            ("auto.create.topics.enable", self.auto_create_topics_enable.to_string()),
            ("num.partitions", self.num_partitions.to_string()),
            ("default.replication.factor", self.default_replication_factor.to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("replica.lag.time.max.ms", self.replica_lag_time_max_ms.to_string()),
            ("socket.request.max.bytes", self.socket_request_max_bytes.to_string()),
            ("log.segment.bytes", d.segment_bytes.to_string()),
            ("log.roll.ms", d.segment_ms.to_string()),
            ("log.retention.ms", d.retention_ms.to_string()),
            ("log.retention.bytes", d.retention_bytes.to_string()),
            ("log.segment.recycle.enable", d.recycle_segments.to_string()),
            ("message.max.bytes", d.max_message_bytes.to_string()),
            ("log.flush.interval.messages", d.flush_messages.min(i64::MAX as u64).to_string()),
            ("log.flush.interval.ms", d.flush_ms.to_string()),
            ("log.retention.check.interval.ms", self.retention_check_interval_ms.to_string()),
            ("log.deletion.max.bytes.per.sec", self.deletion_bytes_per_sec.to_string()),
            ("log.segment.delete.delay.ms", self.segment_delete_delay_ms.to_string()),
            ("producer.id.expiration.ms", self.producer_id_expiration_ms.to_string()),
            ("group.initial.rebalance.delay.ms", self.group_initial_rebalance_delay_ms.to_string()),
            ("group.max.size", self.group_max_size.to_string()),
            ("ack.journal.dir", self.ack_journal_dir.as_ref().map_or("off".to_string(), |d| d.display().to_string())),
            ("ack.journal.bytes", self.ack_journal_bytes.to_string()),
            ("offsets.compact.bytes", self.offsets_compact_bytes.to_string()),
            ("offsets.topic.num.partitions", crate::group::OFFSETS_TOPIC_PARTITIONS.to_string()),
            (
                "controller.quorum.voters",
                self.controller_quorum_voters.iter().map(|(i, a)| format!("{i}@{a}")).collect::<Vec<_>>().join(","),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_in_kafkas_form() {
        let v = parse_voters("0@127.0.0.1:9093, 1@127.0.0.2:9093").unwrap();
        assert_eq!(v, vec![(0, "127.0.0.1:9093".parse().unwrap()), (1, "127.0.0.2:9093".parse().unwrap())]);
        assert!(parse_voters("0@127.0.0.1:9093,0@127.0.0.2:9093").unwrap_err().contains("twice"));
        assert!(parse_voters("x@127.0.0.1:9093").unwrap_err().contains("bad node id"));
        assert!(parse_voters("0127.0.0.1:9093").unwrap_err().contains("id@host:port"));
        assert!(parse_voters("0@nowhere").unwrap_err().contains("not an address"));
        // A node missing from the list observes the quorum: no controller listener.
        let c = BrokerConfig { node_id: 2, controller_quorum_voters: v, ..BrokerConfig::default() };
        assert!(c.validate().is_ok() && c.is_cluster() && c.controller_listen().is_none());
    }

    #[test]
    fn cpu_specs_parse_as_count_or_list() {
        assert_eq!(parse_cpus("2").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpus("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("3-1").is_err());
    }

    #[test]
    fn toml_file_overrides_defaults_with_kafka_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spindle.toml");
        std::fs::write(&p, "\"num.partitions\" = 3\nlisten = \"127.0.0.1:19092\"\nlog_retention_ms = 1000\n").unwrap();
        let mut c = BrokerConfig::default();
        c.apply_file(&p).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.log_defaults.retention_ms, 1000);
        std::fs::write(&p, "no_such_key = 1\n").unwrap();
        assert!(BrokerConfig::default().apply_file(&p).is_err());
        std::fs::write(&p, "\"producer.id.expiration.ms\" = 60000\n").unwrap();
        let mut c = BrokerConfig::default();
        assert_eq!(c.producer_id_expiration_ms, 86_400_000, "Kafka's default");
        c.apply_file(&p).unwrap();
        assert_eq!(c.producer_id_expiration_ms, 60_000);
        assert!(c.broker_entries().iter().any(|(k, v)| *k == "producer.id.expiration.ms" && v == "60000"));
        std::fs::write(&p, "\"producer.id.expiration.ms\" = 0\n").unwrap();
        assert!(BrokerConfig::default().apply_file(&p).is_err());
        std::fs::write(&p, "\"group.max.size\" = 5\n").unwrap();
        let mut c = BrokerConfig::default();
        assert_eq!(c.group_max_size, 2_147_483_647, "Kafka's default");
        c.apply_file(&p).unwrap();
        assert_eq!(c.group_max_size, 5);
        assert!(c.broker_entries().iter().any(|(k, v)| *k == "group.max.size" && v == "5"));
        std::fs::write(&p, "\"group.max.size\" = 0\n").unwrap();
        assert!(BrokerConfig::default().apply_file(&p).is_err());
        let c = BrokerConfig::default();
        assert_eq!(c.ack_journal_dir.as_deref(), Some(std::path::Path::new("/dev/shm")));
        assert_eq!(c.ack_journal_bytes, 16 << 20);
        std::fs::write(&p, "\"ack.journal.dir\" = \"off\"\n\"ack.journal.bytes\" = 4194304\n").unwrap();
        let mut c = BrokerConfig::default();
        c.apply_file(&p).unwrap();
        assert_eq!((c.ack_journal_dir.clone(), c.ack_journal_bytes), (None, 4 << 20));
        assert!(c.broker_entries().iter().any(|(k, v)| *k == "ack.journal.dir" && v == "off"));
        std::fs::write(&p, "\"ack.journal.dir\" = \"/run/spindle\"\n").unwrap();
        let mut c = BrokerConfig::default();
        c.apply_file(&p).unwrap();
        assert_eq!(c.ack_journal_dir.as_deref(), Some(std::path::Path::new("/run/spindle")));
        for bad in ["4096", "5000000", "4294967296"] {
            std::fs::write(&p, format!("\"ack.journal.bytes\" = {bad}\n")).unwrap();
            assert!(BrokerConfig::default().apply_file(&p).is_err(), "{bad}");
        }
    }

    #[test]
    fn advertised_defaults_to_listen() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.advertised(), ("127.0.0.1".to_string(), 9092));
        c.advertise = Some("broker1:19092".into());
        assert_eq!(c.advertised(), ("broker1".to_string(), 19092));
    }
}
