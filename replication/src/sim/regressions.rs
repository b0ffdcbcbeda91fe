//! Bugs the simulator found, each pinned by the smallest test that shows it, and the seeds that
//! found them (design 14.5: every regression seed becomes a fixed test).

use super::disk::{Batch, Disk};
use super::world::{Variant, World};
use crate::partition_replica::{
    answer_epoch_query, check_fetch_position, FetchPhase, FetchPosition, FollowerAction, FollowerState, LogView,
    TruncatingStep,
};

/// Seeds that failed before the fix, with what they found. They stay in CI whatever range
/// `sim_seeds` runs. A seed names a run of *this* simulator: changing how the world draws its
/// configuration or orders events sends it elsewhere, so each bug is also pinned by a minimal
/// test below, which does not depend on the simulator.
const REGRESSION_SEEDS: &[(u64, &str)] = &[(0x5eed_006b, "empty leader epoch left after a no-op truncation")];

#[test]
fn sim_regression_seeds_pass() {
    for &(seed, bug) in REGRESSION_SEEDS {
        if let Err(failure) = World::new(seed, Variant::SOUND).run() {
            panic!("regression seed for \"{bug}\" fails again\n{failure}");
        }
    }
}

/// Found by seed 0x5eed000c of the first version (now 0x5eed006b; Liveness: a follower never
/// rejoined the ISR). A broker that became
/// leader at epoch 3 and was deposed before appending anything keeps the entry (3, 5) with no
/// batch behind it. As a follower of the epoch-4 leader it asks about epoch 3, hears "epoch 0 ends
/// at 5", and truncates to 5: its own end. `FollowerState` used to treat that as a no-op and skip
/// the driver's truncation, so the empty entry stayed; every fetch then carried
/// `last_fetched_epoch = 3`, the leader answered "diverging at (0, 5)", and the follower looped on
/// it forever. Kafka's `UnifiedLog.truncateTo` always cuts the epoch cache at the end for exactly
/// this case ("this broker was a leader and inserted the first start offset entry, but then failed
/// to append any entries before another leader was elected").
#[test]
fn deposed_leader_with_an_empty_epoch_rejoins_its_new_leader() {
    let mut leader = Disk::default();
    leader
        .append_replicated(&(0..5).map(|offset| Batch { offset, epoch: 0, content: offset as u64 }).collect::<Vec<_>>())
        .unwrap();
    let mut follower = leader.clone();
    follower.assign_epoch(3); // led epoch 3, appended nothing
    leader.assign_epoch(4);

    let mut state = FollowerState::new(Some(2), 4, 5);
    let mut reads = 0;
    for _ in 0..6 {
        let action = match state.phase() {
            FetchPhase::Truncating => match state.epoch_query(&follower, 0).expect("ready") {
                TruncatingStep::Act(action) => action,
                TruncatingStep::Ask(query) => {
                    let answer = answer_epoch_query(&leader, query.leader_epoch);
                    state.on_epoch_response(&query, Ok(answer), &follower, 0)
                }
            },
            FetchPhase::Fetching { .. } => {
                let query = state.fetch_query(&follower, 0).expect("ready");
                match check_fetch_position(&leader, query.fetch_offset, query.last_fetched_epoch) {
                    FetchPosition::Read => {
                        reads += 1;
                        break;
                    }
                    FetchPosition::Diverging(d) => {
                        let response = crate::partition_replica::FetchResponse {
                            error: crate::partition_replica::error_code::NONE,
                            high_watermark: 5,
                            diverging_epoch: Some(d),
                            has_records: false,
                        };
                        state.on_fetch_response(&query, &response, &follower, 0)
                    }
                    FetchPosition::OutOfRange => panic!("out of range"),
                }
            }
            phase => panic!("unexpected phase {phase:?}"),
        };
        match action {
            FollowerAction::Truncate { to } => {
                follower.truncate_to(to);
                state.on_truncated(&follower);
            }
            FollowerAction::Continue => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reads, 1, "the follower never got past the divergence check: epochs {:?}", follower.epochs());
    assert_eq!(follower.latest_epoch(), Some(0));
}
