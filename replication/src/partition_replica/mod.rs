//! A partition replica's rules as leader and as follower, without I/O
//! (design section 7). Kafka's `Partition.scala`, `Replica.scala` and
//! `AbstractFetcherThread.scala` are the reference; where we differ, the item
//! says why.
//!
//! How to use it (the driver is `net/src/cluster/`):
//! - The applier calls [`role_change`] for every partition whose registration
//!   changed and creates a [`LeaderState`] or a [`FollowerState`], feeds
//!   [`LeaderState::on_partition_change`], or stops the replica.
//! - A leader's driver feeds follower fetches ([`LeaderState::on_follower_fetch`],
//!   after [`check_fetch_position`]), its own written end
//!   ([`LeaderState::on_local_end`]) and a periodic [`LeaderState::maybe_shrink`];
//!   it sends the returned [`IsrChange`]s as AlterPartition and reports
//!   failures back. Produce with acks=all asks [`LeaderState::check_acks_all_append`]
//!   before appending and [`LeaderState::ack_status`] while it waits.
//! - A follower's driver asks for the next request (`epoch_query`,
//!   `fetch_query`, `leader_offsets_query`), sends it, hands the response back
//!   and executes the returned [`FollowerAction`] (truncate, append, back off),
//!   reporting completion (`on_truncated`, `on_appended`).
//!
//! Why sans-IO: the same code runs under glommio and under the seeded
//! simulator; time enters as `now_ms`, the local log is a [`LogView`], the
//! cluster's broker registrations a [`BrokerLiveness`].
//!
//! Kafka error codes enter and leave as plain `i16` ([`error_code`]): this
//! crate must not depend on `kafka-protocol`, and the few codes the rules
//! branch on are listed there.

use std::collections::BTreeMap;

use crate::types::{BrokerId, LeaderEpoch, Offset, PartitionEpoch, NO_LEADER};

pub mod follower;
pub mod leader;
pub mod truncation;

#[cfg(test)]
mod model;

/// [`LogView::end_offset_for_epoch`] over an epoch history kept as
/// `(epoch, start offset)` pairs, ascending: what the test models (and the
/// simulator's disks) answer, with the engine's semantics.
#[cfg(test)]
pub(crate) fn end_offset_for(
    epochs: &[(LeaderEpoch, Offset)],
    epoch: LeaderEpoch,
    log_end: Offset,
) -> Option<(LeaderEpoch, Offset)> {
    let i = epochs.partition_point(|&(e, _)| e <= epoch);
    if i == 0 {
        return None;
    }
    let end = epochs.get(i).map_or(log_end, |&(_, s)| s);
    Some((epochs[i - 1].0, end))
}
#[cfg(test)]
mod tests;

pub use follower::{
    AppendRejection, EpochQuery, FetchPhase, FetchQuery, FetchResponse, FollowerAction, FollowerRequest, FollowerState,
    InFlight, LeaderOffsets, LeaderOffsetsQuery, TruncatingStep,
};
pub use leader::{
    AckStatus, AlterFailed, AlterIsr, AppendRefused, FetchOutcome, FollowerFetch, FollowerFetchError, IsrChange,
    IsrMember, LeaderConfig, LeaderStart, LeaderState, Progress,
};
pub use truncation::{answer_epoch_query, check_fetch_position, epoch_end_offset, truncation_offset};
pub use truncation::{EpochEndOffset, FetchPosition, Truncation};

/// Kafka's broker epoch: the metadata offset of a broker's registration,
/// bumped by every restart. Fetch v15+ carries it (`ReplicaState.ReplicaEpoch`);
/// -1 means "not sent".
pub use crate::types::BrokerEpoch;

/// How long a follower waits before retrying a partition after a retriable
/// error (UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, a failed connection).
/// Kafka's `replica.fetch.backoff.ms` default: long enough that a leader whose
/// metadata is behind catches up, short next to the 30 s lag budget.
pub const REPLICA_FETCH_BACKOFF_MS: u64 = 1000;

/// How long a leader waits before resending an AlterPartition that failed with
/// an unexpected (retriable) error. Short: a pending ISR change blocks every
/// other ISR change of the partition until it resolves.
pub const ALTER_ISR_RETRY_MS: u64 = 500;

/// How often the driver calls [`LeaderState::maybe_shrink`]. Kafka checks every
/// `replica.lag.time.max.ms / 2`; checking more often changes nothing in the
/// rule and removes a stuck follower sooner (at most lag + 1 s).
pub const ISR_CHECK_INTERVAL_MS: u64 = 1000;

/// Kafka's `replica.lag.time.max.ms` default: how long an ISR member may go
/// without catching up to the leader's end before it is removed.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: u64 = 30_000;

/// Kafka's `min.insync.replicas` default.
pub const DEFAULT_MIN_INSYNC_REPLICAS: usize = 1;

// The shrink check must run at least twice per lag period, or a stuck follower
// holds the HW back for up to 2x the configured lag. Configured values are
// checked the same way by `BrokerConfig::validate`.
const _: () = assert!(ISR_CHECK_INTERVAL_MS * 2 <= DEFAULT_REPLICA_LAG_TIME_MAX_MS);

/// The Kafka error codes these rules read or produce.
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const NEW_LEADER_ELECTED: i16 = 108;
}

/// The local log as the replication rules see it. The engine's `Log`
/// implements it in the driver; tests use an in-memory model.
pub trait LogView {
    /// First offset still held.
    fn log_start(&self) -> Offset;
    /// The end the rules may count on. On a leader: its written end, what
    /// followers can read (design 7.2). On a follower: the end it has
    /// acknowledged (written, or durable with `acks.all.fsync`); the driver
    /// only asks between appends, when that is the log's next offset.
    fn log_end(&self) -> Offset;
    /// The latest epoch of the leader-epoch history, `None` if it is empty.
    fn latest_epoch(&self) -> Option<LeaderEpoch>;
    /// The engine's `Log::end_offset_for_epoch`: the largest epoch not above
    /// `epoch` and where it ended (the next epoch's start, or the log end for
    /// the latest). `None` if every known epoch is above `epoch`.
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)>;
    /// The first entry of the epoch history: (epoch, start offset). Needed for
    /// Kafka's answer to an epoch below every known one (see
    /// [`truncation::epoch_end_offset`]).
    fn first_epoch(&self) -> Option<(LeaderEpoch, Offset)>;
}

/// A broker's registration as the metadata image has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerStatus {
    pub epoch: BrokerEpoch,
    pub fenced: bool,
    pub shutting_down: bool,
}

/// The metadata image's view of brokers, read on every ISR decision (Kafka's
/// `KRaftMetadataCache` reads in `Partition.isReplicaIsrEligible`).
pub trait BrokerLiveness {
    /// `None` if the broker is not registered.
    fn broker_status(&self, broker: BrokerId) -> Option<BrokerStatus>;
}

impl BrokerLiveness for BTreeMap<BrokerId, BrokerStatus> {
    fn broker_status(&self, broker: BrokerId) -> Option<BrokerStatus> {
        self.get(&broker).copied()
    }
}

/// The part of a partition's registration that decides the local role.
/// Built by the applier from the metadata image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// [`NO_LEADER`] when the partition has none.
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

/// What the local broker must do after a registration change (design 7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleChange {
    /// New leader epoch with the local broker as leader: create a
    /// [`LeaderState`] (after `assign_epoch`), fail nothing.
    BecomeLeader,
    /// New leader epoch (or newly assigned replica) led by another broker, or
    /// by none (`leader: None`, fetcher parked): fail acks=all waiters with
    /// NOT_LEADER_OR_FOLLOWER and create a [`FollowerState`] in `Truncating`.
    BecomeFollower {
        leader: Option<BrokerId>,
    },
    /// Same leader epoch, newer partition epoch, local broker leads:
    /// [`LeaderState::on_partition_change`].
    IsrChanged,
    /// The local broker is no longer a replica, or the topic is gone: stop,
    /// close, rename-delete.
    Stop,
    NoChange,
}

/// Decides the local role from the previous and the new registration of a
/// partition (`None`: the partition does not exist in that image). A pure
/// function of the two images, so every core and the simulator agree.
///
/// Why "new leader epoch" and not "new leader" decides: a leader epoch bump
/// with the same leader (re-election) still requires followers to truncate
/// against the new epoch and the leader to start a new epoch in its log,
/// exactly as Kafka's `makeLeader`/`makeFollower` do on `isNewLeaderEpoch`.
pub fn role_change(
    local: BrokerId,
    old: Option<&PartitionAssignment>,
    new: Option<&PartitionAssignment>,
) -> RoleChange {
    let was_replica = old.is_some_and(|o| o.replicas.contains(&local));
    let Some(new) = new.filter(|n| n.replicas.contains(&local)) else {
        return if was_replica { RoleChange::Stop } else { RoleChange::NoChange };
    };
    let become_new_role = || {
        if new.leader == local {
            RoleChange::BecomeLeader
        } else if new.leader == NO_LEADER {
            RoleChange::BecomeFollower { leader: None }
        } else {
            RoleChange::BecomeFollower { leader: Some(new.leader) }
        }
    };
    let Some(old) = old.filter(|_| was_replica) else {
        return become_new_role();
    };
    // The image is applied in metadata order by our own applier: epochs going
    // backwards is our bug, not the world's.
    assert!(
        new.leader_epoch >= old.leader_epoch,
        "leader epoch went back from {} to {}",
        old.leader_epoch,
        new.leader_epoch
    );
    assert!(
        new.partition_epoch >= old.partition_epoch,
        "partition epoch went back from {} to {}",
        old.partition_epoch,
        new.partition_epoch
    );
    if new.leader_epoch > old.leader_epoch {
        return become_new_role();
    }
    assert_eq!(new.leader, old.leader, "leader changed without a leader epoch bump (epoch {})", new.leader_epoch);
    if new.partition_epoch > old.partition_epoch && new.leader == local {
        RoleChange::IsrChanged
    } else {
        RoleChange::NoChange
    }
}
