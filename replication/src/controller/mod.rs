//! The active controller: requests and the clock in, metadata records to propose and replies out,
//! against the metadata image. No I/O and no Raft: the driver (`net/src/cluster/`) or the simulator
//! proposes the records, applies what commits and reports back.
//!
//! Where to look:
//! - [`core`]: [`ControllerCore`], the state machine a driver talks to: one entry per operation,
//!   validation against the committed image plus its own pending proposals, replies released when
//!   what they depend on has committed.
//! - [`liveness`]: registration, heartbeats, fencing, controlled shutdown, session expiry.
//! - [`topics`]: CreateTopics, DeleteTopics, CreatePartitions, topic configs, `__consumer_offsets`.
//! - [`election`]: who leads a partition after a broker leaves or returns, preferred leaders, and
//!   ElectLeaders.
//! - [`alter_partition`](mod@alter_partition): whether a leader's ISR change is accepted.
//! - [`errors`]: the Kafka error codes; each operation's error enum maps to one.
//! - [`config`]: the configuration keys the controller reads and its named limits.
//!
//! Each decision returns the records to propose; applying them is the image's job, on every broker
//! alike. Replica placement for new partitions is in [`crate::metadata::placement`].

pub mod alter_partition;
pub mod config;
pub mod core;
pub mod election;
pub mod errors;
pub mod liveness;
pub mod topics;

#[cfg(test)]
mod tests;

pub use self::core::{
    AlterPartitionRequest, AlterPartitionResult, ControllerCore, ControllerOutput, ControllerReply, ControllerRequest,
    ElectLeaderError, ElectLeadersRequest, ElectLeadersTopic, ElectLeadersTopicResult, ElectionType, Proposal,
    ProposalId, RequestToken,
};
pub use alter_partition::{
    alter_partition, check_sender, AlterPartitionAccepted, AlterPartitionData, AlterPartitionError, IneligibleReason,
    IneligibleReplica, InvalidAlterPartition, IsrMember,
};
pub use config::{
    ControllerConfig, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS,
    DEFAULT_OFFSETS_TOPIC_PARTITIONS, DEFAULT_SESSION_TIMEOUT_MS, MAX_ELECTIONS_PER_REQUEST,
    MAX_NEW_PARTITIONS_PER_REQUEST, OFFSETS_TOPIC, PREFERRED_ELECTIONS_PER_TICK, WAITING_REPLIES_MAX,
};
pub use election::{
    changes_adding_broker, changes_electing_preferred_leaders, changes_removing_broker, Election,
    PartitionChangeBuilder,
};
pub use errors::ErrorCode;
pub use liveness::{
    BrokerHeartbeatRequest, BrokerRegistrationReply, BrokerRegistrationRequest, BrokerSession, HeartbeatError,
    HeartbeatReply, RegistrationError,
};
pub use topics::{
    validate_topic_config, validate_topic_name, AlterConfigsError, AlterConfigsResult, AlterTopicConfigs, ConfigError,
    ConfigOp, CreatableTopic, CreatePartitionsError, CreatePartitionsRequest, CreatePartitionsResult,
    CreatePartitionsTopic, CreateTopicError, CreateTopicResult, CreateTopicsRequest, CreatedTopic, DeleteTopicError,
    DeleteTopicResult, DeleteTopicsRequest, IncrementalAlterConfigsRequest, ReplicaAssignment, TopicNameError,
    TopicRef, MAX_TOPIC_NAME_LENGTH,
};
