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

/// Found by reading the driver contract while writing simulator v2, not by a seed (the simulator's
/// voters never see a proposal refused while they still lead). The contract says: resign on a
/// refused proposal, and activate whenever the node leads and has applied an entry of its term.
/// net's driver (`net/src/cluster/node.rs`) refuses a proposal when its queue to the quorum driver
/// is full, and still leads afterwards, so its next controller tick activates a second core in
/// the same term. Proposal ids are `(term, seq)` with `seq` from 0 in every core, so the first
/// core's entries, still in the Raft log, commit under ids the second core also hands out: the
/// second core takes the first one's entry for its own oldest proposal and releases that
/// proposal's replies before it commits. Here the released reply is a registration whose broker
/// is not in the image yet, and the core panics resolving it.
///
/// Fixed: a core's proposal ids start at a point drawn from its seed, so the second core does not
/// take the first one's entry for its own (and net's driver also waits for the log to be applied).
#[test]
fn a_second_controller_in_the_same_term_does_not_claim_the_first_ones_entries() {
    use crate::controller::{
        BrokerRegistrationRequest, ControllerConfig, ControllerCore, ControllerRequest, ProposalId,
    };
    use crate::metadata::{MetadataImage, MetadataRecord};

    let term = 5;
    let mut image = MetadataImage::new();
    image.apply(1, &[MetadataRecord::ClusterId { id: "sim".to_string() }]);
    let register = |broker_id, incarnation| {
        ControllerRequest::BrokerRegistration(BrokerRegistrationRequest {
            broker_id,
            incarnation_id: uuid::Uuid::from_u128(incarnation),
            host: format!("10.0.0.{broker_id}"),
            port: 9092,
            rack: None,
            cluster_id: Some("sim".to_string()),
        })
    };

    // The first core proposes a registration of broker 1; Raft accepts it into the log. Its next
    // proposal is refused (the driver's queue is full) and it resigns while the node still leads.
    let mut first = ControllerCore::new(ControllerConfig::new(3), &image, term, 0, 1);
    let first_out = first.handle(1, register(1, 0x11), 0);
    let [in_log] = first_out.proposals.as_slice() else { panic!("one proposal: {first_out:?}") };
    first.resign();

    // Next controller tick: the node leads and has applied an entry of its term, so a second core
    // activates in the same term and proposes a registration of broker 2.
    let mut second = ControllerCore::new(ControllerConfig::new(3), &image, term, 100, 2);
    let second_out = second.handle(1, register(2, 0x22), 100);
    assert_ne!(second_out.proposals[0].id, in_log.id, "both cores named their first proposal alike");

    // The first core's entry commits. It is not the second core's: no reply may be released.
    let delta = image.apply(2, &in_log.records);
    let released = second.on_committed(&image, &delta, ProposalId::from_bytes(&in_log.id.to_bytes()));
    assert!(released.replies.is_empty(), "released before its own entry committed: {released:?}");
}
