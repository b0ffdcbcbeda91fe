//! Identifiers shared by every part of the cluster's rules.

use serde::{Deserialize, Serialize};

/// A broker's `node.id` (`--node-id`).
pub type BrokerId = i32;

/// Kafka's leader epoch: bumped by every leader change of a partition.
pub type LeaderEpoch = i32;

/// Kafka's partition epoch: bumped by every change of a partition's
/// registration (leader, ISR or replicas). AlterPartition requests carry
/// it so a stale ISR change is refused.
pub type PartitionEpoch = i32;

/// An offset in a partition's log.
pub type Offset = i64;

/// A topic's id (Kafka's topic UUID, as sent in Metadata v10+ and Fetch v13+).
pub type TopicId = uuid::Uuid;

/// A partition named by topic id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicIdPartition {
    pub topic_id: TopicId,
    pub partition: i32,
}

/// "No leader", Kafka's -1 in Metadata and PartitionRecord.
pub const NO_LEADER: BrokerId = -1;

/// "Unknown", Kafka's -1 for offsets and epochs on the wire.
pub const UNDEFINED_OFFSET: Offset = -1;
pub const UNDEFINED_EPOCH: LeaderEpoch = -1;

/// A broker's registration epoch: the metadata log index of its
/// registration (KRaft uses the record offset the same way). Kafka's int64.
pub type BrokerEpoch = i64;
