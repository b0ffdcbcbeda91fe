//! A partition leader's view of its followers (design 7.1, 7.2): when a
//! follower is caught up, when it joins or leaves the ISR, where the high
//! watermark is, and whether an acks=all produce is done.
//!
//! One `LeaderState` lives for one leader epoch: a new epoch (even with the
//! same leader) builds a new one, so "HW only grows" is simply "HW only grows
//! in this value". Kafka keeps a re-elected leader's follower state
//! (`resetReplicaState(isNewLeader = false)`); we reset it, which only makes
//! the HW wait for every ISR member's first fetch in the new epoch.
//!
//! The decisions, and what they protect:
//! - **Maximal ISR** (KIP-497): the committed ISR plus a pending addition; a
//!   pending removal still counts. The HW and acks=all are computed over it,
//!   so an ISR change the controller may or may not have applied yet can only
//!   make them stricter.
//! - **HW frozen under min ISR** (Kafka 3.9): if the committed ISR is smaller
//!   than the effective `min.insync.replicas`, the HW does not move at all,
//!   even for acks=1 data. Otherwise it is the smallest end among the leader,
//!   the maximal ISR and every follower that is caught up and ISR-eligible
//!   (so a follower about to join is not outrun forever).
//! - **Caught up** (Replica.scala): a follower was caught up at the time of a
//!   fetch whose offset reached the leader's end at that fetch, or at the time
//!   of its previous fetch if this fetch reached the end the leader had then.
//!   The second half is what lets a follower stay in the ISR under a steady
//!   stream of small produces, where it never quite reaches the moving end.
//! - **Joining** needs the follower's end at or past the HW and past the
//!   start of this leader epoch: otherwise a new ISR member could be elected
//!   without data the previous leader committed between its HW and its end.
//! - **One ISR change in flight**: nothing else is proposed until the pending
//!   change is resolved by metadata or by a definite refusal.

use std::collections::BTreeMap;

use super::{error_code, BrokerEpoch, BrokerLiveness, PartitionAssignment, ALTER_ISR_RETRY_MS};
use super::{DEFAULT_MIN_INSYNC_REPLICAS, DEFAULT_REPLICA_LAG_TIME_MAX_MS};
use crate::types::{BrokerId, LeaderEpoch, Offset, PartitionEpoch};

/// The two topic/broker settings the leader's rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `min.insync.replicas`, at least 1 (checked by config validation).
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            min_insync_replicas: DEFAULT_MIN_INSYNC_REPLICAS,
            replica_lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
        }
    }
}

/// The local facts at the moment of becoming leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderStart {
    pub log_start: Offset,
    /// The written end, which is also where this leader epoch starts.
    pub local_end: Offset,
    /// The HW this replica had as a follower (its log start if it has none).
    pub follower_hw: Offset,
    /// The local broker's registration epoch, sent in AlterPartition.
    pub local_broker_epoch: BrokerEpoch,
    pub now_ms: u64,
}

/// The last fetch the leader saw from a follower: when, and the leader's end
/// at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastFetch {
    pub at_ms: u64,
    pub leader_end: Offset,
}

/// What the leader knows about one follower (Kafka's `ReplicaState`). `None`
/// fields are unknown: nothing heard in this leader epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The follower's acknowledged end: the offset of its latest fetch.
    pub log_end: Option<Offset>,
    pub log_start: Option<Offset>,
    /// The broker epoch its fetches carried (-1: not sent).
    pub broker_epoch: Option<BrokerEpoch>,
    pub last_fetch: Option<LastFetch>,
    /// The latest time it was caught up (module doc); `None`: never.
    pub last_caught_up_ms: Option<u64>,
}

impl Progress {
    /// Kafka's `ReplicaState.isCaughtUp`.
    pub fn is_caught_up(&self, leader_end: Offset, now_ms: u64, lag_max_ms: u64) -> bool {
        self.log_end == Some(leader_end)
            || self.last_caught_up_ms.is_some_and(|t| now_ms.saturating_sub(t) <= lag_max_ms)
    }
}

/// A follower's fetch as the leader's fetch handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: BrokerId,
    pub fetch_offset: Offset,
    pub log_start: Offset,
    /// `ReplicaState.ReplicaEpoch` (-1 if not sent).
    pub broker_epoch: BrokerEpoch,
    /// The leader's written end when the fetch arrived, before any read or
    /// long poll: appends after the arrival must not keep the follower out.
    pub leader_end: Offset,
    pub now_ms: u64,
}

/// A fetch the leader refuses to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FollowerFetchError {
    /// Kafka answers UNKNOWN_LEADER_EPOCH: the follower may know a newer
    /// assignment than we do, and retries.
    #[error("broker {0} is not a replica of this partition")]
    UnknownReplica(BrokerId),
    /// NOT_LEADER_OR_FOLLOWER: a fetch from an earlier incarnation of the
    /// broker (`Replica.updateFetchStateOrThrow`).
    #[error("broker {broker} fetched with broker epoch {fetched}, registered with {registered}")]
    StaleBrokerEpoch { broker: BrokerId, fetched: BrokerEpoch, registered: BrokerEpoch },
    /// NOT_LEADER_OR_FOLLOWER: this state has resigned.
    #[error("not the leader any more")]
    NotLeader,
}

/// An ISR member as AlterPartition v3 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsrMember {
    pub broker: BrokerId,
    /// The epoch of the broker's fetches (-1 if unknown), so the controller
    /// refuses a member that restarted since.
    pub broker_epoch: BrokerEpoch,
}

/// The AlterPartition proposal for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterIsr {
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the proposal is based on: the controller refuses it
    /// (INVALID_UPDATE_VERSION) if the registration moved meanwhile.
    pub partition_epoch: PartitionEpoch,
    pub new_isr: Vec<IsrMember>,
}

/// An ISR change the leader proposes; it is pending until metadata shows the
/// new registration or the controller refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsrChange {
    Expand { added: BrokerId, request: AlterIsr },
    Shrink { removed: Vec<BrokerId>, request: AlterIsr },
}

impl IsrChange {
    pub fn request(&self) -> &AlterIsr {
        match self {
            IsrChange::Expand { request, .. } | IsrChange::Shrink { request, .. } => request,
        }
    }
}

/// What a recorded follower fetch changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// Send it as AlterPartition.
    pub isr_change: Option<IsrChange>,
    /// Wake acks=all waiters and consumers' long polls.
    pub hw_advanced: bool,
}

/// What to do after an AlterPartition failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterFailed {
    /// The failure is for a change that is no longer pending.
    Ignored,
    /// The controller definitely did not apply it (OPERATION_NOT_ATTEMPTED,
    /// INELIGIBLE_REPLICA): it is dropped; a later fetch or check may propose
    /// again.
    Dropped { hw_advanced: bool },
    /// The outcome is unknown or our metadata is behind: the change stays
    /// pending (and in the maximal ISR) until the next registration arrives.
    AwaitMetadata,
    /// Unexpected error: resend [`LeaderState::pending`] at `at_ms`.
    RetryAt { at_ms: u64 },
}

/// Where an acks=all produce stands (design 7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    Pending,
    Done,
    /// The HW passed the records but the maximal ISR is below min ISR:
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    DoneUnderMinIsr,
    /// NOT_LEADER_OR_FOLLOWER.
    NotLeader,
}

/// Why an acks=all produce is refused before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefused {
    #[error("not the leader")]
    NotLeader,
    #[error("ISR has {isr} members, min.insync.replicas is effectively {min_isr}")]
    NotEnoughReplicas { isr: usize, min_isr: usize },
}

#[derive(Clone, Debug)]
pub struct LeaderState {
    local: BrokerId,
    local_broker_epoch: BrokerEpoch,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    epoch_start_offset: Offset,
    replicas: Vec<BrokerId>,
    committed_isr: Vec<BrokerId>,
    pending: Option<IsrChange>,
    followers: BTreeMap<BrokerId, Progress>,
    hw: Offset,
    local_end: Offset,
    config: LeaderConfig,
    resigned: bool,
}

impl LeaderState {
    /// Kafka's `makeLeader` for a new leader epoch: followers start unknown,
    /// ISR members counted as caught up now (so none is dropped before it had
    /// a chance to fetch), the HW starts at `max(follower HW, log start)` and
    /// moves at once if the ISR is only the leader.
    pub fn new(
        local: BrokerId,
        assignment: &PartitionAssignment,
        config: LeaderConfig,
        start: LeaderStart,
        brokers: &impl BrokerLiveness,
    ) -> LeaderState {
        assert_eq!(assignment.leader, local, "LeaderState for a partition led by {}", assignment.leader);
        assert!(assignment.replicas.contains(&local), "leader {local} not in replicas {:?}", assignment.replicas);
        assert!(assignment.isr.contains(&local), "leader {local} not in ISR {:?}", assignment.isr);
        assert!(config.min_insync_replicas >= 1, "min.insync.replicas must be validated before");
        assert!(start.log_start <= start.local_end, "log start {} past end {}", start.log_start, start.local_end);
        let followers = assignment
            .replicas
            .iter()
            .filter(|&&id| id != local)
            .map(|&id| {
                let in_isr = assignment.isr.contains(&id);
                (id, Progress { last_caught_up_ms: in_isr.then_some(start.now_ms), ..Progress::default() })
            })
            .collect();
        let mut state = LeaderState {
            local,
            local_broker_epoch: start.local_broker_epoch,
            leader_epoch: assignment.leader_epoch,
            partition_epoch: assignment.partition_epoch,
            epoch_start_offset: start.local_end,
            replicas: assignment.replicas.clone(),
            committed_isr: assignment.isr.clone(),
            pending: None,
            followers,
            hw: start.follower_hw.max(start.log_start).min(start.local_end),
            local_end: start.local_end,
            config,
            resigned: false,
        };
        state.maybe_advance_hw(start.now_ms, brokers);
        state
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// Where this leader epoch starts: ListOffsets "latest" answers
    /// OFFSET_NOT_AVAILABLE while the HW is below it (KIP-207).
    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    pub fn hw(&self) -> Offset {
        self.hw
    }

    pub fn local_end(&self) -> Offset {
        self.local_end
    }

    pub fn replicas(&self) -> &[BrokerId] {
        &self.replicas
    }

    pub fn committed_isr(&self) -> &[BrokerId] {
        &self.committed_isr
    }

    pub fn pending(&self) -> Option<&IsrChange> {
        self.pending.as_ref()
    }

    pub fn follower(&self, id: BrokerId) -> Option<&Progress> {
        self.followers.get(&id)
    }

    pub fn is_resigned(&self) -> bool {
        self.resigned
    }

    /// Committed ISR plus a pending addition (a pending removal still counts).
    pub fn maximal_isr(&self) -> Vec<BrokerId> {
        let mut isr = self.committed_isr.clone();
        if let Some(IsrChange::Expand { added, .. }) = &self.pending {
            isr.push(*added);
        }
        isr
    }

    fn in_maximal_isr(&self, id: BrokerId) -> bool {
        self.committed_isr.contains(&id)
            || matches!(&self.pending, Some(IsrChange::Expand { added, .. }) if *added == id)
    }

    /// `min(min.insync.replicas, replication factor)`: a topic configured
    /// with a min ISR above its replica count still accepts writes.
    pub fn effective_min_isr(&self) -> usize {
        self.config.min_insync_replicas.min(self.replicas.len())
    }

    /// The committed ISR is below the effective min ISR: the HW is frozen and
    /// acks=all produces are refused.
    pub fn is_under_min_isr(&self) -> bool {
        self.committed_isr.len() < self.effective_min_isr()
    }

    /// Kafka's `isReplicaIsrEligible` (KRaft): registered, unfenced, not in
    /// controlled shutdown, and its fetches carry its current broker epoch
    /// (or none, -1).
    fn is_isr_eligible(&self, id: BrokerId, brokers: &impl BrokerLiveness) -> bool {
        let Some(status) = brokers.broker_status(id) else { return false };
        let Some(fetched) = self.followers.get(&id).and_then(|p| p.broker_epoch) else { return false };
        !status.fenced && !status.shutting_down && (fetched == -1 || fetched == status.epoch)
    }

    /// Records a follower's fetch (Kafka's `updateFollowerFetchState`): its
    /// progress and caught-up time, then a possible ISR expansion, then the HW.
    /// The driver calls it after [`super::check_fetch_position`] said `Read`.
    pub fn on_follower_fetch(
        &mut self,
        fetch: FollowerFetch,
        brokers: &impl BrokerLiveness,
    ) -> Result<FetchOutcome, FollowerFetchError> {
        if self.resigned {
            return Err(FollowerFetchError::NotLeader);
        }
        let Some(progress) = self.followers.get_mut(&fetch.replica) else {
            return Err(FollowerFetchError::UnknownReplica(fetch.replica));
        };
        if fetch.broker_epoch != -1 {
            if let Some(status) = brokers.broker_status(fetch.replica).filter(|s| !s.fenced) {
                if status.epoch > fetch.broker_epoch {
                    return Err(FollowerFetchError::StaleBrokerEpoch {
                        broker: fetch.replica,
                        fetched: fetch.broker_epoch,
                        registered: status.epoch,
                    });
                }
            }
        }
        // The fetch handler answered OFFSET_OUT_OF_RANGE for anything past the
        // end; reaching here with such an offset is a driver bug.
        assert!(
            fetch.fetch_offset <= fetch.leader_end,
            "follower {} fetch offset {} past leader end {}",
            fetch.replica,
            fetch.fetch_offset,
            fetch.leader_end
        );
        let previous_end = progress.log_end;
        let caught_up_at = if fetch.fetch_offset >= fetch.leader_end {
            Some(fetch.now_ms)
        } else {
            progress.last_fetch.filter(|last| fetch.fetch_offset >= last.leader_end).map(|last| last.at_ms)
        };
        progress.last_caught_up_ms = progress.last_caught_up_ms.max(caught_up_at);
        progress.log_end = Some(fetch.fetch_offset);
        progress.log_start = Some(fetch.log_start);
        progress.broker_epoch = Some(fetch.broker_epoch);
        let leader_end = progress.last_fetch.map_or(fetch.leader_end, |last| last.leader_end.max(fetch.leader_end));
        progress.last_fetch = Some(LastFetch { at_ms: fetch.now_ms, leader_end });

        let isr_change = self.maybe_expand(fetch.replica, fetch.fetch_offset, brokers);
        let hw_advanced = previous_end != Some(fetch.fetch_offset) && self.maybe_advance_hw(fetch.now_ms, brokers);
        Ok(FetchOutcome { isr_change, hw_advanced })
    }

    fn maybe_expand(&mut self, id: BrokerId, end: Offset, brokers: &impl BrokerLiveness) -> Option<IsrChange> {
        let joins = self.pending.is_none()
            && !self.committed_isr.contains(&id)
            && self.is_isr_eligible(id, brokers)
            && end >= self.hw
            && end >= self.epoch_start_offset;
        if !joins {
            return None;
        }
        let mut new_isr = self.committed_isr.clone();
        new_isr.push(id);
        let change = IsrChange::Expand { added: id, request: self.alter_request(&new_isr) };
        self.pending = Some(change.clone());
        Some(change)
    }

    fn alter_request(&self, isr: &[BrokerId]) -> AlterIsr {
        let new_isr = isr
            .iter()
            .map(|&broker| {
                let broker_epoch = if broker == self.local {
                    self.local_broker_epoch
                } else {
                    // Kafka sends -1 for a member not heard from in this epoch:
                    // if it restarted meanwhile the controller fenced it and
                    // bumped the partition epoch, so the proposal is refused
                    // anyway.
                    self.followers.get(&broker).and_then(|p| p.broker_epoch).unwrap_or(-1)
                };
                IsrMember { broker, broker_epoch }
            })
            .collect();
        AlterIsr { leader_epoch: self.leader_epoch, partition_epoch: self.partition_epoch, new_isr }
    }

    /// The leader's own written end moved (an append became written).
    /// Returns whether the HW advanced.
    pub fn on_local_end(&mut self, local_end: Offset, now_ms: u64, brokers: &impl BrokerLiveness) -> bool {
        if self.resigned {
            return false;
        }
        assert!(local_end >= self.local_end, "leader written end went back from {} to {local_end}", self.local_end);
        self.local_end = local_end;
        self.maybe_advance_hw(now_ms, brokers)
    }

    /// Kafka's `maybeIncrementLeaderHW` (module doc). Returns whether it moved.
    fn maybe_advance_hw(&mut self, now_ms: u64, brokers: &impl BrokerLiveness) -> bool {
        if self.is_under_min_isr() {
            return false;
        }
        let lag = self.config.replica_lag_time_max_ms;
        let mut candidate = self.local_end;
        for (&id, progress) in &self.followers {
            let holds_back = self.in_maximal_isr(id)
                || (progress.is_caught_up(self.local_end, now_ms, lag) && self.is_isr_eligible(id, brokers));
            if !holds_back {
                continue;
            }
            match progress.log_end {
                // A member not heard from in this epoch: its end is unknown,
                // so nothing above the current HW is known to be on it.
                None => return false,
                Some(end) => candidate = candidate.min(end),
            }
        }
        if candidate > self.hw {
            self.hw = candidate;
            true
        } else {
            false
        }
    }

    /// The periodic ISR check (every [`super::ISR_CHECK_INTERVAL_MS`]): ISR
    /// members other than the leader that were not caught up within
    /// `replica.lag.time.max.ms` are proposed for removal, unless a change is
    /// already pending.
    pub fn maybe_shrink(&mut self, now_ms: u64) -> Option<IsrChange> {
        if self.resigned || self.pending.is_some() {
            return None;
        }
        let lag = self.config.replica_lag_time_max_ms;
        let removed: Vec<BrokerId> = self
            .committed_isr
            .iter()
            .copied()
            .filter(|&id| id != self.local)
            .filter(|id| !self.followers.get(id).is_some_and(|p| p.is_caught_up(self.local_end, now_ms, lag)))
            .collect();
        if removed.is_empty() {
            return None;
        }
        let new_isr: Vec<BrokerId> = self.committed_isr.iter().copied().filter(|id| !removed.contains(id)).collect();
        let change = IsrChange::Shrink { removed, request: self.alter_request(&new_isr) };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// A new registration of this partition in the same leader epoch (an ISR
    /// change, ours or the controller's). An older partition epoch is ignored
    /// (Kafka: `partitionEpoch < this.partitionEpoch`); the same one changes
    /// nothing and, unlike a newer one, keeps a pending change: the controller
    /// may still apply it, so dropping it could let the HW outrun a member.
    /// Returns whether the HW advanced.
    pub fn on_partition_change(
        &mut self,
        assignment: &PartitionAssignment,
        now_ms: u64,
        brokers: &impl BrokerLiveness,
    ) -> bool {
        assert_eq!(assignment.leader_epoch, self.leader_epoch, "a new leader epoch needs a new LeaderState");
        assert_eq!(assignment.leader, self.local, "leadership moved within leader epoch {}", self.leader_epoch);
        if self.resigned || assignment.partition_epoch <= self.partition_epoch {
            return false;
        }
        self.partition_epoch = assignment.partition_epoch;
        self.committed_isr = assignment.isr.clone();
        self.pending = None;
        if assignment.replicas != self.replicas {
            self.replicas = assignment.replicas.clone();
            let local = self.local;
            self.followers.retain(|id, _| assignment.replicas.contains(id));
            for &id in assignment.replicas.iter().filter(|&&id| id != local) {
                self.followers.entry(id).or_default();
            }
        }
        self.maybe_advance_hw(now_ms, brokers)
    }

    /// An AlterPartition for `sent` failed with `error` (Kafka's
    /// `handleAlterPartitionError`).
    ///
    /// Unlike the design's first draft ("drop pending" on every error) we keep
    /// the change pending on the errors where the controller may have applied
    /// it or our metadata is behind, as Kafka does: dropping a pending
    /// expansion the controller did apply would let the HW pass a committed
    /// ISR member's end.
    pub fn on_alter_failed(
        &mut self,
        sent: &IsrChange,
        error: i16,
        now_ms: u64,
        brokers: &impl BrokerLiveness,
    ) -> AlterFailed {
        if self.resigned || self.pending.as_ref() != Some(sent) {
            return AlterFailed::Ignored;
        }
        match error {
            error_code::OPERATION_NOT_ATTEMPTED | error_code::INELIGIBLE_REPLICA => {
                self.pending = None;
                AlterFailed::Dropped { hw_advanced: self.maybe_advance_hw(now_ms, brokers) }
            }
            error_code::FENCED_LEADER_EPOCH
            | error_code::INVALID_UPDATE_VERSION
            | error_code::UNKNOWN_TOPIC_OR_PARTITION
            | error_code::UNKNOWN_TOPIC_ID
            | error_code::INVALID_REQUEST
            | error_code::NEW_LEADER_ELECTED => AlterFailed::AwaitMetadata,
            _ => AlterFailed::RetryAt { at_ms: now_ms + ALTER_ISR_RETRY_MS },
        }
    }

    /// The acks=all check before anything is written (Kafka's
    /// `appendRecordsToLeader`): refuse if the committed ISR is below the
    /// effective min ISR.
    pub fn check_acks_all_append(&self) -> Result<(), AppendRefused> {
        if self.resigned {
            return Err(AppendRefused::NotLeader);
        }
        if self.is_under_min_isr() {
            return Err(AppendRefused::NotEnoughReplicas {
                isr: self.committed_isr.len(),
                min_isr: self.effective_min_isr(),
            });
        }
        Ok(())
    }

    /// Where an acks=all produce whose last offset is `required_end - 1`
    /// stands (Kafka's `checkEnoughReplicasReachOffset`).
    pub fn ack_status(&self, required_end: Offset) -> AckStatus {
        if self.resigned {
            AckStatus::NotLeader
        } else if self.hw < required_end {
            AckStatus::Pending
        } else if self.maximal_isr().len() >= self.effective_min_isr() {
            AckStatus::Done
        } else {
            AckStatus::DoneUnderMinIsr
        }
    }

    /// The local broker stopped leading this epoch: every waiter now sees
    /// `NotLeader`, every later fetch is refused.
    pub fn resign(&mut self) {
        self.resigned = true;
    }
}
