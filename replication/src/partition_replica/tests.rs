//! Scenario tests mirroring Kafka's `PartitionTest` (leader) and
//! `AbstractFetcherThreadTest` (follower), the role decision table, and two
//! property tests: the leader's HW under random fetch/ISR histories, and a
//! follower converging on its leader from random diverged histories.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::model::ModelLog;
use super::*;
use crate::types::{BrokerId, LeaderEpoch, Offset};

const LOCAL: BrokerId = 1;
const LAG: u64 = DEFAULT_REPLICA_LAG_TIME_MAX_MS;

// ---------------------------------------------------------------------------
// Leader helpers
// ---------------------------------------------------------------------------

fn broker_epoch(id: BrokerId) -> BrokerEpoch {
    100 + id as BrokerEpoch
}

fn brokers(ids: &[BrokerId]) -> BTreeMap<BrokerId, BrokerStatus> {
    ids.iter().map(|&id| (id, BrokerStatus { epoch: broker_epoch(id), fenced: false, shutting_down: false })).collect()
}

fn assignment(replicas: &[BrokerId], isr: &[BrokerId], partition_epoch: i32) -> PartitionAssignment {
    PartitionAssignment {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader: LOCAL,
        leader_epoch: 5,
        partition_epoch,
    }
}

struct Setup {
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    min_isr: usize,
    local_end: Offset,
    follower_hw: Offset,
}

impl Setup {
    fn new(replicas: &[BrokerId], isr: &[BrokerId], local_end: Offset) -> Setup {
        Setup { replicas: replicas.to_vec(), isr: isr.to_vec(), min_isr: 1, local_end, follower_hw: 0 }
    }

    fn min_isr(mut self, min_isr: usize) -> Setup {
        self.min_isr = min_isr;
        self
    }

    fn follower_hw(mut self, hw: Offset) -> Setup {
        self.follower_hw = hw;
        self
    }

    fn start(&self, now_ms: u64, brokers: &impl BrokerLiveness) -> LeaderState {
        let config = LeaderConfig { min_insync_replicas: self.min_isr, replica_lag_time_max_ms: LAG };
        let start = LeaderStart {
            log_start: 0,
            local_end: self.local_end,
            follower_hw: self.follower_hw,
            local_broker_epoch: broker_epoch(LOCAL),
            now_ms,
        };
        LeaderState::new(LOCAL, &assignment(&self.replicas, &self.isr, 1), config, start, brokers)
    }
}

fn fetch_at(
    leader: &mut LeaderState,
    replica: BrokerId,
    fetch_offset: Offset,
    now_ms: u64,
    brokers: &impl BrokerLiveness,
) -> FetchOutcome {
    let fetch = FollowerFetch {
        replica,
        fetch_offset,
        log_start: 0,
        broker_epoch: broker_epoch(replica),
        leader_end: leader.local_end(),
        now_ms,
    };
    leader.on_follower_fetch(fetch, brokers).expect("fetch recorded")
}

fn expand_of(outcome: &FetchOutcome) -> Option<BrokerId> {
    match &outcome.isr_change {
        Some(IsrChange::Expand { added, .. }) => Some(*added),
        _ => None,
    }
}

fn members(ids: &[BrokerId]) -> Vec<IsrMember> {
    ids.iter().map(|&broker| IsrMember { broker, broker_epoch: broker_epoch(broker) }).collect()
}

// ---------------------------------------------------------------------------
// Leader scenarios (PartitionTest)
// ---------------------------------------------------------------------------

/// PartitionTest.testFollowerDoesNotJoinISRUntilCaughtUpToOffsetWithinCurrentLeaderEpoch,
/// plus the HW half of `isFollowerInSync`.
#[test]
fn follower_joins_isr_only_at_hw_and_past_the_epoch_start() {
    let b = brokers(&[1, 2, 3]);
    // Epoch 5 starts at 5; this replica's HW as follower was 2.
    let mut leader = Setup::new(&[1, 2, 3], &[1, 3], 5).follower_hw(2).start(0, &b);
    assert_eq!(leader.hw(), 2, "ISR member 3 not heard from yet");
    assert!(!leader.on_local_end(7, 1, &b));
    let outcome = fetch_at(&mut leader, 3, 4, 2, &b);
    assert!(outcome.hw_advanced);
    assert_eq!(leader.hw(), 4);

    assert_eq!(expand_of(&fetch_at(&mut leader, 2, 3, 3, &b)), None, "below the HW");
    assert_eq!(expand_of(&fetch_at(&mut leader, 2, 4, 4, &b)), None, "at the HW but before epoch 5 started");
    let outcome = fetch_at(&mut leader, 2, 5, 5, &b);
    assert_eq!(expand_of(&outcome), Some(2));
    assert_eq!(outcome.isr_change.unwrap().request().new_isr, members(&[1, 3, 2]));
    assert_eq!(leader.committed_isr(), &[1, 3], "expansion does not change the committed ISR");
    assert_eq!(leader.maximal_isr(), vec![1, 3, 2]);
}

/// PartitionTest.testIsrExpansion.
#[test]
fn isr_expansion_is_proposed_once_caught_up_and_committed_by_metadata() {
    let b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1], 10).start(0, &b);
    assert_eq!(leader.hw(), 10, "an ISR of only the leader moves the HW at once");

    let outcome = fetch_at(&mut leader, 2, 3, 100, &b);
    assert_eq!(outcome, FetchOutcome::default());
    assert_eq!(leader.follower(2).unwrap().last_caught_up_ms, None);
    assert_eq!(leader.follower(2).unwrap().log_end, Some(3));

    let outcome = fetch_at(&mut leader, 2, 10, 200, &b);
    let change = outcome.isr_change.expect("expansion");
    assert_eq!(change.request(), &AlterIsr { leader_epoch: 5, partition_epoch: 1, new_isr: members(&[1, 2]) });
    assert_eq!(leader.follower(2).unwrap().last_caught_up_ms, Some(200));
    assert_eq!(leader.pending(), Some(&change));

    assert!(!leader.on_partition_change(&assignment(&[1, 2], &[1, 2], 2), 300, &b));
    assert_eq!(leader.committed_isr(), &[1, 2]);
    assert_eq!(leader.pending(), None);
    assert_eq!(leader.partition_epoch(), 2);
}

/// PartitionTest.testMaybeShrinkIsr.
#[test]
fn isr_shrinks_after_lag_time_and_hw_moves_once_committed() {
    let b = brokers(&[1, 2, 3]);
    let mut leader = Setup::new(&[1, 2, 3], &[1, 2, 3], 10).start(0, &b);
    assert_eq!(leader.hw(), 0);
    fetch_at(&mut leader, 2, 10, 0, &b);
    assert_eq!(leader.hw(), 0, "member 3 never fetched: its end is unknown");

    assert_eq!(leader.maybe_shrink(0), None, "members start caught up");
    assert_eq!(leader.maybe_shrink(LAG), None, "exactly the lag is still in sync");
    let change = leader.maybe_shrink(LAG + 1).expect("shrink");
    assert_eq!(
        change,
        IsrChange::Shrink {
            removed: vec![3],
            request: AlterIsr { leader_epoch: 5, partition_epoch: 1, new_isr: members(&[1, 2]) },
        }
    );
    assert_eq!(leader.maximal_isr(), vec![1, 2, 3], "a pending removal still counts");
    assert_eq!(leader.hw(), 0);

    assert!(leader.on_partition_change(&assignment(&[1, 2, 3], &[1, 2], 2), LAG + 2, &b));
    assert_eq!(leader.maximal_isr(), vec![1, 2]);
    assert_eq!(leader.hw(), 10);
}

/// PartitionTest.testShouldNotShrinkIsrIfPreviousFetchIsCaughtUp: under a
/// steady trickle of appends the follower never reaches the moving end, but
/// each fetch reaches the end of the previous one.
#[test]
fn follower_reaching_the_previous_fetch_end_stays_in_sync() {
    let b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1, 2], 10).start(0, &b);
    fetch_at(&mut leader, 2, 5, 5_000, &b);
    assert_eq!(leader.follower(2).unwrap().last_caught_up_ms, Some(0), "initial ISR time kept");
    assert_eq!(leader.hw(), 5);

    leader.on_local_end(15, 10_001, &b);
    fetch_at(&mut leader, 2, 10, 10_001, &b);
    assert_eq!(leader.follower(2).unwrap().last_caught_up_ms, Some(5_000), "caught up as of the previous fetch");
    assert_eq!(leader.hw(), 10);

    assert_eq!(leader.maybe_shrink(5_000 + LAG), None);
    assert!(leader.maybe_shrink(5_000 + LAG + 1).is_some());
}

/// PartitionTest.testShouldNotShrinkIsrIfFollowerCaughtUpToLogEnd.
#[test]
fn follower_at_the_leader_end_is_never_out_of_sync() {
    let b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1, 2], 10).start(0, &b);
    fetch_at(&mut leader, 2, 10, 0, &b);
    assert_eq!(leader.hw(), 10);
    assert_eq!(leader.maybe_shrink(LAG + 1), None, "idle partition, follower at the end");
    leader.on_local_end(11, LAG + 1, &b);
    assert!(leader.maybe_shrink(LAG + 1).is_some(), "the end moved and the follower did not follow");
}

/// PartitionTest.testHighWatermarkAdvanceShouldNotAdvanceWhenUnderMinISR.
#[test]
fn hw_is_frozen_while_the_committed_isr_is_under_min_isr() {
    let b = brokers(&[1, 2, 3]);
    let mut leader = Setup::new(&[1, 2, 3], &[1, 2], 10).min_isr(3).start(0, &b);
    assert!(leader.is_under_min_isr());
    assert_eq!(leader.hw(), 0);

    fetch_at(&mut leader, 2, 10, 1, &b);
    assert_eq!(leader.hw(), 0);
    let outcome = fetch_at(&mut leader, 3, 10, 2, &b);
    assert_eq!(expand_of(&outcome), Some(3));
    assert_eq!(leader.maximal_isr().len(), 3);
    assert_eq!(leader.hw(), 0, "the maximal ISR reaching min ISR is not enough");
    assert_eq!(leader.check_acks_all_append(), Err(AppendRefused::NotEnoughReplicas { isr: 2, min_isr: 3 }));

    assert!(leader.on_partition_change(&assignment(&[1, 2, 3], &[1, 2, 3], 2), 3, &b));
    assert!(!leader.is_under_min_isr());
    assert_eq!(leader.hw(), 10);
    assert_eq!(leader.check_acks_all_append(), Ok(()));
}

#[test]
fn hw_never_moves_back_within_an_epoch() {
    let b = brokers(&[1, 2, 3]);
    let mut leader = Setup::new(&[1, 2, 3], &[1, 2], 10).start(0, &b);
    fetch_at(&mut leader, 2, 10, 1, &b);
    assert_eq!(leader.hw(), 10);
    // A member reporting less than before (it lost an unflushed tail) holds
    // the HW where it is; it never takes it back.
    leader.on_local_end(12, 2, &b);
    fetch_at(&mut leader, 2, 8, 3, &b);
    assert_eq!(leader.hw(), 10);
    // Nor does an ISR change that adds a lagging member's weight.
    leader.on_partition_change(&assignment(&[1, 2, 3], &[1, 2, 3], 2), 4, &b);
    assert_eq!(leader.hw(), 10);
}

/// Kafka's `shouldWaitForReplicaToJoinIsr`: a caught-up, eligible follower
/// outside the ISR holds the HW back so it can reach it and join.
#[test]
fn caught_up_follower_outside_the_isr_holds_the_hw_until_it_joins() {
    let b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1], 10).start(0, &b);
    assert_eq!(leader.hw(), 10);
    fetch_at(&mut leader, 2, 4, 1, &b);
    assert!(leader.on_local_end(12, 2, &b), "follower 2 is not caught up: it does not count");
    assert_eq!(leader.hw(), 12);
    let outcome = fetch_at(&mut leader, 2, 10, 3, &b);
    assert_eq!(expand_of(&outcome), None, "10 is below the HW 12");
    assert_eq!(leader.follower(2).unwrap().last_caught_up_ms, Some(1));
    assert!(!leader.on_local_end(14, 4, &b), "caught-up follower at 10 holds the HW");
    assert_eq!(leader.hw(), 12);
    let outcome = fetch_at(&mut leader, 2, 12, 5, &b);
    assert_eq!(expand_of(&outcome), Some(2));
    assert_eq!(leader.hw(), 12);
}

/// PartitionTest.testHighWatermarkIncreasesWithFencedOrShutdownFollower.
#[test]
fn hw_ignores_a_fenced_or_shutting_down_follower_outside_the_isr() {
    for state in ["unfenced", "fenced", "shutdown"] {
        let mut b = brokers(&[1, 2]);
        let mut leader = Setup::new(&[1, 2], &[1, 2], 10).start(0, &b);
        fetch_at(&mut leader, 2, 10, 0, &b);
        assert_eq!(leader.hw(), 10, "{state}");
        let status = b.get_mut(&2).unwrap();
        status.fenced = state == "fenced";
        status.shutting_down = state == "shutdown";
        leader.on_local_end(20, 1, &b);
        // The controller removes the follower from the ISR.
        leader.on_partition_change(&assignment(&[1, 2], &[1], 2), 2, &b);
        assert_eq!(leader.maximal_isr(), vec![1], "{state}");
        assert_eq!(leader.maybe_shrink(2), None, "{state}");
        let want = if state == "unfenced" { 10 } else { 20 };
        assert_eq!(leader.hw(), want, "{state}");
    }
}

/// PartitionTest.testIsrNotExpandedIfReplicaIsFencedOrShutdown and
/// testIsrCanExpandedIfBrokerEpochsMatchWithKraftMetadataCache.
#[test]
fn only_eligible_followers_join_the_isr() {
    type Tweak = fn(&mut BTreeMap<BrokerId, BrokerStatus>) -> BrokerEpoch;
    let cases: [(&str, Tweak, bool); 6] = [
        ("eligible", |_| broker_epoch(2), true),
        ("epoch not sent", |_| -1, true),
        (
            "fenced",
            |b| {
                b.get_mut(&2).unwrap().fenced = true;
                broker_epoch(2)
            },
            false,
        ),
        (
            "shutting down",
            |b| {
                b.get_mut(&2).unwrap().shutting_down = true;
                broker_epoch(2)
            },
            false,
        ),
        ("image behind a restart", |_| broker_epoch(2) + 1, false),
        (
            "not registered",
            |b| {
                b.remove(&2);
                broker_epoch(2)
            },
            false,
        ),
    ];
    for (name, tweak, joins) in cases {
        let mut b = brokers(&[1, 2]);
        let mut leader = Setup::new(&[1, 2], &[1], 10).start(0, &b);
        let fetched_epoch = tweak(&mut b);
        let fetch = FollowerFetch {
            replica: 2,
            fetch_offset: 10,
            log_start: 0,
            broker_epoch: fetched_epoch,
            leader_end: 10,
            now_ms: 1,
        };
        let outcome = leader.on_follower_fetch(fetch, &b).expect(name);
        assert_eq!(outcome.isr_change.is_some(), joins, "{name}");
    }
}

/// PartitionTest.testFenceFollowerFetchWithStaleBrokerEpoch and
/// testFetchFromUnrecognizedFollower.
#[test]
fn stale_incarnations_and_strangers_are_refused() {
    let b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1, 2], 10).start(0, &b);
    let stale = FollowerFetch {
        replica: 2,
        fetch_offset: 10,
        log_start: 0,
        broker_epoch: broker_epoch(2) - 1,
        leader_end: 10,
        now_ms: 1,
    };
    assert_eq!(
        leader.on_follower_fetch(stale, &b),
        Err(FollowerFetchError::StaleBrokerEpoch { broker: 2, fetched: 101, registered: 102 })
    );
    assert_eq!(leader.follower(2).unwrap().log_end, None, "nothing recorded");
    assert_eq!(leader.hw(), 0);
    let stranger = FollowerFetch { replica: 9, ..stale };
    assert_eq!(leader.on_follower_fetch(stranger, &b), Err(FollowerFetchError::UnknownReplica(9)));
}

/// PartitionTest.testIsrNotExpandedIfUpdateFails, testInvalidAlterPartitionRequestsAreNotRetried,
/// testAlterIsrUnexpectedError / testPartitionShouldRetryAlterPartitionRequest.
#[test]
fn failed_isr_change_is_kept_dropped_or_retried_by_error() {
    let cases = [
        ("INVALID_UPDATE_VERSION", error_code::INVALID_UPDATE_VERSION, AlterFailed::AwaitMetadata, true),
        ("INVALID_REQUEST", error_code::INVALID_REQUEST, AlterFailed::AwaitMetadata, true),
        ("FENCED_LEADER_EPOCH", error_code::FENCED_LEADER_EPOCH, AlterFailed::AwaitMetadata, true),
        ("UNKNOWN_TOPIC_ID", error_code::UNKNOWN_TOPIC_ID, AlterFailed::AwaitMetadata, true),
        ("NEW_LEADER_ELECTED", error_code::NEW_LEADER_ELECTED, AlterFailed::AwaitMetadata, true),
        (
            "OPERATION_NOT_ATTEMPTED",
            error_code::OPERATION_NOT_ATTEMPTED,
            AlterFailed::Dropped { hw_advanced: false },
            false,
        ),
        ("REQUEST_TIMED_OUT", 7, AlterFailed::RetryAt { at_ms: 100 + ALTER_ISR_RETRY_MS }, true),
    ];
    for (name, error, want, still_pending) in cases {
        let b = brokers(&[1, 2]);
        let mut leader = Setup::new(&[1, 2], &[1], 10).start(0, &b);
        let change = fetch_at(&mut leader, 2, 10, 50, &b).isr_change.expect(name);
        assert_eq!(leader.on_alter_failed(&change, error, 100, &b), want, "{name}");
        assert_eq!(leader.pending().is_some(), still_pending, "{name}");
        let maximal = if still_pending { vec![1, 2] } else { vec![1] };
        assert_eq!(leader.maximal_isr(), maximal, "{name}");
        assert_eq!(leader.committed_isr(), &[1], "{name}");
    }
}

#[test]
fn refused_expansion_of_an_ineligible_follower_releases_the_hw() {
    let mut b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1], 10).start(0, &b);
    let change = fetch_at(&mut leader, 2, 10, 1, &b).isr_change.expect("expansion");
    assert!(!leader.on_local_end(15, 2, &b), "pending member at 10 holds the HW");
    b.get_mut(&2).unwrap().fenced = true;
    let other = IsrChange::Shrink { removed: vec![2], request: change.request().clone() };
    assert_eq!(leader.on_alter_failed(&other, error_code::INELIGIBLE_REPLICA, 3, &b), AlterFailed::Ignored);
    assert_eq!(
        leader.on_alter_failed(&change, error_code::INELIGIBLE_REPLICA, 3, &b),
        AlterFailed::Dropped { hw_advanced: true }
    );
    assert_eq!(leader.hw(), 15);
}

/// PartitionTest.testAlterIsrLeaderAndIsrRace and testSingleInFlightAlterIsr.
#[test]
fn one_isr_change_in_flight_until_a_newer_registration() {
    let b = brokers(&[1, 2, 3]);
    let mut leader = Setup::new(&[1, 2, 3], &[1, 2, 3], 10).start(0, &b);
    assert!(leader.maybe_shrink(LAG + 1).is_some());
    assert_eq!(leader.maybe_shrink(LAG + 2), None, "a shrink is pending");

    // The same registration again (a duplicate delivery) keeps it pending.
    leader.on_partition_change(&assignment(&[1, 2, 3], &[1, 2, 3], 1), LAG + 3, &b);
    assert!(leader.pending().is_some());
    assert_eq!(leader.maybe_shrink(LAG + 3), None);

    // A newer registration (someone else's change) resolves it.
    leader.on_partition_change(&assignment(&[1, 2, 3], &[1, 2, 3], 2), LAG + 4, &b);
    assert_eq!(leader.pending(), None);
    let change = leader.maybe_shrink(LAG + 4).expect("shrink proposed again");
    assert_eq!(change.request().partition_epoch, 2);
}

/// PartitionTest.testIgnoreLeaderPartitionStateChangeWithOlderPartitionEpoch.
#[test]
fn older_partition_epoch_is_ignored() {
    let b = brokers(&[1, 2]);
    let mut leader = Setup::new(&[1, 2], &[1, 2], 10).start(0, &b);
    leader.on_partition_change(&assignment(&[1, 2], &[1, 2], 4), 1, &b);
    assert!(!leader.on_partition_change(&assignment(&[1, 2], &[1], 3), 2, &b));
    assert_eq!(leader.committed_isr(), &[1, 2]);
    assert_eq!(leader.partition_epoch(), 4);
}

/// PartitionTest's acks=all cases (`checkEnoughReplicasReachOffset`,
/// `appendRecordsToLeader`).
#[test]
fn acks_all_status_follows_hw_and_min_isr() {
    let b = brokers(&[1, 2, 3]);
    let mut leader = Setup::new(&[1, 2, 3], &[1, 2, 3], 10).min_isr(2).follower_hw(10).start(0, &b);
    assert_eq!(leader.check_acks_all_append(), Ok(()));
    leader.on_local_end(15, 1, &b);
    assert_eq!(leader.ack_status(10), AckStatus::Done);
    assert_eq!(leader.ack_status(15), AckStatus::Pending);
    fetch_at(&mut leader, 2, 15, 2, &b);
    fetch_at(&mut leader, 3, 15, 2, &b);
    assert_eq!(leader.ack_status(15), AckStatus::Done);

    // Member 3 stops; its removal is pending, it still counts.
    leader.on_local_end(20, 3, &b);
    fetch_at(&mut leader, 2, 20, 4, &b);
    assert_eq!(leader.ack_status(20), AckStatus::Pending);
    assert!(leader.maybe_shrink(2 + LAG + 1).is_some());
    assert_eq!(leader.ack_status(20), AckStatus::Pending);
    leader.on_partition_change(&assignment(&[1, 2, 3], &[1, 2], 2), 2 + LAG + 2, &b);
    assert_eq!(leader.ack_status(20), AckStatus::Done);

    // The controller drops member 2 too: new acks=all appends are refused,
    // and one that reached the HW now reports it is under min ISR.
    leader.on_partition_change(&assignment(&[1, 2, 3], &[1], 3), 2 + LAG + 3, &b);
    assert_eq!(leader.check_acks_all_append(), Err(AppendRefused::NotEnoughReplicas { isr: 1, min_isr: 2 }));
    assert_eq!(leader.ack_status(20), AckStatus::DoneUnderMinIsr);
    assert_eq!(leader.ack_status(21), AckStatus::Pending);

    leader.resign();
    assert_eq!(leader.ack_status(20), AckStatus::NotLeader);
    assert_eq!(leader.check_acks_all_append(), Err(AppendRefused::NotLeader));
    let late =
        FollowerFetch { replica: 2, fetch_offset: 20, log_start: 0, broker_epoch: -1, leader_end: 20, now_ms: 0 };
    assert_eq!(leader.on_follower_fetch(late, &b), Err(FollowerFetchError::NotLeader));
}

/// Kafka's `effectiveMinIsr`: a single replica with min.insync.replicas=2
/// still takes acks=all writes, and its HW follows its own end.
#[test]
fn min_isr_is_capped_by_the_replication_factor() {
    let b = brokers(&[1]);
    let mut leader = Setup::new(&[1], &[1], 0).min_isr(2).start(0, &b);
    assert_eq!(leader.effective_min_isr(), 1);
    assert_eq!(leader.check_acks_all_append(), Ok(()));
    assert!(leader.on_local_end(5, 1, &b));
    assert_eq!(leader.hw(), 5);
    assert_eq!(leader.ack_status(5), AckStatus::Done);
}

#[test]
fn new_leader_hw_starts_at_follower_hw_or_log_start() {
    let b = brokers(&[1, 2]);
    let config = LeaderConfig::default();
    let start = LeaderStart { log_start: 7, local_end: 20, follower_hw: 3, local_broker_epoch: 101, now_ms: 0 };
    let leader = LeaderState::new(LOCAL, &assignment(&[1, 2], &[1, 2], 1), config, start, &b);
    assert_eq!(leader.hw(), 7);
    assert_eq!(leader.epoch_start_offset(), 20);
    let start = LeaderStart { follower_hw: 12, ..start };
    let leader = LeaderState::new(LOCAL, &assignment(&[1, 2], &[1, 2], 1), config, start, &b);
    assert_eq!(leader.hw(), 12);
}

// ---------------------------------------------------------------------------
// Follower harness: a follower state machine against a model leader
// ---------------------------------------------------------------------------

struct ModelLeader {
    log: ModelLog,
    epoch: LeaderEpoch,
    hw: Offset,
}

/// What happened during a run, for assertions on the path taken.
#[derive(Default)]
struct Trace {
    actions: Vec<FollowerAction>,
    epoch_queries: Vec<LeaderEpoch>,
    fetches: Vec<FetchQuery>,
    converged: bool,
}

const READ_MAX_BATCHES: usize = 2;

/// Runs the follower until it is caught up (an empty fetch answer at the
/// leader's end) or `max_steps` requests were made. Plays the driver: sends
/// each request to the model leader, executes each action on `log`.
fn run(leader: &ModelLeader, follower: &mut FollowerState, log: &mut ModelLog, max_steps: usize) -> Trace {
    let mut trace = Trace::default();
    let mut now_ms = 0;
    for _ in 0..max_steps {
        let mut records = Vec::new();
        let action = if let Some(step) = follower.epoch_query(log, now_ms) {
            match step {
                TruncatingStep::Act(action) => action,
                TruncatingStep::Ask(q) => {
                    assert_eq!(q.current_leader_epoch, leader.epoch);
                    trace.epoch_queries.push(q.leader_epoch);
                    let answer = answer_epoch_query(&leader.log, q.leader_epoch);
                    follower.on_epoch_response(&q, Ok(answer), log, now_ms)
                }
            }
        } else if let Some(q) = follower.fetch_query(log, now_ms) {
            trace.fetches.push(q);
            let response = match check_fetch_position(&leader.log, q.fetch_offset, q.last_fetched_epoch) {
                FetchPosition::Read => {
                    records = leader.log.read(q.fetch_offset, READ_MAX_BATCHES);
                    FetchResponse {
                        error: error_code::NONE,
                        high_watermark: leader.hw,
                        diverging_epoch: None,
                        has_records: !records.is_empty(),
                    }
                }
                FetchPosition::Diverging(d) => FetchResponse {
                    error: error_code::NONE,
                    high_watermark: leader.hw,
                    diverging_epoch: Some(d),
                    has_records: false,
                },
                FetchPosition::OutOfRange => FetchResponse {
                    error: error_code::OFFSET_OUT_OF_RANGE,
                    high_watermark: -1,
                    diverging_epoch: None,
                    has_records: false,
                },
            };
            let caught_up = response == FetchResponse { has_records: false, ..response }
                && response.error == error_code::NONE
                && response.diverging_epoch.is_none();
            let action = follower.on_fetch_response(&q, &response, log, now_ms);
            if caught_up {
                trace.actions.push(action);
                trace.converged = true;
                return trace;
            }
            action
        } else if let Some(q) = follower.leader_offsets_query(now_ms) {
            let answer = LeaderOffsets { log_start: leader.log.log_start(), log_end: leader.log.log_end() };
            follower.on_leader_offsets(&q, Ok(answer), log, now_ms)
        } else {
            return trace;
        };
        trace.actions.push(action);
        match action {
            FollowerAction::Truncate { to } => {
                log.truncate_to(to);
                follower.on_truncated(log);
            }
            FollowerAction::TruncateFullyAndStartAt { offset } => {
                log.truncate_fully_and_start_at(offset);
                follower.on_truncated(log);
            }
            FollowerAction::Append { expected_base } => {
                assert_eq!(records[0].offset, expected_base);
                log.append_replicated(&records);
                follower.on_appended(log.log_end(), records.last().unwrap().epoch);
            }
            FollowerAction::Backoff { until_ms } => now_ms = until_ms,
            FollowerAction::Continue => {}
            FollowerAction::Ignored | FollowerAction::AwaitMetadata => panic!("unexpected {action:?}"),
        }
    }
    trace
}

/// A leader at epoch `epoch` whose log has `runs`, every batch tagged `tag`.
fn leader_with(runs: &[(LeaderEpoch, usize)], epoch: LeaderEpoch, tag: u64, hw: Offset) -> ModelLeader {
    let mut log = ModelLog::default();
    for &(e, count) in runs {
        for _ in 0..count {
            log.append_leader(e, tag);
        }
    }
    if log.latest_epoch() != Some(epoch) {
        log.assign_epoch(epoch);
    }
    ModelLeader { log, epoch, hw }
}

fn truncations(trace: &Trace) -> Vec<FollowerAction> {
    trace
        .actions
        .iter()
        .copied()
        .filter(|a| matches!(a, FollowerAction::Truncate { .. } | FollowerAction::TruncateFullyAndStartAt { .. }))
        .collect()
}

// ---------------------------------------------------------------------------
// Follower scenarios (AbstractFetcherThreadTest)
// ---------------------------------------------------------------------------

/// AbstractFetcherThreadTest.testTruncation: every epoch of the follower is
/// unknown to the leader, so it truncates step by step, asking again each time.
#[test]
fn truncation_asks_again_until_a_common_epoch_then_reconciles() {
    let leader = leader_with(&[(1, 1), (3, 1), (5, 1)], 5, 1, 2);
    let mut log = ModelLog::from_runs(0, &[(0, 1), (2, 1), (4, 1)]);
    let mut follower = FollowerState::new(Some(2), 5, 0);
    let trace = run(&leader, &mut follower, &mut log, 50);
    assert!(trace.converged);
    assert_eq!(trace.epoch_queries, vec![4, 2, 0]);
    assert_eq!(
        truncations(&trace),
        vec![
            FollowerAction::Truncate { to: 2 },
            FollowerAction::Truncate { to: 1 },
            FollowerAction::Truncate { to: 0 }
        ]
    );
    assert_eq!(log.batches(), leader.log.batches());
    assert_eq!(follower.hw(), 2);
    assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 3, last_fetched_epoch: Some(5) });
}

/// AbstractFetcherThreadTest.testDivergingEpochs: the leader's log changed
/// after our truncation phase; the fetch answer names the divergence and its
/// records are not appended.
#[test]
fn diverging_epoch_in_a_fetch_answer_truncates_without_appending() {
    let same = leader_with(&[(0, 1), (2, 1), (4, 1)], 5, 0, 0);
    let mut log = ModelLog::from_runs(0, &[(0, 1), (2, 1), (4, 1)]);
    let mut follower = FollowerState::new(Some(2), 5, 0);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    let answer = answer_epoch_query(&same.log, q.leader_epoch);
    assert_eq!(follower.on_epoch_response(&q, Ok(answer), &log, 0), FollowerAction::Continue, "nothing to cut");
    assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 3, last_fetched_epoch: Some(4) });

    let changed = leader_with(&[(0, 1), (2, 1), (5, 1)], 5, 0, 2);
    let q = follower.fetch_query(&log, 0).expect("fetch");
    let FetchPosition::Diverging(d) = check_fetch_position(&changed.log, q.fetch_offset, q.last_fetched_epoch) else {
        panic!("leader should see divergence")
    };
    assert_eq!(d, EpochEndOffset { epoch: 2, end_offset: 2 });
    let response = FetchResponse { error: 0, high_watermark: 2, diverging_epoch: Some(d), has_records: true };
    assert_eq!(follower.on_fetch_response(&q, &response, &log, 0), FollowerAction::Truncate { to: 2 });
    assert_eq!(follower.hw(), 0, "HW not taken from a diverging answer");
    log.truncate_to(2);
    follower.on_truncated(&log);
    assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 2, last_fetched_epoch: Some(2) });

    let trace = run(&changed, &mut follower, &mut log, 20);
    assert!(trace.converged);
    assert_eq!(log.batches(), changed.log.batches());
    assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 3, last_fetched_epoch: Some(5) });
}

/// AbstractFetcherThreadTest.testTruncateToHighWatermarkIfLeaderEpochInfoNotAvailable.
#[test]
fn log_without_epochs_truncates_to_its_hw_without_asking() {
    let mut log = ModelLog::from_runs(0, &[(0, 1), (2, 1), (4, 1)]).with_no_epochs();
    let mut follower = FollowerState::new(Some(2), 5, 2);
    assert_eq!(follower.epoch_query(&log, 0), Some(TruncatingStep::Act(FollowerAction::Truncate { to: 2 })));
    assert_eq!(follower.fetch_query(&log, 0), None, "truncation in flight");
    log.truncate_to(2);
    follower.on_truncated(&log);
    assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 2, last_fetched_epoch: None });
}

/// The leader has no epoch history to answer from (UNDEFINED): our HW is the
/// last offset known to be committed.
#[test]
fn leader_without_epoch_info_makes_the_follower_truncate_to_its_hw() {
    let log = ModelLog::from_runs(0, &[(0, 2), (2, 3)]);
    let mut follower = FollowerState::new(Some(2), 5, 3);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    let bare = ModelLog::from_runs(0, &[(0, 9)]).with_no_epochs();
    let answer = answer_epoch_query(&bare, q.leader_epoch);
    assert_eq!(answer, EpochEndOffset::UNDEFINED);
    assert_eq!(follower.on_epoch_response(&q, Ok(answer), &log, 0), FollowerAction::Truncate { to: 3 });
}

#[test]
fn follower_ahead_of_the_leader_truncates_to_the_leader_end() {
    let leader = leader_with(&[(0, 1), (2, 2)], 3, 0, 3);
    let mut log = ModelLog::from_runs(0, &[(0, 1), (2, 3)]);
    let mut follower = FollowerState::new(Some(2), 3, 0);
    let trace = run(&leader, &mut follower, &mut log, 20);
    assert!(trace.converged);
    assert_eq!(truncations(&trace), vec![FollowerAction::Truncate { to: 3 }]);
    assert_eq!(log.batches(), leader.log.batches());
}

/// AbstractFetcherThreadTest.testTruncationOnFetchSkippedIfPartitionRemoved
/// and the fetch-offset check of `processFetchRequest`.
#[test]
fn stale_responses_are_ignored() {
    let log = ModelLog::from_runs(0, &[(4, 3)]);
    let mut follower = FollowerState::new(Some(2), 5, 0);
    let Some(TruncatingStep::Ask(eq)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    let older = EpochQuery { current_leader_epoch: 4, ..eq };
    let answer = Ok(EpochEndOffset { epoch: 4, end_offset: 3 });
    assert_eq!(follower.on_epoch_response(&older, answer, &log, 0), FollowerAction::Ignored);
    assert_eq!(follower.in_flight(), Some(InFlight::Request(FollowerRequest::Epoch(eq))));
    assert_eq!(follower.on_epoch_response(&eq, answer, &log, 0), FollowerAction::Continue);
    assert_eq!(follower.on_epoch_response(&eq, answer, &log, 0), FollowerAction::Ignored, "answered already");

    let q = follower.fetch_query(&log, 0).expect("fetch");
    let ok = FetchResponse { error: 0, high_watermark: 3, diverging_epoch: None, has_records: true };
    let moved = FetchQuery { fetch_offset: 2, ..q };
    assert_eq!(follower.on_fetch_response(&moved, &ok, &log, 0), FollowerAction::Ignored, "other offset");
    let old_epoch = FetchQuery { current_leader_epoch: 4, ..q };
    assert_eq!(follower.on_fetch_response(&old_epoch, &ok, &log, 0), FollowerAction::Ignored, "other epoch");
    let request = FollowerRequest::Fetch(q);
    assert_eq!(follower.on_request_failed(&request, 10), FollowerAction::Backoff { until_ms: 1010 });
    assert_eq!(follower.on_fetch_response(&q, &ok, &log, 20), FollowerAction::Ignored, "late after failure");
    assert_eq!(follower.fetch_query(&log, 1009), None, "backing off");

    // A response to the previous leader epoch's state, fed to the new one.
    let mut next = FollowerState::new(Some(3), 6, 0);
    assert_eq!(next.on_fetch_response(&q, &ok, &log, 0), FollowerAction::Ignored);
    assert_eq!(next.on_epoch_response(&eq, answer, &log, 0), FollowerAction::Ignored);
    assert_eq!(next.phase(), FetchPhase::Truncating);
}

/// AbstractFetcherThreadTest.testFollowerFetchOutOfRangeHigh.
#[test]
fn out_of_range_past_the_leader_end_truncates_to_it() {
    let synced = leader_with(&[(0, 1), (2, 1), (4, 1)], 4, 0, 2);
    let mut log = ModelLog::from_runs(0, &[(0, 1), (2, 1), (4, 1)]);
    let mut follower = FollowerState::new(Some(2), 4, 0);
    let trace = run(&synced, &mut follower, &mut log, 20);
    assert!(trace.converged);
    assert_eq!(log.log_end(), 3);

    // The leader's log is replaced without a new epoch (as the Kafka test does).
    let emptied = ModelLeader { log: ModelLog::default(), epoch: 4, hw: 0 };
    let trace = run(&emptied, &mut follower, &mut log, 20);
    assert!(trace.converged);
    assert_eq!(truncations(&trace), vec![FollowerAction::Truncate { to: 0 }]);
    assert_eq!((log.log_start(), log.log_end(), follower.hw()), (0, 0, 0));
}

/// AbstractFetcherThreadTest.testFollowerFetchOutOfRangeLow: retention on the
/// leader passed our end; we drop everything and start at its log start.
#[test]
fn out_of_range_before_the_leader_start_restarts_the_log_there() {
    let mut full = ModelLog::default();
    full.append_leader(0, 0);
    full.append_leader(0, 0);
    full.append_leader(4, 1);
    let leader = ModelLeader { log: full.with_start(2), epoch: 4, hw: 2 };
    let mut log = ModelLog::from_runs(0, &[(0, 1)]);
    let mut follower = FollowerState::new(Some(2), 4, 0);
    let trace = run(&leader, &mut follower, &mut log, 20);
    assert!(trace.converged);
    assert_eq!(truncations(&trace), vec![FollowerAction::TruncateFullyAndStartAt { offset: 2 }]);
    assert_eq!(log.log_start(), 2);
    assert_eq!(log.batches(), leader.log.batches());
    assert_eq!(follower.hw(), 2);
}

/// AbstractFetcherThreadTest.testFencedTruncation and testFencedFetch.
#[test]
fn fenced_leader_epoch_parks_the_partition_until_new_metadata() {
    let log = ModelLog::from_runs(0, &[(4, 3)]);
    let mut follower = FollowerState::new(Some(2), 5, 0);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    assert_eq!(
        follower.on_epoch_response(&q, Err(error_code::FENCED_LEADER_EPOCH), &log, 0),
        FollowerAction::AwaitMetadata
    );
    assert_eq!(follower.phase(), FetchPhase::AwaitingMetadata);
    assert_eq!(follower.epoch_query(&log, u64::MAX), None);

    let mut follower = FollowerState::new(Some(2), 5, 0);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    follower.on_epoch_response(&q, Ok(EpochEndOffset { epoch: 4, end_offset: 3 }), &log, 0);
    let q = follower.fetch_query(&log, 0).expect("fetch");
    let fenced = FetchResponse {
        error: error_code::FENCED_LEADER_EPOCH,
        high_watermark: -1,
        diverging_epoch: None,
        has_records: false,
    };
    assert_eq!(follower.on_fetch_response(&q, &fenced, &log, 0), FollowerAction::AwaitMetadata);
    assert_eq!(follower.fetch_query(&log, u64::MAX), None);

    let mut leaderless = FollowerState::new(None, 6, 0);
    assert_eq!(leaderless.phase(), FetchPhase::AwaitingMetadata);
    assert_eq!(leaderless.epoch_query(&log, 0), None);
}

/// AbstractFetcherThreadTest.testUnknownLeaderEpochInTruncation and
/// testUnknownLeaderEpochWhileFetching.
#[test]
fn retriable_errors_back_off_then_retry_the_same_request() {
    for error in [error_code::UNKNOWN_LEADER_EPOCH, error_code::NOT_LEADER_OR_FOLLOWER, error_code::UNKNOWN_TOPIC_ID] {
        let log = ModelLog::from_runs(0, &[(4, 3)]);
        let mut follower = FollowerState::new(Some(2), 5, 0);
        let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 100) else { panic!("epoch query") };
        assert_eq!(follower.on_epoch_response(&q, Err(error), &log, 100), FollowerAction::Backoff { until_ms: 1100 });
        assert_eq!(follower.epoch_query(&log, 1099), None, "{error}");
        assert_eq!(follower.epoch_query(&log, 1100), Some(TruncatingStep::Ask(q)), "{error}");
        follower.on_epoch_response(&q, Ok(EpochEndOffset { epoch: 4, end_offset: 3 }), &log, 1100);

        let q = follower.fetch_query(&log, 2000).expect("fetch");
        let failed = FetchResponse { error, high_watermark: -1, diverging_epoch: None, has_records: false };
        assert_eq!(follower.on_fetch_response(&q, &failed, &log, 2000), FollowerAction::Backoff { until_ms: 3000 });
        assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 3, last_fetched_epoch: Some(4) }, "{error}");
        assert_eq!(follower.fetch_query(&log, 2999), None, "{error}");
        assert_eq!(follower.fetch_query(&log, 3000), Some(q), "{error}");
    }
}

#[test]
fn an_epoch_answer_above_the_asked_epoch_is_not_trusted() {
    let log = ModelLog::from_runs(0, &[(4, 3)]);
    let mut follower = FollowerState::new(Some(2), 5, 0);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    let bogus = Ok(EpochEndOffset { epoch: 5, end_offset: 1 });
    assert_eq!(follower.on_epoch_response(&q, bogus, &log, 0), FollowerAction::Backoff { until_ms: 1000 });
    assert_eq!(follower.phase(), FetchPhase::Truncating);
}

#[test]
fn appended_records_move_the_fetch_offset_epoch_and_hw() {
    for (leader_hw, want_hw) in [(9, 5), (4, 4)] {
        let log = ModelLog::default();
        let mut follower = FollowerState::new(Some(2), 5, 0);
        let empty_log_step = Some(TruncatingStep::Act(FollowerAction::Continue));
        assert_eq!(follower.epoch_query(&log, 0), empty_log_step);
        let q = follower.fetch_query(&log, 0).expect("fetch");
        let ok = FetchResponse { error: 0, high_watermark: leader_hw, diverging_epoch: None, has_records: true };
        assert_eq!(follower.on_fetch_response(&q, &ok, &log, 0), FollowerAction::Append { expected_base: 0 });
        assert_eq!(follower.fetch_query(&log, 0), None, "append in flight");
        follower.on_appended(5, 3);
        assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 5, last_fetched_epoch: Some(3) });
        assert_eq!(follower.hw(), want_hw);
    }
}

#[test]
fn rejected_appends_refetch_or_recheck_divergence() {
    let mut log = ModelLog::from_runs(0, &[(4, 3)]);
    let mut follower = FollowerState::new(Some(2), 5, 0);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    follower.on_epoch_response(&q, Ok(EpochEndOffset { epoch: 4, end_offset: 3 }), &log, 0);
    let ok = FetchResponse { error: 0, high_watermark: 3, diverging_epoch: None, has_records: true };

    let q = follower.fetch_query(&log, 0).expect("fetch");
    follower.on_fetch_response(&q, &ok, &log, 0);
    // Something else appended meanwhile (a driver race): refetch from the end.
    log.append_leader(4, 0);
    assert_eq!(follower.on_append_rejected(AppendRejection::NotContiguous, &log, 0), FollowerAction::Continue);
    assert_eq!(follower.phase(), FetchPhase::Fetching { offset: 4, last_fetched_epoch: Some(4) });

    let q = follower.fetch_query(&log, 0).expect("fetch");
    follower.on_fetch_response(&q, &ok, &log, 0);
    assert_eq!(
        follower.on_append_rejected(AppendRejection::Invalid, &log, 0),
        FollowerAction::Backoff { until_ms: 1000 }
    );
    assert_eq!(follower.phase(), FetchPhase::Truncating);
}

// ---------------------------------------------------------------------------
// Role transitions (design 7.6)
// ---------------------------------------------------------------------------

#[test]
fn role_change_table() {
    let reg = |replicas: &[BrokerId], leader: BrokerId, leader_epoch: i32, partition_epoch: i32| PartitionAssignment {
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader,
        leader_epoch,
        partition_epoch,
    };
    let a = reg(&[1, 2, 3], 1, 5, 10);
    let cases: Vec<(&str, Option<PartitionAssignment>, Option<PartitionAssignment>, RoleChange)> = vec![
        ("new partition, we lead", None, Some(a.clone()), RoleChange::BecomeLeader),
        ("new partition, 2 leads", None, Some(reg(&[1, 2], 2, 0, 0)), RoleChange::BecomeFollower { leader: Some(2) }),
        ("new partition, no leader", None, Some(reg(&[1, 2], -1, 0, 0)), RoleChange::BecomeFollower { leader: None }),
        (
            "added as replica",
            Some(reg(&[2, 3], 2, 5, 10)),
            Some(reg(&[2, 3, 1], 2, 5, 11)),
            RoleChange::BecomeFollower { leader: Some(2) },
        ),
        ("elected", Some(reg(&[1, 2, 3], 2, 5, 10)), Some(reg(&[1, 2, 3], 1, 6, 11)), RoleChange::BecomeLeader),
        ("re-elected, new epoch", Some(a.clone()), Some(reg(&[1, 2, 3], 1, 6, 11)), RoleChange::BecomeLeader),
        (
            "lost leadership",
            Some(a.clone()),
            Some(reg(&[1, 2, 3], 3, 6, 11)),
            RoleChange::BecomeFollower { leader: Some(3) },
        ),
        (
            "same leader, new epoch",
            Some(reg(&[1, 2], 2, 5, 10)),
            Some(reg(&[1, 2], 2, 6, 11)),
            RoleChange::BecomeFollower { leader: Some(2) },
        ),
        (
            "leader lost",
            Some(reg(&[1, 2], 2, 5, 10)),
            Some(reg(&[1, 2], -1, 6, 11)),
            RoleChange::BecomeFollower { leader: None },
        ),
        ("ISR change, we lead", Some(a.clone()), Some(reg(&[1, 2, 3], 1, 5, 11)), RoleChange::IsrChanged),
        ("ISR change, we follow", Some(reg(&[1, 2], 2, 5, 10)), Some(reg(&[1, 2], 2, 5, 11)), RoleChange::NoChange),
        ("same registration", Some(a.clone()), Some(a.clone()), RoleChange::NoChange),
        ("removed from replicas", Some(a.clone()), Some(reg(&[2, 3], 2, 6, 11)), RoleChange::Stop),
        ("topic deleted", Some(a.clone()), None, RoleChange::Stop),
        ("not ours", Some(reg(&[2, 3], 2, 5, 10)), Some(reg(&[2, 3], 3, 6, 11)), RoleChange::NoChange),
        ("not ours, created", None, Some(reg(&[2, 3], 2, 0, 0)), RoleChange::NoChange),
        ("not ours, deleted", Some(reg(&[2, 3], 2, 0, 0)), None, RoleChange::NoChange),
    ];
    for (name, old, new, want) in cases {
        assert_eq!(role_change(LOCAL, old.as_ref(), new.as_ref()), want, "{name}");
    }
}

#[test]
#[should_panic(expected = "leader epoch went back")]
fn role_change_refuses_an_image_going_back() {
    let new =
        PartitionAssignment { replicas: vec![1, 2], isr: vec![1, 2], leader: 2, leader_epoch: 4, partition_epoch: 9 };
    let old = PartitionAssignment { leader_epoch: 5, partition_epoch: 8, ..new.clone() };
    role_change(LOCAL, Some(&old), Some(&new));
}

/// 512 cases each; shrinking capped so a failure reports in seconds on a
/// shared 2-core machine rather than after minutes of minimisation.
fn proptest_config() -> ProptestConfig {
    ProptestConfig { cases: 512, max_shrink_iters: 2048, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------
// Property: the leader's HW under random histories
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum LeaderOp {
    Append(u8),
    /// Follower `0 -> 2`, `1 -> 3` fetches `advance` past its end.
    Fetch {
        follower: u8,
        advance: u8,
    },
    Tick(u16),
    Shrink,
    CommitPending,
    FailPending(i16),
    /// The controller removes a follower from the ISR (it was fenced).
    ControllerRemove(u8),
    SetFenced {
        follower: u8,
        fenced: bool,
    },
}

fn leader_op() -> impl Strategy<Value = LeaderOp> {
    let alter_errors = prop_oneof![
        Just(error_code::OPERATION_NOT_ATTEMPTED),
        Just(error_code::INELIGIBLE_REPLICA),
        Just(error_code::INVALID_UPDATE_VERSION),
        Just(7i16),
    ];
    prop_oneof![
        3 => (1u8..6).prop_map(LeaderOp::Append),
        6 => (0u8..2, 0u8..6).prop_map(|(follower, advance)| LeaderOp::Fetch { follower, advance }),
        2 => (0u16..20_000).prop_map(LeaderOp::Tick),
        1 => Just(LeaderOp::Shrink),
        2 => Just(LeaderOp::CommitPending),
        1 => alter_errors.prop_map(LeaderOp::FailPending),
        1 => (0u8..2).prop_map(LeaderOp::ControllerRemove),
        1 => (0u8..2, any::<bool>()).prop_map(|(follower, fenced)| LeaderOp::SetFenced { follower, fenced }),
    ]
}

#[derive(Clone, Debug)]
struct LeaderCase {
    isr_has: [bool; 2],
    min_isr: usize,
    local_end: Offset,
    follower_hw: Offset,
    ends: [Offset; 2],
    ops: Vec<LeaderOp>,
}

fn leader_case() -> impl Strategy<Value = LeaderCase> {
    (any::<[bool; 2]>(), 1usize..=3, 0i64..20)
        .prop_flat_map(|(isr_has, min_isr, local_end)| (Just(isr_has), Just(min_isr), Just(local_end), 0..=local_end))
        .prop_flat_map(|(isr_has, min_isr, local_end, follower_hw)| {
            // An ISR member holds at least what the previous leader committed;
            // anyone else may hold anything.
            let end = |in_isr: bool| if in_isr { follower_hw..=local_end } else { 0..=local_end };
            (
                Just((isr_has, min_isr, local_end, follower_hw)),
                end(isr_has[0]),
                end(isr_has[1]),
                prop::collection::vec(leader_op(), 1..120),
            )
        })
        .prop_map(|((isr_has, min_isr, local_end, follower_hw), e2, e3, ops)| LeaderCase {
            isr_has,
            min_isr,
            local_end,
            follower_hw,
            ends: [e2, e3],
            ops,
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Within one leader epoch the HW never moves back, never passes the
    /// leader's end nor the end of any maximal-ISR member, and never moves
    /// while the committed ISR is under min ISR.
    #[test]
    fn leader_hw_is_monotonic_and_bounded_by_the_maximal_isr(case in leader_case()) {
        let followers = [2, 3];
        let mut b = brokers(&[1, 2, 3]);
        let mut isr = vec![LOCAL];
        isr.extend(followers.iter().zip(case.isr_has).filter(|(_, has)| *has).map(|(id, _)| *id));
        let config = LeaderConfig { min_insync_replicas: case.min_isr, replica_lag_time_max_ms: 10_000 };
        let start = LeaderStart {
            log_start: 0,
            local_end: case.local_end,
            follower_hw: case.follower_hw,
            local_broker_epoch: broker_epoch(LOCAL),
            now_ms: 0,
        };
        let mut leader = LeaderState::new(LOCAL, &assignment(&[1, 2, 3], &isr, 1), config, start, &b);
        let mut ends = case.ends;
        let mut local_end = case.local_end;
        let mut now_ms = 0u64;
        let mut partition_epoch = 1;
        for op in &case.ops {
            let hw_before = leader.hw();
            let under_before = leader.is_under_min_isr();
            match *op {
                LeaderOp::Append(n) => {
                    local_end += i64::from(n);
                    leader.on_local_end(local_end, now_ms, &b);
                }
                LeaderOp::Fetch { follower, advance } => {
                    let i = usize::from(follower);
                    ends[i] = (ends[i] + i64::from(advance)).min(local_end);
                    let fetch = FollowerFetch {
                        replica: followers[i],
                        fetch_offset: ends[i],
                        log_start: 0,
                        broker_epoch: broker_epoch(followers[i]),
                        leader_end: local_end,
                        now_ms,
                    };
                    leader.on_follower_fetch(fetch, &b).expect("fetch recorded");
                }
                LeaderOp::Tick(ms) => now_ms += u64::from(ms),
                LeaderOp::Shrink => {
                    leader.maybe_shrink(now_ms);
                }
                LeaderOp::CommitPending => {
                    if let Some(change) = leader.pending().cloned() {
                        partition_epoch += 1;
                        let new_isr: Vec<BrokerId> = change.request().new_isr.iter().map(|m| m.broker).collect();
                        leader.on_partition_change(&assignment(&[1, 2, 3], &new_isr, partition_epoch), now_ms, &b);
                    }
                }
                LeaderOp::FailPending(error) => {
                    if let Some(change) = leader.pending().cloned() {
                        leader.on_alter_failed(&change, error, now_ms, &b);
                    }
                }
                LeaderOp::ControllerRemove(follower) => {
                    let id = followers[usize::from(follower)];
                    if leader.committed_isr().contains(&id) {
                        partition_epoch += 1;
                        let new_isr: Vec<BrokerId> =
                            leader.committed_isr().iter().copied().filter(|&m| m != id).collect();
                        leader.on_partition_change(&assignment(&[1, 2, 3], &new_isr, partition_epoch), now_ms, &b);
                    }
                }
                LeaderOp::SetFenced { follower, fenced } => {
                    b.get_mut(&followers[usize::from(follower)]).unwrap().fenced = fenced;
                }
            }
            let hw = leader.hw();
            prop_assert!(hw >= hw_before, "HW moved back from {} to {} at {:?}", hw_before, hw, op);
            prop_assert!(hw <= local_end, "HW {} past leader end {}", hw, local_end);
            for (i, id) in followers.iter().enumerate() {
                if leader.maximal_isr().contains(id) {
                    prop_assert!(hw <= ends[i], "HW {} past ISR member {}'s end {} after {:?}", hw, id, ends[i], op);
                }
            }
            if under_before && leader.is_under_min_isr() {
                prop_assert_eq!(hw, hw_before, "HW moved under min ISR at {:?}", op);
            }
            prop_assert!(leader.ack_status(hw) != AckStatus::Pending);
            prop_assert_eq!(leader.ack_status(hw + 1), AckStatus::Pending);
        }
    }
}

// ---------------------------------------------------------------------------
// Property: a follower converges on its leader from a diverged history
// ---------------------------------------------------------------------------

/// Two logs that agree on a prefix and then diverge the way Kafka histories
/// can: after the prefix's last epoch `p`, one side may hold more of `p`
/// (it fetched further from p's leader); then each side holds data of epochs
/// the other never had (disjoint sets above `p`); finally the leader opened
/// its current epoch, above all of them.
#[derive(Clone, Debug)]
struct Histories {
    prefix: Vec<(LeaderEpoch, usize)>,
    leader_suffix: Vec<(LeaderEpoch, usize)>,
    follower_suffix: Vec<(LeaderEpoch, usize)>,
    leader_epoch: LeaderEpoch,
    follower_hw: Offset,
}

fn histories() -> impl Strategy<Value = Histories> {
    (
        prop::collection::vec((0i32..3, 1usize..4), 0..4),
        (any::<bool>(), 0usize..3),
        prop::collection::vec((any::<bool>(), 1usize..4), 0..5),
        any::<u64>(),
    )
        .prop_map(|(prefix_runs, (ext_to_leader, ext), suffix_runs, hw_seed)| {
            let mut prefix = Vec::new();
            let mut epoch = 0;
            for (bump, count) in prefix_runs {
                epoch += bump;
                prefix.push((epoch, count));
            }
            let mut leader_suffix = Vec::new();
            let mut follower_suffix = Vec::new();
            if let Some(&(p, _)) = prefix.last() {
                if ext > 0 {
                    if ext_to_leader { &mut leader_suffix } else { &mut follower_suffix }.push((p, ext));
                }
            }
            for (to_leader, count) in suffix_runs {
                epoch += 1;
                if to_leader { &mut leader_suffix } else { &mut follower_suffix }.push((epoch, count));
            }
            let prefix_len: usize = prefix.iter().map(|&(_, n)| n).sum();
            let follower_hw = (hw_seed % (prefix_len as u64 + 1)) as Offset;
            Histories { prefix, leader_suffix, follower_suffix, leader_epoch: epoch + 1, follower_hw }
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    /// The truncation rule, the leader's fetch check and the follower state
    /// machine together: the follower ends with exactly the leader's log and
    /// never cuts below what the two logs agree on.
    #[test]
    fn follower_converges_on_the_leader_log(h in histories()) {
        let mut leader_log = ModelLog::default();
        let mut log = ModelLog::default();
        for &(epoch, count) in &h.prefix {
            for _ in 0..count {
                leader_log.append_leader(epoch, 0);
                log.append_leader(epoch, 0);
            }
        }
        let agreed = log.log_end();
        for &(epoch, count) in &h.leader_suffix {
            for _ in 0..count {
                leader_log.append_leader(epoch, 1);
            }
        }
        for &(epoch, count) in &h.follower_suffix {
            for _ in 0..count {
                log.append_leader(epoch, 2);
            }
        }
        leader_log.assign_epoch(h.leader_epoch);
        let leader = ModelLeader { hw: leader_log.log_end(), log: leader_log, epoch: h.leader_epoch };
        let mut follower = FollowerState::new(Some(2), h.leader_epoch, h.follower_hw);
        let trace = run(&leader, &mut follower, &mut log, 200);
        prop_assert!(trace.converged, "no convergence: {:?}", trace.actions);
        prop_assert_eq!(log.batches(), leader.log.batches());
        for t in truncations(&trace) {
            if let FollowerAction::Truncate { to } = t {
                prop_assert!(to >= agreed, "truncated to {} below the agreed prefix {}", to, agreed);
            } else {
                prop_assert!(false, "unexpected {:?}", t);
            }
        }
        prop_assert_eq!(follower.hw(), leader.log.log_end());
    }
}

/// Defence in depth: even if the epoch round were answered wrongly (a leader
/// claiming our epoch 2 ran to 4), the leader's check of `last_fetched_epoch`
/// on the first fetch finds the divergence, and nothing diverged is kept.
#[test]
fn fetch_check_catches_divergence_the_epoch_round_missed() {
    let leader = leader_with(&[(0, 2), (3, 2)], 4, 0, 4);
    let mut log = ModelLog::from_runs(0, &[(0, 2), (2, 2)]);
    let mut follower = FollowerState::new(Some(2), 4, 0);
    let Some(TruncatingStep::Ask(q)) = follower.epoch_query(&log, 0) else { panic!("epoch query") };
    let wrong = EpochEndOffset { epoch: 2, end_offset: 4 };
    assert_eq!(follower.on_epoch_response(&q, Ok(wrong), &log, 0), FollowerAction::Continue);
    let trace = run(&leader, &mut follower, &mut log, 20);
    assert!(trace.converged);
    assert_eq!(trace.fetches[0].last_fetched_epoch, Some(2));
    assert_eq!(truncations(&trace), vec![FollowerAction::Truncate { to: 2 }]);
    assert_eq!(log.batches(), leader.log.batches());
}
