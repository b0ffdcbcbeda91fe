//! The controller's configuration keys (Kafka's names and defaults) and its named limits.

use std::collections::BTreeMap;

/// `broker.session.timeout.ms`, Kafka's default: a broker silent this long is fenced.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 9_000;

/// `broker.heartbeat.interval.ms`, Kafka's default. Brokers use it; the controller only needs it
/// for the relation below.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 2_000;

// A session must survive one lost heartbeat and a late one: Kafka's defaults keep 4.5 intervals.
const _: () = assert!(DEFAULT_SESSION_TIMEOUT_MS > 2 * DEFAULT_HEARTBEAT_INTERVAL_MS);

/// `leader.imbalance.check.interval.seconds` (300), in ms.
pub const DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS: u64 = 300_000;

/// `offsets.topic.num.partitions`, Kafka's default (and net's `OFFSETS_TOPIC_PARTITIONS`).
pub const DEFAULT_OFFSETS_TOPIC_PARTITIONS: i32 = 50;

/// The group coordinators' topic, created by the controller (design 5.5).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Preferred-leader elections proposed per round (design 5.6): a returning broker takes its
/// leaderships back over several small entries instead of flipping every leader, and every
/// client's metadata, in one.
pub const PREFERRED_ELECTIONS_PER_TICK: usize = 100;

/// Partitions one CreateTopics or CreatePartitions request may create. Kafka bounds a user
/// operation to 10000 records (`MAX_RECORDS_PER_USER_OP`); one entry of that many partition records
/// is a ~1.5 MB JSON batch, the order of a Raft message (`quorum::MAX_SIZE_PER_MSG`).
pub const MAX_NEW_PARTITIONS_PER_REQUEST: usize = 10_000;

/// Leader elections one ElectLeaders request may make, bounded as new partitions are above.
pub const MAX_ELECTIONS_PER_REQUEST: usize = 10_000;

/// Replies the core holds until the entries they depend on commit. The driver stops handing
/// operations over at this bound ([`super::ControllerCore::accepts_operations`]) and lets its own
/// bounded queue (`CONTROLLER_OP_QUEUE_MAX`, design 13) push back: a quorum that does not commit
/// (no majority) must not grow memory. An isolated leader steps down within an election timeout
/// (`check_quorum`), which fails every waiting reply with NOT_CONTROLLER.
pub const WAITING_REPLIES_MAX: usize = 4_096;

/// What the active controller needs to know of the broker configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `default.replication.factor` (Kafka: 1): CreateTopics with replication factor -1.
    pub default_replication_factor: i16,
    /// `num.partitions` (Kafka: 1): CreateTopics with -1 partitions.
    pub default_num_partitions: i32,
    /// `auto.leader.rebalance.enable` (Kafka: true).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// `offsets.topic.replication.factor`: `__consumer_offsets` is created once this many brokers
    /// are unfenced. Kafka's default is 3; here `min(3, voters)` ([`ControllerConfig::new`]), so a
    /// single node creates it at once.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// Topic configs `__consumer_offsets` is created with (net's retention and segment settings).
    pub offsets_topic_configs: BTreeMap<String, String>,
}

impl ControllerConfig {
    /// Kafka's defaults, with `offsets.topic.replication.factor = min(3, voter_count)`.
    pub fn new(voter_count: usize) -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            default_replication_factor: 1,
            default_num_partitions: 1,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS,
            offsets_topic_replication_factor: voter_count.clamp(1, 3) as i16,
            offsets_topic_num_partitions: DEFAULT_OFFSETS_TOPIC_PARTITIONS,
            offsets_topic_configs: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_replication_factor_defaults_to_min_of_three_and_voters() {
        assert_eq!(ControllerConfig::new(1).offsets_topic_replication_factor, 1);
        assert_eq!(ControllerConfig::new(2).offsets_topic_replication_factor, 2);
        assert_eq!(ControllerConfig::new(3).offsets_topic_replication_factor, 3);
        assert_eq!(ControllerConfig::new(5).offsets_topic_replication_factor, 3);
        assert_eq!(ControllerConfig::new(0).offsets_topic_replication_factor, 1);
    }
}
