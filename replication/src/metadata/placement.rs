//! Where a new topic's replicas go: Kafka's striped rack-aware placer
//! (`metadata/.../placement/StripedReplicaPlacer.java`), and the checks on a manual assignment.
//!
//! Racks are sorted (no rack sorts first) and visited round robin; within a rack, brokers are visited
//! round robin, unfenced ones before fenced ones. Each partition starts one rack further on and each
//! rack's brokers one broker further on, which gives the "striped" layout and spreads leaders evenly.
//! The first replica (the preferred leader) is always unfenced. Once as many partitions as there are
//! unfenced brokers have been placed, the rack order and each rack's broker order are shuffled so
//! larger topics do not repeat the same replica sets.
//!
//! The randomness (start rack, start broker per rack, shuffles) comes from a caller-given seed, so
//! placement is a pure function: the controller draws the seed, the simulator replays it. Why not
//! deterministic starts: every topic would then lead on the same broker first.

use std::collections::BTreeMap;

use crate::types::BrokerId;

use super::image::MetadataImage;

/// Kafka's INVALID_REPLICATION_FACTOR.
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
/// Kafka's INVALID_REPLICA_ASSIGNMENT.
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;

/// A broker the placer may use: registered and not in controlled shutdown
/// ([`MetadataImage::usable_brokers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsableBroker {
    pub id: BrokerId,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// Why replicas cannot be placed. The messages are Kafka's, word for word: clients show them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("Invalid replication factor {0}: the replication factor must be positive.")]
    NonPositiveReplicationFactor(i32),
    #[error("All brokers are currently fenced.")]
    AllBrokersFenced,
    #[error(
        "The target replication factor of {replication_factor} cannot be reached because only {registered} broker(s) are registered."
    )]
    TooFewBrokers { replication_factor: i32, registered: usize },
}

impl PlacementError {
    /// The Kafka error code: INVALID_REPLICATION_FACTOR for all of them.
    pub fn code(&self) -> i16 {
        INVALID_REPLICATION_FACTOR
    }
}

/// Replicas for `partition_count` new partitions, each a list of `replication_factor` distinct
/// brokers whose first is unfenced. Checks in Kafka's order: factor positive, some broker unfenced,
/// enough brokers.
///
/// # Panics
/// If `brokers` lists an id twice (the image cannot produce that).
pub fn place_replicas(
    brokers: &[UsableBroker],
    partition_count: u32,
    replication_factor: i32,
    seed: u64,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if replication_factor <= 0 {
        return Err(PlacementError::NonPositiveReplicationFactor(replication_factor));
    }
    let unfenced_count = brokers.iter().filter(|b| !b.fenced).count();
    if unfenced_count == 0 {
        return Err(PlacementError::AllBrokersFenced);
    }
    let rf = usize::try_from(replication_factor).expect("positive i32 fits usize");
    if rf > brokers.len() {
        return Err(PlacementError::TooFewBrokers { replication_factor, registered: brokers.len() });
    }
    let mut ids: Vec<BrokerId> = brokers.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), brokers.len(), "a broker is listed twice in the placer's input");

    let mut racks = RackList::new(brokers, unfenced_count, SplitMix64(seed));
    Ok((0..partition_count).map(|_| racks.place(rf)).collect())
}

/// Kafka's `validateManualPartitionAssignment` for one partition: non-empty, every broker registered,
/// none twice (checked in ascending id order, as Kafka does, so the message names the lowest
/// offender), and as many replicas as the partitions before it (`replication_factor`, if any).
pub fn validate_manual_assignment(
    image: &MetadataImage,
    replicas: &[BrokerId],
    replication_factor: Option<usize>,
) -> Result<(), AssignmentError> {
    if replicas.is_empty() {
        return Err(AssignmentError::EmptyReplicaList);
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    let mut previous = None;
    for id in sorted {
        if image.broker(id).is_none() {
            return Err(AssignmentError::UnregisteredBroker(id));
        }
        if previous == Some(id) {
            return Err(AssignmentError::DuplicateBroker(id));
        }
        previous = Some(id);
    }
    match replication_factor {
        Some(expected) if expected != replicas.len() => {
            Err(AssignmentError::InconsistentReplicationFactor { found: replicas.len(), expected })
        }
        _ => Ok(()),
    }
}

/// [`validate_manual_assignment`] over a topic's partitions in order: the first sets the factor the
/// others must match.
pub fn validate_manual_assignments(
    image: &MetadataImage,
    assignments: &[Vec<BrokerId>],
) -> Result<(), AssignmentError> {
    let expected = assignments.first().map(Vec::len);
    assignments.iter().try_for_each(|replicas| validate_manual_assignment(image, replicas, expected))
}

/// Why a manual assignment is refused. Kafka's messages, word for word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("The manual partition assignment includes an empty replica list.")]
    EmptyReplicaList,
    #[error("The manual partition assignment includes broker {0}, but no such broker is registered.")]
    UnregisteredBroker(BrokerId),
    #[error("The manual partition assignment includes the broker {0} more than once.")]
    DuplicateBroker(BrokerId),
    #[error(
        "The manual partition assignment includes a partition with {found} replica(s), but this is not consistent with previous partitions, which have {expected} replica(s)."
    )]
    InconsistentReplicationFactor { found: usize, expected: usize },
}

impl AssignmentError {
    /// The Kafka error code: INVALID_REPLICA_ASSIGNMENT for all of them.
    pub fn code(&self) -> i16 {
        INVALID_REPLICA_ASSIGNMENT
    }
}

/// SplitMix64: a few lines, no dependency, and good enough to pick start offsets and shuffle.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (the modulo bias is below 2^-40 for any broker count).
    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Kafka's `BrokerList`: a round robin over brokers with a start offset that moves by one each time
/// a new iteration (a new partition) first touches the list.
struct BrokerList {
    brokers: Vec<BrokerId>,
    /// Brokers taken in the current iteration.
    taken: usize,
    offset: usize,
    /// The iteration that last touched this list. Kafka restarts its epoch at 0 after a shuffle, so
    /// a list last touched in epoch 0 and not since keeps its stale count and passes its turn,
    /// skewing leadership; iterations here never repeat.
    iteration: Option<u64>,
}

impl BrokerList {
    fn new(mut brokers: Vec<BrokerId>, rng: &mut SplitMix64) -> BrokerList {
        brokers.sort_unstable();
        let offset = if brokers.is_empty() { 0 } else { rng.below(brokers.len()) };
        BrokerList { brokers, taken: 0, offset, iteration: None }
    }

    fn next(&mut self, iteration: u64) -> Option<BrokerId> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.iteration != Some(iteration) {
            self.iteration = Some(iteration);
            self.taken = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.taken >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.taken + self.offset) % self.brokers.len()];
        self.taken += 1;
        Some(broker)
    }
}

struct Rack {
    unfenced: BrokerList,
    fenced: BrokerList,
}

impl Rack {
    /// Unfenced brokers first; fenced ones only once this rack's unfenced ones are used up.
    fn next(&mut self, iteration: u64) -> Option<BrokerId> {
        self.unfenced.next(iteration).or_else(|| self.fenced.next(iteration))
    }
}

/// Kafka's `RackList`.
struct RackList {
    rng: SplitMix64,
    racks: Vec<Rack>,
    /// Indexes into `racks` in visiting order (sorted by name until the first shuffle).
    order: Vec<usize>,
    unfenced_count: usize,
    /// Partitions placed so far: the iteration id handed to the broker lists.
    iteration: u64,
    /// Partitions placed since the last shuffle (Kafka's `epoch`).
    since_shuffle: usize,
    /// Position in `order` the next partition starts from.
    offset: usize,
}

impl RackList {
    fn new(brokers: &[UsableBroker], unfenced_count: usize, mut rng: SplitMix64) -> RackList {
        // BTreeMap: racks sorted by name, `None` first (Kafka's OptionalStringComparator).
        let mut by_rack: BTreeMap<Option<&str>, (Vec<BrokerId>, Vec<BrokerId>)> = BTreeMap::new();
        for broker in brokers {
            let (unfenced, fenced) = by_rack.entry(broker.rack.as_deref()).or_default();
            if broker.fenced { fenced } else { unfenced }.push(broker.id);
        }
        let racks: Vec<Rack> = by_rack
            .into_values()
            .map(|(unfenced, fenced)| {
                let fenced = BrokerList::new(fenced, &mut rng);
                let unfenced = BrokerList::new(unfenced, &mut rng);
                Rack { unfenced, fenced }
            })
            .collect();
        let offset = rng.below(racks.len());
        let order = (0..racks.len()).collect();
        RackList { rng, racks, order, unfenced_count, iteration: 0, since_shuffle: 0, offset }
    }

    fn rack(&mut self, position: usize) -> &mut Rack {
        &mut self.racks[self.order[position]]
    }

    fn place(&mut self, rf: usize) -> Vec<BrokerId> {
        // After as many partitions as unfenced brokers, shuffle so the next round does not repeat
        // the same replica sets (never with one unfenced broker: nothing to vary).
        if self.since_shuffle == self.unfenced_count && self.unfenced_count > 1 {
            self.rng.shuffle(&mut self.order);
            for rack in &mut self.racks {
                self.rng.shuffle(&mut rack.unfenced.brokers);
                self.rng.shuffle(&mut rack.fenced.brokers);
            }
            self.since_shuffle = 0;
        }
        let rack_count = self.order.len();
        if self.offset == rack_count {
            self.offset = 0;
        }
        let iteration = self.iteration;
        let mut replicas = Vec::with_capacity(rf);

        // The leader: the first rack from `offset` on with an unfenced broker left. One exists
        // because some broker is unfenced and nothing has been taken yet in this iteration.
        let mut leader_rack = self.offset;
        loop {
            if let Some(broker) = self.rack(leader_rack).unfenced.next(iteration) {
                replicas.push(broker);
                break;
            }
            leader_rack = (leader_rack + 1) % rack_count;
        }

        // The followers: racks round robin from `offset`, skipping the leader's rack on the first
        // pass so every rack gets one replica before any gets two. Terminates because
        // rf <= brokers and each rack yields all its brokers once per iteration.
        let mut skip = Some(leader_rack);
        let mut position = self.offset;
        while replicas.len() < rf {
            let candidate = if skip == Some(position) {
                skip = None;
                None
            } else {
                self.rack(position).next(iteration)
            };
            if let Some(broker) = candidate {
                replicas.push(broker);
            }
            position = (position + 1) % rack_count;
        }

        self.iteration += 1;
        self.since_shuffle += 1;
        self.offset += 1;
        replicas
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::metadata::image::tests::image_with;

    fn brokers(spec: &[(BrokerId, Option<&str>, bool)]) -> Vec<UsableBroker> {
        spec.iter().map(|&(id, rack, fenced)| UsableBroker { id, rack: rack.map(str::to_owned), fenced }).collect()
    }

    fn unfenced(ids: impl IntoIterator<Item = BrokerId>) -> Vec<UsableBroker> {
        ids.into_iter().map(|id| UsableBroker { id, rack: None, fenced: false }).collect()
    }

    fn leader_counts(placement: &[Vec<BrokerId>]) -> BTreeMap<BrokerId, usize> {
        let mut counts = BTreeMap::new();
        for replicas in placement {
            *counts.entry(replicas[0]).or_default() += 1;
        }
        counts
    }

    #[test]
    fn errors_carry_kafkas_messages_in_kafkas_order() {
        let two = unfenced([1, 2]);
        assert_eq!(
            place_replicas(&two, 1, 3, 0).unwrap_err().to_string(),
            "The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        );
        assert_eq!(
            place_replicas(&two, 1, 0, 0).unwrap_err().to_string(),
            "Invalid replication factor 0: the replication factor must be positive."
        );
        assert_eq!(place_replicas(&two, 1, -1, 0), Err(PlacementError::NonPositiveReplicationFactor(-1)));
        let fenced = brokers(&[(1, None, true), (2, None, true)]);
        assert_eq!(place_replicas(&fenced, 1, 1, 0).unwrap_err().to_string(), "All brokers are currently fenced.");
        // All fenced is checked before too few brokers; no brokers at all counts as all fenced.
        assert_eq!(place_replicas(&fenced, 1, 3, 0), Err(PlacementError::AllBrokersFenced));
        assert_eq!(place_replicas(&[], 1, 1, 0), Err(PlacementError::AllBrokersFenced));
        for err in [PlacementError::AllBrokersFenced, PlacementError::NonPositiveReplicationFactor(0)] {
            assert_eq!(err.code(), 38);
        }
    }

    #[test]
    fn without_racks_leaders_rotate_over_every_broker() {
        let placement = place_replicas(&unfenced(1..=5), 50, 3, 42).unwrap();
        assert_eq!(placement.len(), 50);
        // Every run of 5 partitions has 5 different leaders, so each broker leads exactly 10.
        for round in placement.chunks(5) {
            let leaders: BTreeSet<_> = round.iter().map(|r| r[0]).collect();
            assert_eq!(leaders, (1..=5).collect());
        }
        assert!(leader_counts(&placement).values().all(|&n| n == 10));
        for replicas in &placement {
            assert_eq!(replicas.len(), 3);
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn first_round_is_striped() {
        // Before any shuffle, replicas follow the sorted broker order from a start that moves by
        // one per partition: [s, s+1, s+2], [s+1, s+2, s+3], ...
        let placement = place_replicas(&unfenced([30, 10, 20, 40]), 4, 3, 7).unwrap();
        let order = [10, 20, 30, 40];
        let start = order.iter().position(|&b| b == placement[0][0]).unwrap();
        for (p, replicas) in placement.iter().enumerate() {
            let expected: Vec<_> = (0..3).map(|i| order[(start + p + i) % 4]).collect();
            assert_eq!(replicas, &expected, "partition {p}");
        }
    }

    #[test]
    fn same_seed_same_placement() {
        let input =
            brokers(&[(1, Some("a"), false), (2, Some("b"), false), (3, Some("a"), true), (4, Some("c"), false)]);
        assert_eq!(place_replicas(&input, 20, 3, 9).unwrap(), place_replicas(&input, 20, 3, 9).unwrap());
        let starts: BTreeSet<_> = (0..20).map(|seed| place_replicas(&input, 1, 3, seed).unwrap()).collect();
        assert!(starts.len() > 1, "the seed must move the start: {starts:?}");
    }

    #[test]
    fn replicas_span_racks_and_leaders_spread_over_racks() {
        let input = brokers(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), false),
            (5, Some("c"), false),
            (6, Some("c"), false),
        ]);
        let rack_of: BTreeMap<_, _> = input.iter().map(|b| (b.id, b.rack.clone().unwrap())).collect();
        let placement = place_replicas(&input, 600, 3, 1).unwrap();
        for replicas in &placement {
            let racks: BTreeSet<_> = replicas.iter().map(|b| &rack_of[b]).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
        let counts = leader_counts(&placement);
        assert_eq!(counts.len(), 6);
        for (&broker, &n) in &counts {
            assert!((80..=120).contains(&n), "broker {broker} leads {n} of 600: {counts:?}");
        }
    }

    #[test]
    fn leaders_balance_across_single_broker_racks_after_a_shuffle() {
        // Regression: with Kafka's epoch numbering (back to 0 after each shuffle), a rack whose
        // broker led the first partition of a round and was not touched since kept its count and
        // was skipped when the next round reached it first, so another rack led twice.
        let input = brokers(&[(1, Some("a"), false), (2, Some("b"), false), (3, Some("c"), false)]);
        for seed in 0..50 {
            let placement = place_replicas(&input, 30, 1, seed).unwrap();
            for round in placement.chunks(3) {
                let leaders: BTreeSet<_> = round.iter().map(|r| r[0]).collect();
                assert_eq!(leaders, BTreeSet::from([1, 2, 3]), "seed {seed}: {placement:?}");
            }
        }
    }

    #[test]
    fn unfenced_brokers_are_used_before_fenced_ones() {
        let input = brokers(&[(1, None, false), (2, None, true), (3, None, false), (4, None, false), (5, None, true)]);
        for replicas in place_replicas(&input, 30, 3, 5).unwrap() {
            assert!(replicas.iter().all(|b| [1, 3, 4].contains(b)), "{replicas:?}");
        }
        for replicas in place_replicas(&input, 30, 4, 5).unwrap() {
            assert!(![2, 5].contains(&replicas[0]), "leader fenced: {replicas:?}");
            assert_eq!(replicas.iter().filter(|b| [2, 5].contains(b)).count(), 1, "{replicas:?}");
        }
    }

    #[test]
    fn a_single_unfenced_broker_leads_everything() {
        // Kafka's KAFKA-14060 case: one unfenced broker must not loop forever.
        let input = brokers(&[(1, None, true), (2, None, false), (3, None, true)]);
        let placement = place_replicas(&input, 10, 3, 3).unwrap();
        assert!(placement.iter().all(|r| r[0] == 2 && r.len() == 3));
    }

    #[test]
    fn leader_comes_from_another_rack_when_the_start_rack_is_all_fenced() {
        let input = brokers(&[(1, Some("a"), true), (2, Some("b"), false), (3, Some("c"), false)]);
        for seed in 0..20 {
            for replicas in place_replicas(&input, 6, 3, seed).unwrap() {
                assert_ne!(replicas[0], 1);
                assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            }
        }
    }

    #[test]
    fn zero_partitions_place_nothing() {
        assert_eq!(place_replicas(&unfenced([1]), 0, 1, 0).unwrap(), Vec::<Vec<BrokerId>>::new());
    }

    #[test]
    fn manual_assignments_are_checked_like_kafka() {
        let image = image_with(&[1, 2], &[]);
        assert_eq!(validate_manual_assignment(&image, &[2, 1], Some(2)), Ok(()));
        assert_eq!(validate_manual_assignment(&image, &[1], None), Ok(()));
        let cases: [(&[BrokerId], Option<usize>, &str); 5] = [
            (&[], None, "The manual partition assignment includes an empty replica list."),
            (&[1, 2, 3], None, "The manual partition assignment includes broker 3, but no such broker is registered."),
            (&[1, 2, 2], None, "The manual partition assignment includes the broker 2 more than once."),
            // Sorted before checking: the lowest offender is named.
            (&[7, 2, 2], None, "The manual partition assignment includes the broker 2 more than once."),
            (
                &[1, 2],
                Some(1),
                "The manual partition assignment includes a partition with 2 replica(s), but this is not consistent with previous partitions, which have 1 replica(s).",
            ),
        ];
        for (replicas, rf, message) in cases {
            let err = validate_manual_assignment(&image, replicas, rf).unwrap_err();
            assert_eq!(err.to_string(), message, "{replicas:?}");
            assert_eq!(err.code(), 39);
        }
        assert_eq!(validate_manual_assignments(&image, &[vec![1, 2], vec![2, 1]]), Ok(()));
        assert_eq!(
            validate_manual_assignments(&image, &[vec![1, 2], vec![2]]),
            Err(AssignmentError::InconsistentReplicationFactor { found: 1, expected: 2 })
        );
    }

    fn broker_set() -> impl Strategy<Value = Vec<UsableBroker>> {
        // Up to 12 brokers with distinct ids, up to 4 racks (or none), some fenced.
        proptest::collection::btree_map(0..100i32, (proptest::option::of(0..4u8), any::<bool>()), 1..12).prop_map(|m| {
            m.into_iter()
                .map(|(id, (rack, fenced))| UsableBroker { id, rack: rack.map(|r| format!("r{r}")), fenced })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn placement_invariants(input in broker_set(), rf in 1..13i32, partitions in 0..40u32, seed in any::<u64>()) {
            let result = place_replicas(&input, partitions, rf, seed);
            let unfenced: BTreeSet<_> = input.iter().filter(|b| !b.fenced).map(|b| b.id).collect();
            if unfenced.is_empty() {
                prop_assert_eq!(result, Err(PlacementError::AllBrokersFenced));
                return Ok(());
            }
            if rf as usize > input.len() {
                let expected = PlacementError::TooFewBrokers { replication_factor: rf, registered: input.len() };
                prop_assert_eq!(result, Err(expected));
                return Ok(());
            }
            let placement = result.unwrap();
            prop_assert_eq!(placement.len(), partitions as usize);
            let rack_of: BTreeMap<_, _> = input.iter().map(|b| (b.id, b.rack.clone())).collect();
            let rack_count = rack_of.values().collect::<BTreeSet<_>>().len();
            for replicas in &placement {
                prop_assert_eq!(replicas.len(), rf as usize);
                let distinct = replicas.iter().collect::<BTreeSet<_>>().len();
                prop_assert_eq!(distinct, rf as usize, "{:?}", replicas);
                prop_assert!(replicas.iter().all(|b| rack_of.contains_key(b)));
                prop_assert!(unfenced.contains(&replicas[0]), "fenced leader: {:?}", replicas);
                // Spread over as many racks as the factor allows: racks come before fencing.
                let racks = replicas.iter().map(|b| &rack_of[b]).collect::<BTreeSet<_>>().len();
                prop_assert_eq!(racks, rack_count.min(rf as usize), "{:?}", replicas);
                // Within one rack, fenced brokers only once the unfenced ones are used up.
                if rack_count == 1 {
                    let fenced_used = replicas.iter().filter(|b| !unfenced.contains(b)).count();
                    let needed = (rf as usize).saturating_sub(unfenced.len());
                    prop_assert_eq!(fenced_used, needed, "{:?}", replicas);
                }
            }
        }

        #[test]
        fn leaders_balance_without_racks(
            n in 1..10usize,
            rounds in 1..6usize,
            rf_seed in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let rf = 1 + (rf_seed % n as u64) as i32;
            let placement = place_replicas(&unfenced(1..=n as i32), (n * rounds) as u32, rf, seed).unwrap();
            let counts = leader_counts(&placement);
            prop_assert_eq!(counts.len(), n);
            prop_assert!(counts.values().all(|&c| c == rounds), "{:?}", counts);
        }
    }
}
