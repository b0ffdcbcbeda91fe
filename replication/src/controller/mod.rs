//! The active controller's decisions, as pure functions of the metadata image: who leads a
//! partition after a broker leaves or returns (`election`), and whether a leader's ISR change is
//! accepted (`alter_partition`). Each returns the records to propose; applying them is the image's
//! job, on every broker alike. Replica placement for new topics is in [`crate::metadata::placement`].

pub mod alter_partition;
pub mod election;

pub use alter_partition::{
    alter_partition, check_sender, AlterPartitionAccepted, AlterPartitionData, AlterPartitionError, IneligibleReason,
    IneligibleReplica, InvalidAlterPartition, IsrMember,
};
pub use election::{changes_adding_broker, changes_removing_broker, Election, PartitionChangeBuilder};
