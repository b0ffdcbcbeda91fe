//! Who leads a partition after a change, and its new ISR: Kafka's `PartitionChangeBuilder`
//! (`metadata/.../controller/PartitionChangeBuilder.java`) without ELR, reassignment or unclean
//! election.
//!
//! Acceptable leader: registered, unfenced, not in controlled shutdown, not the broker being removed
//! (a broker being unfenced in the same entry counts as acceptable). New leader: the current one if
//! it is still acceptable and in the target ISR, else the first replica in assignment order that is
//! both, else none: the partition stays offline until an ISR member returns. Never a replica outside
//! the ISR: unclean election loses acknowledged records (`unclean.leader.election.enable` is
//! accepted only as false, design 5.3). The target ISR is never empty: removing the last member
//! leaves the ISR as it is (and the partition leaderless), so the broker that has the data is known
//! when it returns.

use std::collections::HashMap;

use crate::metadata::{LeaderChange, MetadataImage, MetadataRecord, PartitionChangeRecord, PartitionRegistration};
use crate::types::{BrokerId, TopicIdPartition};

use super::config::MAX_ELECTIONS_PER_REQUEST;
use super::core::{ElectLeaderError, ElectLeadersRequest, ElectLeadersTopicResult, ElectionType};

/// How to choose among acceptable leaders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    /// Keep the partition online: the current leader if still valid, else the first valid replica.
    Online,
    /// Prefer `replicas[0]` when valid (preferred leader election), else as `Online`.
    Preferred,
}

/// Builds the `PartitionChange` for one partition against an image. Start from
/// [`PartitionChangeBuilder::new`], say what changes, [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct PartitionChangeBuilder<'a> {
    image: &'a MetadataImage,
    tp: TopicIdPartition,
    current: &'a PartitionRegistration,
    target_isr: Vec<BrokerId>,
    removed_broker: Option<BrokerId>,
    added_broker: Option<BrokerId>,
    election: Election,
}

impl<'a> PartitionChangeBuilder<'a> {
    /// `None` if the image has no such partition.
    pub fn new(image: &'a MetadataImage, tp: TopicIdPartition) -> Option<PartitionChangeBuilder<'a>> {
        let current = image.partition(tp)?;
        Some(PartitionChangeBuilder {
            image,
            tp,
            current,
            target_isr: current.isr.clone(),
            removed_broker: None,
            added_broker: None,
            election: Election::Online,
        })
    }

    /// `broker` is fenced, shutting down or unregistering: it may not lead and leaves the ISR
    /// (unless it is the last member, see the module docs).
    pub fn removing_broker(mut self, broker: BrokerId) -> Self {
        self.removed_broker = Some(broker);
        self.target_isr.retain(|&id| id != broker);
        self
    }

    /// `broker` is unfenced by a record in the same entry, which the image has not applied yet:
    /// treat it as acceptable (Kafka's `brokerToAdd`).
    pub fn adding_broker(mut self, broker: BrokerId) -> Self {
        self.added_broker = Some(broker);
        self
    }

    /// The ISR after the change (an AlterPartition request's new ISR). The caller has checked it:
    /// within the replicas, without duplicates.
    pub fn with_target_isr(mut self, isr: Vec<BrokerId>) -> Self {
        self.target_isr = isr;
        self
    }

    pub fn with_election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    fn is_acceptable_leader(&self, broker: BrokerId) -> bool {
        Some(broker) != self.removed_broker
            && (Some(broker) == self.added_broker || self.image.is_active_broker(broker))
    }

    fn is_valid_new_leader(&self, broker: BrokerId) -> bool {
        self.target_isr.contains(&broker) && self.is_acceptable_leader(broker)
    }

    /// The leader after the change; `None` means no leader.
    pub fn elect_leader(&self) -> Option<BrokerId> {
        if self.election == Election::Preferred {
            if let Some(&preferred) = self.current.replicas.first() {
                if self.is_valid_new_leader(preferred) {
                    return Some(preferred);
                }
            }
        }
        if let Some(leader) = self.current.leader {
            if self.is_valid_new_leader(leader) {
                return Some(leader);
            }
        }
        self.current.replicas.iter().copied().find(|&r| self.is_valid_new_leader(r))
    }

    /// The change record, or `None` when neither the leader nor the ISR changes. A new leader (or
    /// none) bumps the leader epoch on apply; any change bumps the partition epoch.
    pub fn build(self) -> Option<MetadataRecord> {
        let new_leader = self.elect_leader();
        let leader = match new_leader {
            _ if new_leader == self.current.leader => LeaderChange::NoChange,
            Some(id) => LeaderChange::Broker(id),
            None => LeaderChange::None,
        };
        // An empty target ISR is not written: the last member stays (no ELR, no unclean election).
        let isr = (!self.target_isr.is_empty() && self.target_isr != self.current.isr).then_some(self.target_isr);
        if leader.is_no_change() && isr.is_none() {
            return None;
        }
        Some(MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: self.tp.topic_id,
            partition: self.tp.partition,
            expected_partition_epoch: self.current.partition_epoch,
            isr,
            leader,
            replicas: None,
        }))
    }
}

/// Changes for every partition with `broker` in its ISR when it is fenced, enters controlled
/// shutdown or unregisters (Kafka's `generateLeaderAndIsrUpdates` with `brokerToRemove`): it leaves
/// each ISR it is not the last member of, and leadership moves away from it.
pub fn changes_removing_broker(image: &MetadataImage, broker: BrokerId) -> Vec<MetadataRecord> {
    image
        .partitions_with_isr_member(broker)
        .into_iter()
        .filter_map(|tp| PartitionChangeBuilder::new(image, tp)?.removing_broker(broker).build())
        .collect()
}

/// Elections for every leaderless partition when `broker` is unfenced in the same entry (Kafka's
/// `handleBrokerUnfenced`). All leaderless partitions are tried, as in Kafka, not only those whose
/// ISR holds `broker`: any ISR member that became acceptable may lead.
pub fn changes_adding_broker(image: &MetadataImage, broker: BrokerId) -> Vec<MetadataRecord> {
    image
        .leaderless_partitions()
        .into_iter()
        .filter_map(|tp| PartitionChangeBuilder::new(image, tp)?.adding_broker(broker).build())
        .collect()
}

/// Preferred-leader elections (Kafka's `maybeBalancePartitionLeaders`, design 5.6): for partitions
/// not led by their first replica, a change to it when it is in the ISR and acceptable. At most `limit` changes; the flag says whether more partitions would change, so the
/// caller runs another round soon instead of waiting a full interval.
pub fn changes_electing_preferred_leaders(image: &MetadataImage, limit: usize) -> (Vec<MetadataRecord>, bool) {
    let mut changes = image
        .partitions()
        .filter(|(_, p)| p.leader != p.replicas.first().copied())
        .filter_map(|(tp, _)| PartitionChangeBuilder::new(image, tp)?.with_election(Election::Preferred).build());
    let records: Vec<MetadataRecord> = changes.by_ref().take(limit).collect();
    let more = changes.next().is_some();
    (records, more)
}

/// ElectLeaders (Kafka's `ReplicationControlManager.electLeaders`): the changes to propose, as one
/// entry, and an outcome per partition asked for. With `topics: None` every partition of every
/// topic is tried and those that need no election are left out of the results. A partition named
/// twice is elected once; the repeat gets the same outcome. More than
/// [`MAX_ELECTIONS_PER_REQUEST`] elections refuse the whole request, as Kafka's bounded record list
/// does: nothing is elected and every partition that would have been gets
/// [`ElectLeaderError::TooManyElections`].
pub fn elect_leaders(
    image: &MetadataImage,
    request: &ElectLeadersRequest,
) -> (Vec<MetadataRecord>, Vec<ElectLeadersTopicResult>) {
    let mut records = Vec::new();
    let mut decided: HashMap<(String, i32), Result<(), ElectLeaderError>> = HashMap::new();
    let mut elect = |name: &str, partition: i32| {
        decided
            .entry((name.to_string(), partition))
            .or_insert_with(|| {
                let record = elect_leader(image, name, partition, request.election)?;
                records.push(record);
                Ok(())
            })
            .clone()
    };
    let results: Vec<ElectLeadersTopicResult> = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| ElectLeadersTopicResult {
                name: t.name.clone(),
                partitions: t.partitions.iter().map(|&p| (p, elect(&t.name, p))).collect(),
            })
            .collect(),
        None => {
            let mut topics: Vec<(&str, i32)> =
                image.topics.values().map(|t| (t.name.as_str(), t.partitions.len() as i32)).collect();
            topics.sort_unstable();
            topics
                .into_iter()
                .map(|(name, count)| ElectLeadersTopicResult {
                    name: name.to_string(),
                    partitions: (0..count)
                        .map(|p| (p, elect(name, p)))
                        .filter(|(_, outcome)| *outcome != Err(ElectLeaderError::ElectionNotNeeded))
                        .collect(),
                })
                .collect()
        }
    };
    if records.len() > MAX_ELECTIONS_PER_REQUEST {
        let refused = results
            .into_iter()
            .map(|t| ElectLeadersTopicResult {
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|(p, outcome)| (p, outcome.and(Err(ElectLeaderError::TooManyElections))))
                    .collect(),
                ..t
            })
            .collect();
        return (Vec::new(), refused);
    }
    (records, results)
}

/// One partition's election, against `image`.
fn elect_leader(
    image: &MetadataImage,
    name: &str,
    partition: i32,
    election: ElectionType,
) -> Result<MetadataRecord, ElectLeaderError> {
    let topic = image.topic_by_name(name).ok_or_else(|| ElectLeaderError::UnknownTopic(name.to_string()))?;
    let tp = TopicIdPartition { topic_id: topic.topic_id, partition };
    let unknown = || ElectLeaderError::UnknownPartition { topic: name.to_string(), partition };
    let current = image.partition(tp).ok_or_else(unknown)?;
    let not_needed = match election {
        ElectionType::Preferred => current.leader.is_some() && current.leader == current.replicas.first().copied(),
        ElectionType::Unclean => current.leader.is_some(),
    };
    if not_needed {
        return Err(ElectLeaderError::ElectionNotNeeded);
    }
    let builder = PartitionChangeBuilder::new(image, tp).ok_or_else(unknown)?;
    let record = match election {
        ElectionType::Preferred => builder.with_election(Election::Preferred).build(),
        // Never outside the ISR: an acceptable ISR member, as when a broker returns.
        ElectionType::Unclean => builder.with_election(Election::Online).build(),
    };
    record.ok_or(match election {
        ElectionType::Preferred => ElectLeaderError::PreferredLeaderNotAvailable,
        ElectionType::Unclean => ElectLeaderError::EligibleLeadersNotAvailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::tests::{image_with, register, tid};
    use crate::metadata::PartitionRegistration;

    fn tp(partition: i32) -> TopicIdPartition {
        TopicIdPartition { topic_id: tid(1), partition }
    }

    fn fence(image: &mut MetadataImage, broker_id: BrokerId) {
        let broker_epoch = image.brokers[&broker_id].epoch;
        let index = image.applied_index + 1;
        let record =
            MetadataRecord::BrokerChange { broker_id, broker_epoch, fenced: Some(true), in_controlled_shutdown: None };
        assert!(image.apply(index, &[record]).rejected.is_empty());
    }

    fn shut_down(image: &mut MetadataImage, broker_id: BrokerId) {
        let broker_epoch = image.brokers[&broker_id].epoch;
        let index = image.applied_index + 1;
        let record =
            MetadataRecord::BrokerChange { broker_id, broker_epoch, fenced: None, in_controlled_shutdown: Some(true) };
        assert!(image.apply(index, &[record]).rejected.is_empty());
    }

    fn as_change(record: MetadataRecord) -> PartitionChangeRecord {
        match record {
            MetadataRecord::PartitionChange(change) => change,
            other => panic!("not a partition change: {other:?}"),
        }
    }

    /// Applies `record` and returns the partition's registration after it.
    fn applied(image: &mut MetadataImage, record: MetadataRecord, tp: TopicIdPartition) -> PartitionRegistration {
        let index = image.applied_index + 1;
        let delta = image.apply(index, &[record]);
        assert!(delta.rejected.is_empty(), "{:?}", delta.rejected);
        image.partition(tp).unwrap().clone()
    }

    // Kafka's FOO: replicas [2, 1, 3], ISR [2, 1, 3], leader 1, broker 3 not acceptable.
    fn foo() -> MetadataImage {
        let mut image = image_with(&[1, 2, 3], &[(&[2, 1, 3], &[2, 1, 3], 1)]);
        fence(&mut image, 3);
        image
    }

    #[test]
    fn elect_leader_matches_kafkas_partition_change_builder_cases() {
        // PartitionChangeBuilderTest.testElectLeader, without the unclean cases.
        let image = foo();
        let b = || PartitionChangeBuilder::new(&image, tp(0)).unwrap();
        assert_eq!(b().with_election(Election::Preferred).elect_leader(), Some(2));
        assert_eq!(b().elect_leader(), Some(1), "the current leader is kept when acceptable");
        assert_eq!(b().with_target_isr(vec![1, 3]).elect_leader(), Some(1));
        assert_eq!(b().with_target_isr(vec![3]).elect_leader(), None, "3 is in the ISR but not acceptable");

        // Kafka's BAZ: replicas [2, 1, 3], ISR [1, 3], leader 3, all acceptable.
        let image = image_with(&[1, 2, 3], &[(&[2, 1, 3], &[1, 3], 3)]);
        let b = || PartitionChangeBuilder::new(&image, tp(0)).unwrap();
        assert_eq!(b().with_election(Election::Preferred).elect_leader(), Some(3), "2 is not in the ISR");
        assert_eq!(b().elect_leader(), Some(3));
    }

    #[test]
    fn no_change_builds_nothing() {
        let image = foo();
        assert_eq!(PartitionChangeBuilder::new(&image, tp(0)).unwrap().build(), None);
        assert_eq!(PartitionChangeBuilder::new(&image, tp(0)).unwrap().with_target_isr(vec![2, 1, 3]).build(), None);
        assert!(PartitionChangeBuilder::new(&image, tp(1)).is_none());
    }

    #[test]
    fn isr_change_alone_keeps_the_leader_epoch() {
        // testTriggerLeaderEpochBumpIfNeeded: neither shrinking nor expanding the ISR bumps the
        // leader epoch (metadata 3.6+); the partition epoch always moves.
        let mut image = foo();
        let record = PartitionChangeBuilder::new(&image, tp(0)).unwrap().with_target_isr(vec![2, 1]).build().unwrap();
        let change = as_change(record.clone());
        assert_eq!(
            (change.isr.clone(), change.leader, change.expected_partition_epoch),
            (Some(vec![2, 1]), LeaderChange::NoChange, 0)
        );
        let after = applied(&mut image, record, tp(0));
        assert_eq!((after.leader, after.leader_epoch, after.partition_epoch), (Some(1), 0, 1));
    }

    #[test]
    fn fencing_the_leader_elects_the_first_acceptable_isr_replica_in_assignment_order() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[3, 2, 1], 1)]);
        fence(&mut image, 1);
        let records = changes_removing_broker(&image, 1);
        assert_eq!(records.len(), 1);
        let change = as_change(records[0].clone());
        // Replica order, not ISR order: 2 comes before 3 in the assignment.
        assert_eq!(change.leader, LeaderChange::Broker(2));
        assert_eq!(change.isr, Some(vec![3, 2]));
        let after = applied(&mut image, records[0].clone(), tp(0));
        assert_eq!(
            after,
            PartitionRegistration {
                replicas: vec![1, 2, 3],
                isr: vec![3, 2],
                leader: Some(2),
                leader_epoch: 1,
                partition_epoch: 1
            }
        );
    }

    #[test]
    fn fencing_a_follower_shrinks_the_isr_and_keeps_the_leader() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1), (&[2, 3], &[2], 2)]);
        fence(&mut image, 3);
        let records = changes_removing_broker(&image, 3);
        assert_eq!(records.len(), 1, "partition 1 does not have 3 in its ISR");
        let after = applied(&mut image, records[0].clone(), tp(0));
        assert_eq!(
            (after.isr.clone(), after.leader, after.leader_epoch, after.partition_epoch),
            (vec![1, 2], Some(1), 0, 1)
        );
    }

    #[test]
    fn removing_the_last_isr_member_leaves_the_isr_and_no_leader() {
        // handleBrokerFenced never empties an ISR: the partition goes offline with the broker that
        // has its data still named in the ISR.
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1], 1)]);
        fence(&mut image, 1);
        let records = changes_removing_broker(&image, 1);
        let change = as_change(records[0].clone());
        assert_eq!((change.isr.clone(), change.leader), (None, LeaderChange::None));
        let after = applied(&mut image, records[0].clone(), tp(0));
        assert_eq!((after.isr.clone(), after.leader, after.leader_epoch, after.partition_epoch), (vec![1], None, 1, 1));
        // Removing it again changes nothing.
        assert!(changes_removing_broker(&image, 1).is_empty());
    }

    #[test]
    fn no_unclean_election_when_every_isr_member_is_down() {
        // Replicas 2 and 3 are alive but out of sync: they never lead.
        let mut image = image_with(&[1, 2, 3], &[(&[2, 3, 1], &[1], 1)]);
        fence(&mut image, 1);
        let record = changes_removing_broker(&image, 1).pop().unwrap();
        let after = applied(&mut image, record, tp(0));
        assert_eq!(after.leader, None);
        assert!(changes_adding_broker(&image, 2).is_empty(), "2 is not in the ISR");
        assert!(PartitionChangeBuilder::new(&image, tp(0))
            .unwrap()
            .with_election(Election::Preferred)
            .build()
            .is_none());
    }

    #[test]
    fn unfencing_an_isr_member_brings_a_leaderless_partition_back() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2], 1), (&[3, 1], &[3, 1], 3)]);
        fence(&mut image, 2);
        for record in changes_removing_broker(&image, 2) {
            applied(&mut image, record, tp(0));
        }
        fence(&mut image, 1);
        for record in changes_removing_broker(&image, 1) {
            applied(&mut image, record, tp(0));
        }
        // Partition 0: ISR [1], no leader. Partition 1: ISR [3], leader 3.
        assert_eq!(image.leaderless_partitions(), vec![tp(0)]);
        assert_eq!(image.partition(tp(0)).unwrap().isr, vec![1]);

        // The unfence record for 1 is in the same entry, not yet applied: 1 counts as acceptable.
        let records = changes_adding_broker(&image, 1);
        assert_eq!(records.len(), 1);
        let after = applied(&mut image, records[0].clone(), tp(0));
        assert_eq!(
            (after.leader, after.isr.clone(), after.leader_epoch, after.partition_epoch),
            (Some(1), vec![1], 2, 3)
        );
        // Unfencing 2, which is not in the ISR, elects nobody.
        assert!(changes_adding_broker(&image, 2).is_empty());
    }

    #[test]
    fn controlled_shutdown_moves_leadership_away() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1)]);
        shut_down(&mut image, 2);
        // A broker shutting down may not become leader.
        let b = PartitionChangeBuilder::new(&image, tp(0)).unwrap();
        assert_eq!(b.removing_broker(1).elect_leader(), Some(3));
        let record = changes_removing_broker(&image, 1).pop().unwrap();
        let after = applied(&mut image, record, tp(0));
        assert_eq!((after.leader, after.isr.clone()), (Some(3), vec![2, 3]));
    }

    #[test]
    fn preferred_election_moves_leadership_back_to_the_first_replica() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 2)]);
        let record =
            PartitionChangeBuilder::new(&image, tp(0)).unwrap().with_election(Election::Preferred).build().unwrap();
        assert_eq!(as_change(record.clone()).leader, LeaderChange::Broker(1));
        let after = applied(&mut image, record, tp(0));
        assert_eq!((after.leader, after.leader_epoch), (Some(1), 1));
        // Already preferred: nothing to do.
        assert!(PartitionChangeBuilder::new(&image, tp(0))
            .unwrap()
            .with_election(Election::Preferred)
            .build()
            .is_none());
        // Preferred replica fenced: the current leader stays.
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 2)]);
        fence(&mut image, 1);
        assert!(PartitionChangeBuilder::new(&image, tp(0))
            .unwrap()
            .with_election(Election::Preferred)
            .build()
            .is_none());
    }

    #[test]
    fn an_unregistered_broker_is_not_acceptable() {
        let mut image = image_with(&[1, 2], &[(&[1, 2], &[1, 2], 1)]);
        // Broker 2 restarts: re-registered (fenced, new epoch) in the image.
        let index = image.applied_index + 1;
        image.apply(index, &[register(2, None)]);
        let b = PartitionChangeBuilder::new(&image, tp(0)).unwrap();
        assert_eq!(b.removing_broker(1).elect_leader(), None);
        let index = image.applied_index + 1;
        image.apply(index, &[MetadataRecord::UnregisterBroker { broker_id: 2, broker_epoch: index as i64 - 1 }]);
        let b = PartitionChangeBuilder::new(&image, tp(0)).unwrap();
        assert_eq!(b.removing_broker(1).elect_leader(), None);
    }

    #[test]
    fn preferred_elections_are_bounded_and_report_what_is_left() {
        // Partitions 0-2 led by a non-preferred replica; 3 already preferred; 4's preferred replica
        // is out of the ISR.
        let image = image_with(
            &[1, 2, 3],
            &[
                (&[1, 2], &[1, 2], 2),
                (&[1, 3], &[1, 3], 3),
                (&[2, 1], &[1, 2], 1),
                (&[3, 1], &[3, 1], 3),
                (&[3, 1], &[1], 1),
            ],
        );
        let leaders = |records: &[MetadataRecord]| -> Vec<(i32, LeaderChange)> {
            records.iter().map(|r| as_change(r.clone())).map(|c| (c.partition, c.leader)).collect()
        };
        let (records, more) = changes_electing_preferred_leaders(&image, 2);
        assert_eq!(leaders(&records), vec![(0, LeaderChange::Broker(1)), (1, LeaderChange::Broker(1))]);
        assert!(more);
        let (records, more) = changes_electing_preferred_leaders(&image, 3);
        assert_eq!(leaders(&records).len(), 3);
        assert!(!more, "partition 4 cannot move: its preferred replica is not in the ISR");
        assert!(changes_electing_preferred_leaders(&image, 0).1);
    }
}
