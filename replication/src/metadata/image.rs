//! The metadata image: the state every broker reaches by applying committed metadata records in
//! Raft order, and the delta each applied entry produces for the broker's cores.
//!
//! Applying is deterministic (no clock, no randomness, `BTreeMap` iteration), so every node holds the
//! same image at the same index. A record that does not fit the image (unknown topic, stale partition
//! epoch, ISR not within the replicas, ...) is a controller bug; it is skipped and reported in
//! [`MetadataDelta::rejected`] on every node alike, never a panic: one bad record must not take the
//! whole cluster down on replay. The simulator (design section 14) is to assert it stays empty.
//! Each record is checked in full before the image is touched, so a rejected record leaves no trace.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::placement::UsableBroker;
use super::records::{
    BrokerEpoch, ConfigResource, LeaderChange, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    RegisterBrokerRecord,
};
use crate::types::{BrokerId, LeaderEpoch, PartitionEpoch, TopicId, TopicIdPartition, NO_LEADER};

/// A registered broker, as of the last applied record about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    /// The Raft index of the `RegisterBroker` record.
    pub epoch: BrokerEpoch,
    pub incarnation_id: uuid::Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// Kafka's `ClusterControlManager.isActive`: may lead partitions and join ISRs.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// A topic and its partitions, indexed by partition id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub topic_id: TopicId,
    pub name: String,
    pub partitions: Vec<PartitionRegistration>,
    pub configs: BTreeMap<String, String>,
}

/// Who replicates a partition, who is in sync, who leads, and the epochs of that state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

impl PartitionRegistration {
    /// The leader as Kafka's wire and records carry it: -1 for none.
    pub fn leader_or_no_leader(&self) -> BrokerId {
        self.leader.unwrap_or(NO_LEADER)
    }

    /// The registration after `change` (KRaft's `PartitionRegistration.merge`): absent fields keep
    /// their value, the partition epoch is bumped always, the leader epoch iff the leader field is
    /// present (even when it names the current leader). Refused if the change was computed against
    /// another partition epoch or would leave an inconsistent registration.
    pub fn merge(&self, change: &PartitionChangeRecord) -> Result<PartitionRegistration, ApplyError> {
        if change.expected_partition_epoch != self.partition_epoch {
            return Err(ApplyError::PartitionEpochMismatch {
                current: self.partition_epoch,
                expected: change.expected_partition_epoch,
            });
        }
        let (leader, leader_epoch) = match change.leader {
            LeaderChange::NoChange => (self.leader, self.leader_epoch),
            LeaderChange::None => (None, self.leader_epoch + 1),
            LeaderChange::Broker(id) => (Some(id), self.leader_epoch + 1),
        };
        let merged = PartitionRegistration {
            replicas: change.replicas.clone().unwrap_or_else(|| self.replicas.clone()),
            isr: change.isr.clone().unwrap_or_else(|| self.isr.clone()),
            leader,
            leader_epoch,
            partition_epoch: self.partition_epoch + 1,
        };
        merged.check().map_err(ApplyError::InvalidPartition)?;
        Ok(merged)
    }

    /// The shape every registration keeps: replicas non-empty and distinct, ISR non-empty, distinct
    /// and within the replicas (no unclean election, so an ISR is never emptied), leader in the ISR.
    pub fn check(&self) -> Result<(), RegistrationError> {
        if self.replicas.is_empty() {
            return Err(RegistrationError::EmptyReplicas);
        }
        if let Some(dup) = first_duplicate(&self.replicas) {
            return Err(RegistrationError::DuplicateReplica(dup));
        }
        if self.isr.is_empty() {
            return Err(RegistrationError::EmptyIsr);
        }
        if let Some(dup) = first_duplicate(&self.isr) {
            return Err(RegistrationError::DuplicateIsrMember(dup));
        }
        if let Some(&outsider) = self.isr.iter().find(|id| !self.replicas.contains(id)) {
            return Err(RegistrationError::IsrMemberNotReplica(outsider));
        }
        if let Some(leader) = self.leader {
            if !self.isr.contains(&leader) {
                return Err(RegistrationError::LeaderNotInIsr(leader));
            }
        }
        Ok(())
    }

    fn from_record(record: &PartitionRecord) -> Result<PartitionRegistration, RegistrationError> {
        let leader = match record.leader {
            NO_LEADER => None,
            id => Some(id),
        };
        let registration = PartitionRegistration {
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
            leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
        };
        registration.check()?;
        Ok(registration)
    }
}

fn first_duplicate(ids: &[BrokerId]) -> Option<BrokerId> {
    let mut seen = BTreeSet::new();
    ids.iter().copied().find(|id| !seen.insert(*id))
}

/// Why a partition registration is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the replica list is empty")]
    EmptyReplicas,
    #[error("broker {0} is listed twice in the replicas")]
    DuplicateReplica(BrokerId),
    #[error("the ISR is empty")]
    EmptyIsr,
    #[error("broker {0} is listed twice in the ISR")]
    DuplicateIsrMember(BrokerId),
    #[error("ISR member {0} is not a replica")]
    IsrMemberNotReplica(BrokerId),
    #[error("leader {0} is not in the ISR")]
    LeaderNotInIsr(BrokerId),
}

/// Why a record was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the cluster id is already {current}, not {proposed}")]
    ClusterIdMismatch { current: String, proposed: String },
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("broker {broker_id} has epoch {current}, the record names {record}")]
    BrokerEpochMismatch { broker_id: BrokerId, current: BrokerEpoch, record: BrokerEpoch },
    #[error("a topic named {0} already exists")]
    TopicNameExists(String),
    #[error("topic id {0} already exists")]
    TopicIdExists(TopicId),
    #[error("topic id {0} is unknown")]
    UnknownTopic(TopicId),
    #[error("no topic is named {0}")]
    UnknownTopicName(String),
    #[error("partition {partition} of topic {topic_id} is unknown")]
    UnknownPartition { topic_id: TopicId, partition: i32 },
    #[error("partition {partition} of topic {topic_id} comes out of order: the next partition is {next}")]
    PartitionOutOfOrder { topic_id: TopicId, partition: i32, next: usize },
    #[error("the partition epoch is {current}, the change was computed against {expected}")]
    PartitionEpochMismatch { current: PartitionEpoch, expected: PartitionEpoch },
    #[error("invalid partition registration: {0}")]
    InvalidPartition(RegistrationError),
}

/// A record skipped by [`MetadataImage::apply`], with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRecord {
    pub record: MetadataRecord,
    pub reason: ApplyError,
}

/// A value before and after one applied entry; `None` where it did not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<T> {
    pub old: Option<T>,
    pub new: Option<T>,
}

/// What one applied entry changed, for the cores that act on it (role transitions, new and deleted
/// logs). Several records about the same thing in one entry fold into one [`Change`] from the state
/// before the entry to the state after; entries whose end state equals their start are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataDelta {
    /// The Raft index of the applied entry.
    pub index: u64,
    /// Set when this entry set the cluster id.
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<BrokerId, Change<BrokerRegistration>>,
    /// Topics created by this entry (their partitions are in `partitions` with `old: None`).
    pub new_topics: BTreeSet<TopicId>,
    /// Topics that existed before this entry and were removed by it, as they were when removed.
    pub removed_topics: BTreeMap<TopicId, TopicImage>,
    /// Partitions created or changed by this entry, except those of removed topics.
    pub partitions: BTreeMap<TopicIdPartition, Change<PartitionRegistration>>,
    /// Config keys set (`Some`) or deleted (`None`) by this entry, except those of removed topics.
    pub configs: BTreeMap<ConfigResource, BTreeMap<String, Option<String>>>,
    /// Records skipped because they did not fit the image: a controller bug.
    pub rejected: Vec<RejectedRecord>,
}

impl MetadataDelta {
    fn new(index: u64) -> MetadataDelta {
        MetadataDelta { index, ..MetadataDelta::default() }
    }

    fn record_broker(&mut self, id: BrokerId, old: Option<BrokerRegistration>, new: Option<BrokerRegistration>) {
        self.brokers.entry(id).or_insert(Change { old, new: None }).new = new;
    }

    fn record_partition(
        &mut self,
        tp: TopicIdPartition,
        old: Option<PartitionRegistration>,
        new: PartitionRegistration,
    ) {
        self.partitions.entry(tp).or_insert(Change { old, new: None }).new = Some(new);
    }

    fn drop_unchanged(&mut self) {
        self.brokers.retain(|_, change| change.old != change.new);
        self.partitions.retain(|_, change| change.old != change.new);
    }
}

/// The cluster's metadata at `applied_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The Raft index of the last applied entry; 0 before any.
    pub applied_index: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<TopicId, TopicImage>,
    pub topic_ids: BTreeMap<String, TopicId>,
    pub cluster_configs: BTreeMap<String, String>,
    /// Per-broker config overrides. Kept apart from registrations, as in Kafka: they outlive an
    /// unregistration.
    pub broker_configs: BTreeMap<BrokerId, BTreeMap<String, String>>,
}

impl MetadataImage {
    pub fn new() -> MetadataImage {
        MetadataImage::default()
    }

    /// Applies the records of the committed entry at `index`, in order. Records that do not fit are
    /// skipped and listed in the delta's `rejected`.
    ///
    /// # Panics
    /// If `index` is not above `applied_index`: entries are applied once, in order, and a driver
    /// that does otherwise has a bug no skipping can repair.
    pub fn apply(&mut self, index: u64, batch: &[MetadataRecord]) -> MetadataDelta {
        assert!(index > self.applied_index, "metadata entry {index} applied after entry {}", self.applied_index);
        let mut delta = MetadataDelta::new(index);
        for record in batch {
            if let Err(reason) = self.apply_record(index, record, &mut delta) {
                delta.rejected.push(RejectedRecord { record: record.clone(), reason });
            }
        }
        self.applied_index = index;
        delta.drop_unchanged();
        delta
    }

    fn apply_record(
        &mut self,
        index: u64,
        record: &MetadataRecord,
        delta: &mut MetadataDelta,
    ) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::ClusterId { id } => match &self.cluster_id {
                Some(current) if current == id => Ok(()),
                Some(current) => Err(ApplyError::ClusterIdMismatch { current: current.clone(), proposed: id.clone() }),
                None => {
                    self.cluster_id = Some(id.clone());
                    delta.cluster_id = Some(id.clone());
                    Ok(())
                }
            },
            MetadataRecord::RegisterBroker(register) => {
                self.register_broker(index, register, delta);
                Ok(())
            }
            MetadataRecord::BrokerChange { broker_id, broker_epoch, fenced, in_controlled_shutdown } => {
                let current = self.broker_at_epoch(*broker_id, *broker_epoch)?;
                let mut changed = current.clone();
                if let Some(fenced) = fenced {
                    changed.fenced = *fenced;
                }
                if let Some(shutting_down) = in_controlled_shutdown {
                    changed.in_controlled_shutdown = *shutting_down;
                }
                let old = self.brokers.insert(*broker_id, changed.clone());
                delta.record_broker(*broker_id, old, Some(changed));
                Ok(())
            }
            MetadataRecord::UnregisterBroker { broker_id, broker_epoch } => {
                self.broker_at_epoch(*broker_id, *broker_epoch)?;
                let old = self.brokers.remove(broker_id);
                delta.record_broker(*broker_id, old, None);
                Ok(())
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids.contains_key(name) {
                    return Err(ApplyError::TopicNameExists(name.clone()));
                }
                if self.topics.contains_key(topic_id) {
                    return Err(ApplyError::TopicIdExists(*topic_id));
                }
                let topic = TopicImage {
                    topic_id: *topic_id,
                    name: name.clone(),
                    partitions: Vec::new(),
                    configs: BTreeMap::new(),
                };
                self.topics.insert(*topic_id, topic);
                self.topic_ids.insert(name.clone(), *topic_id);
                delta.new_topics.insert(*topic_id);
                Ok(())
            }
            MetadataRecord::Partition(record) => {
                let topic = self.topics.get_mut(&record.topic_id).ok_or(ApplyError::UnknownTopic(record.topic_id))?;
                let next = topic.partitions.len();
                if usize::try_from(record.partition).ok() != Some(next) {
                    return Err(ApplyError::PartitionOutOfOrder {
                        topic_id: record.topic_id,
                        partition: record.partition,
                        next,
                    });
                }
                let registration = PartitionRegistration::from_record(record).map_err(ApplyError::InvalidPartition)?;
                topic.partitions.push(registration.clone());
                let tp = TopicIdPartition { topic_id: record.topic_id, partition: record.partition };
                delta.record_partition(tp, None, registration);
                Ok(())
            }
            MetadataRecord::PartitionChange(change) => {
                let unknown =
                    || ApplyError::UnknownPartition { topic_id: change.topic_id, partition: change.partition };
                let topic = self.topics.get_mut(&change.topic_id).ok_or_else(unknown)?;
                let slot = usize::try_from(change.partition)
                    .ok()
                    .and_then(|p| topic.partitions.get_mut(p))
                    .ok_or_else(unknown)?;
                let merged = slot.merge(change)?;
                let old = std::mem::replace(slot, merged.clone());
                let tp = TopicIdPartition { topic_id: change.topic_id, partition: change.partition };
                delta.record_partition(tp, Some(old), merged);
                Ok(())
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self.topics.remove(topic_id).ok_or(ApplyError::UnknownTopic(*topic_id))?;
                self.topic_ids.remove(&topic.name);
                delta.partitions.retain(|tp, _| tp.topic_id != *topic_id);
                delta.configs.remove(&ConfigResource::Topic(topic.name.clone()));
                // A topic created and removed within one entry never reaches the cores.
                if !delta.new_topics.remove(topic_id) {
                    delta.removed_topics.insert(*topic_id, topic);
                }
                Ok(())
            }
            MetadataRecord::Config { resource, name, value } => {
                let configs = match resource {
                    ConfigResource::Cluster => &mut self.cluster_configs,
                    ConfigResource::Broker(id) => self.broker_configs.entry(*id).or_default(),
                    ConfigResource::Topic(topic) => {
                        let id =
                            self.topic_ids.get(topic).ok_or_else(|| ApplyError::UnknownTopicName(topic.clone()))?;
                        &mut self.topics.get_mut(id).expect("topic_ids and topics agree").configs
                    }
                };
                match value {
                    Some(value) => configs.insert(name.clone(), value.clone()),
                    None => configs.remove(name),
                };
                if let ConfigResource::Broker(id) = resource {
                    if self.broker_configs.get(id).is_some_and(BTreeMap::is_empty) {
                        self.broker_configs.remove(id);
                    }
                }
                delta.configs.entry(resource.clone()).or_default().insert(name.clone(), value.clone());
                Ok(())
            }
        }
    }

    /// A (re)registration replaces any earlier one of the same id: KRaft does the same, and the
    /// controller fences the old incarnation in the same entry first (design 5.2).
    fn register_broker(&mut self, index: u64, record: &RegisterBrokerRecord, delta: &mut MetadataDelta) {
        let registration = BrokerRegistration {
            broker_id: record.broker_id,
            // Indexes stay far below i64::MAX.
            epoch: index as BrokerEpoch,
            incarnation_id: record.incarnation_id,
            host: record.host.clone(),
            port: record.port,
            rack: record.rack.clone(),
            fenced: record.fenced,
            in_controlled_shutdown: false,
        };
        let old = self.brokers.insert(record.broker_id, registration.clone());
        delta.record_broker(record.broker_id, old, Some(registration));
    }

    fn broker_at_epoch(&self, broker_id: BrokerId, epoch: BrokerEpoch) -> Result<&BrokerRegistration, ApplyError> {
        let current = self.brokers.get(&broker_id).ok_or(ApplyError::UnknownBroker(broker_id))?;
        if current.epoch != epoch {
            return Err(ApplyError::BrokerEpochMismatch { broker_id, current: current.epoch, record: epoch });
        }
        Ok(current)
    }

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Registered, unfenced and not in controlled shutdown: may lead and join ISRs.
    pub fn is_active_broker(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(BrokerRegistration::is_active)
    }

    /// Unfenced brokers (including those in controlled shutdown), by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> + '_ {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The placer's input: every registered broker not in controlled shutdown (Kafka's
    /// `usableBrokers`), fenced ones flagged.
    pub fn usable_brokers(&self) -> Vec<UsableBroker> {
        self.brokers
            .values()
            .filter(|b| !b.in_controlled_shutdown)
            .map(|b| UsableBroker { id: b.broker_id, rack: b.rack.clone(), fenced: b.fenced })
            .collect()
    }

    pub fn topic(&self, id: TopicId) -> Option<&TopicImage> {
        self.topics.get(&id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, tp: TopicIdPartition) -> Option<&PartitionRegistration> {
        let index = usize::try_from(tp.partition).ok()?;
        self.topics.get(&tp.topic_id)?.partitions.get(index)
    }

    /// The leader of a partition; `None` if it has none or does not exist.
    pub fn leader(&self, tp: TopicIdPartition) -> Option<BrokerId> {
        self.partition(tp)?.leader
    }

    /// Every partition, by topic id then partition.
    pub fn partitions(&self) -> impl Iterator<Item = (TopicIdPartition, &PartitionRegistration)> + '_ {
        self.topics.iter().flat_map(|(topic_id, topic)| {
            topic
                .partitions
                .iter()
                .zip(0..)
                .map(|(registration, partition)| (TopicIdPartition { topic_id: *topic_id, partition }, registration))
        })
    }

    /// Partitions whose ISR contains `broker`: those a fence or a controlled shutdown touches.
    pub fn partitions_with_isr_member(&self, broker: BrokerId) -> Vec<TopicIdPartition> {
        self.partitions().filter(|(_, p)| p.isr.contains(&broker)).map(|(tp, _)| tp).collect()
    }

    /// Partitions without a leader: those an unfence may bring back.
    pub fn leaderless_partitions(&self) -> Vec<TopicIdPartition> {
        self.partitions().filter(|(_, p)| p.leader.is_none()).map(|(tp, _)| tp).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metadata::records::RegisterBrokerRecord;

    pub(crate) fn tid(n: u128) -> TopicId {
        uuid::Uuid::from_u128(n)
    }

    pub(crate) fn register(broker_id: BrokerId, rack: Option<&str>) -> MetadataRecord {
        MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id,
            incarnation_id: uuid::Uuid::from_u128(broker_id as u128),
            host: format!("127.0.0.{broker_id}"),
            port: 9092,
            rack: rack.map(str::to_owned),
            fenced: true,
        })
    }

    pub(crate) fn unfence(image: &MetadataImage, broker_id: BrokerId) -> MetadataRecord {
        let broker_epoch = image.brokers[&broker_id].epoch;
        MetadataRecord::BrokerChange { broker_id, broker_epoch, fenced: Some(false), in_controlled_shutdown: None }
    }

    pub(crate) fn partition(
        topic_id: TopicId,
        partition: i32,
        replicas: &[BrokerId],
        isr: &[BrokerId],
        leader: BrokerId,
    ) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    pub(crate) fn change(topic_id: TopicId, partition: i32, expected: PartitionEpoch) -> PartitionChangeRecord {
        PartitionChangeRecord {
            topic_id,
            partition,
            expected_partition_epoch: expected,
            isr: None,
            leader: LeaderChange::NoChange,
            replicas: None,
        }
    }

    /// Brokers `ids` registered (entry 1) and unfenced (entry 2), then topic `t` (id 1) with one
    /// partition per `(replicas, isr, leader)` (entry 3). Every record must be accepted.
    pub(crate) fn image_with(ids: &[BrokerId], partitions: &[(&[BrokerId], &[BrokerId], BrokerId)]) -> MetadataImage {
        let mut image = MetadataImage::new();
        let registrations: Vec<_> = ids.iter().map(|&id| register(id, None)).collect();
        assert!(image.apply(1, &registrations).rejected.is_empty());
        let unfences: Vec<_> = ids.iter().map(|&id| unfence(&image, id)).collect();
        assert!(image.apply(2, &unfences).rejected.is_empty());
        let mut topic = vec![MetadataRecord::Topic { name: "t".into(), topic_id: tid(1) }];
        for (p, (replicas, isr, leader)) in partitions.iter().enumerate() {
            topic.push(partition(tid(1), p as i32, replicas, isr, *leader));
        }
        assert!(image.apply(3, &topic).rejected.is_empty());
        image
    }

    fn tp(partition: i32) -> TopicIdPartition {
        TopicIdPartition { topic_id: tid(1), partition }
    }

    #[test]
    fn broker_epoch_is_the_index_of_its_registration() {
        let mut image = MetadataImage::new();
        let delta = image.apply(5, &[register(1, Some("a")), register(2, None)]);
        assert!(delta.rejected.is_empty());
        assert_eq!(image.brokers[&1].epoch, 5);
        assert_eq!(image.brokers[&2].epoch, 5);
        assert!(image.brokers[&1].fenced);
        assert_eq!(image.brokers[&1].rack.as_deref(), Some("a"));
        assert_eq!(delta.brokers[&1].old, None);
        assert_eq!(delta.brokers[&1].new.as_ref().unwrap().epoch, 5);

        // A re-registration (a restart) replaces it with the new index as epoch.
        let delta = image.apply(9, &[register(1, Some("b"))]);
        assert_eq!(image.brokers[&1].epoch, 9);
        assert_eq!(delta.brokers[&1].old.as_ref().unwrap().epoch, 5);
        assert_eq!(delta.brokers[&1].new.as_ref().unwrap().rack.as_deref(), Some("b"));
        assert_eq!(image.applied_index, 9);
    }

    #[test]
    fn broker_change_needs_the_current_epoch() {
        let mut image = MetadataImage::new();
        image.apply(3, &[register(1, None)]);
        let stale = MetadataRecord::BrokerChange {
            broker_id: 1,
            broker_epoch: 2,
            fenced: Some(false),
            in_controlled_shutdown: None,
        };
        let delta = image.apply(4, std::slice::from_ref(&stale));
        assert_eq!(
            delta.rejected,
            vec![RejectedRecord {
                record: stale,
                reason: ApplyError::BrokerEpochMismatch { broker_id: 1, current: 3, record: 2 }
            }]
        );
        assert!(image.brokers[&1].fenced, "a rejected record must not change the image");
        assert!(delta.brokers.is_empty());

        let delta = image.apply(5, &[unfence(&image, 1)]);
        assert!(delta.rejected.is_empty());
        assert!(!image.brokers[&1].fenced);
        assert!(delta.brokers[&1].old.as_ref().unwrap().fenced);
        assert!(!delta.brokers[&1].new.as_ref().unwrap().fenced);

        let shutdown = MetadataRecord::BrokerChange {
            broker_id: 1,
            broker_epoch: 3,
            fenced: None,
            in_controlled_shutdown: Some(true),
        };
        image.apply(6, &[shutdown]);
        assert!(!image.brokers[&1].fenced, "an absent field keeps its value");
        assert!(image.brokers[&1].in_controlled_shutdown);
        assert!(!image.is_active_broker(1));
        assert_eq!(image.live_brokers().map(|b| b.broker_id).collect::<Vec<_>>(), vec![1]);
        assert!(image.usable_brokers().is_empty(), "a broker shutting down takes no new replicas");

        let unknown = MetadataRecord::BrokerChange {
            broker_id: 7,
            broker_epoch: 3,
            fenced: Some(true),
            in_controlled_shutdown: None,
        };
        assert_eq!(image.apply(7, &[unknown]).rejected[0].reason, ApplyError::UnknownBroker(7));
    }

    #[test]
    fn unregister_needs_the_current_epoch_and_removes_the_broker() {
        let mut image = MetadataImage::new();
        image.apply(3, &[register(1, None)]);
        let delta = image.apply(4, &[MetadataRecord::UnregisterBroker { broker_id: 1, broker_epoch: 1 }]);
        assert_eq!(delta.rejected[0].reason, ApplyError::BrokerEpochMismatch { broker_id: 1, current: 3, record: 1 });
        assert!(image.broker(1).is_some());
        let delta = image.apply(5, &[MetadataRecord::UnregisterBroker { broker_id: 1, broker_epoch: 3 }]);
        assert!(delta.rejected.is_empty());
        assert!(image.broker(1).is_none());
        assert_eq!(delta.brokers[&1].new, None);
        // Registered and unregistered within one entry: no net change for the cores.
        let delta =
            image.apply(6, &[register(2, None), MetadataRecord::UnregisterBroker { broker_id: 2, broker_epoch: 6 }]);
        assert!(delta.rejected.is_empty());
        assert!(delta.brokers.is_empty());
    }

    #[test]
    fn cluster_id_is_set_once() {
        let mut image = MetadataImage::new();
        let delta = image.apply(1, &[MetadataRecord::ClusterId { id: "a".into() }]);
        assert_eq!(delta.cluster_id.as_deref(), Some("a"));
        let delta = image.apply(2, &[MetadataRecord::ClusterId { id: "a".into() }]);
        assert!(delta.rejected.is_empty());
        assert_eq!(delta.cluster_id, None);
        let delta = image.apply(3, &[MetadataRecord::ClusterId { id: "b".into() }]);
        assert_eq!(
            delta.rejected[0].reason,
            ApplyError::ClusterIdMismatch { current: "a".into(), proposed: "b".into() }
        );
        assert_eq!(image.cluster_id.as_deref(), Some("a"));
    }

    #[test]
    fn topic_and_partitions_are_created_in_order() {
        let image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1), (&[2, 3, 1], &[2, 3], 2)]);
        let topic = image.topic_by_name("t").unwrap();
        assert_eq!(topic.topic_id, tid(1));
        assert_eq!(topic.partitions.len(), 2);
        assert_eq!(image.leader(tp(0)), Some(1));
        assert_eq!(image.leader(tp(1)), Some(2));
        assert_eq!(image.partition(tp(1)).unwrap().isr, vec![2, 3]);
        assert_eq!(image.partition(tp(2)), None);
        assert_eq!(image.partition(TopicIdPartition { topic_id: tid(1), partition: -1 }), None);
        assert_eq!(image.partitions_with_isr_member(1), vec![tp(0)]);
        assert!(image.leaderless_partitions().is_empty());

        let mut image = MetadataImage::new();
        let delta = image.apply(
            1,
            &[
                MetadataRecord::Topic { name: "t".into(), topic_id: tid(1) },
                partition(tid(1), 0, &[1], &[1], 1),
                partition(tid(1), 2, &[1], &[1], 1),
                partition(tid(1), 0, &[1], &[1], 1),
                partition(tid(9), 0, &[1], &[1], 1),
                MetadataRecord::Topic { name: "t".into(), topic_id: tid(2) },
                MetadataRecord::Topic { name: "u".into(), topic_id: tid(1) },
            ],
        );
        let reasons: Vec<_> = delta.rejected.iter().map(|r| r.reason.clone()).collect();
        assert_eq!(
            reasons,
            vec![
                ApplyError::PartitionOutOfOrder { topic_id: tid(1), partition: 2, next: 1 },
                ApplyError::PartitionOutOfOrder { topic_id: tid(1), partition: 0, next: 1 },
                ApplyError::UnknownTopic(tid(9)),
                ApplyError::TopicNameExists("t".into()),
                ApplyError::TopicIdExists(tid(1)),
            ]
        );
        assert_eq!(delta.new_topics, BTreeSet::from([tid(1)]));
        assert_eq!(delta.partitions.keys().copied().collect::<Vec<_>>(), vec![tp(0)]);
        assert_eq!(delta.partitions[&tp(0)].old, None);
    }

    #[test]
    fn inconsistent_partition_records_are_rejected() {
        let mut image = image_with(&[1, 2, 3], &[]);
        let cases: [(&[BrokerId], &[BrokerId], BrokerId, RegistrationError); 6] = [
            (&[], &[], -1, RegistrationError::EmptyReplicas),
            (&[1, 1], &[1], 1, RegistrationError::DuplicateReplica(1)),
            (&[1, 2], &[], -1, RegistrationError::EmptyIsr),
            (&[1, 2], &[2, 2], 2, RegistrationError::DuplicateIsrMember(2)),
            (&[1, 2], &[1, 3], 1, RegistrationError::IsrMemberNotReplica(3)),
            (&[1, 2], &[1], 2, RegistrationError::LeaderNotInIsr(2)),
        ];
        for (i, (replicas, isr, leader, expected)) in cases.into_iter().enumerate() {
            let delta = image.apply(10 + i as u64, &[partition(tid(1), 0, replicas, isr, leader)]);
            assert_eq!(delta.rejected.len(), 1);
            assert_eq!(delta.rejected[0].reason, ApplyError::InvalidPartition(expected));
        }
        assert!(image.topic(tid(1)).unwrap().partitions.is_empty());
        // A leaderless partition is fine as long as its ISR is not empty.
        assert!(image.apply(20, &[partition(tid(1), 0, &[1, 2], &[2], -1)]).rejected.is_empty());
        assert_eq!(image.leaderless_partitions(), vec![tp(0)]);
    }

    #[test]
    fn partition_change_bumps_partition_epoch_always_and_leader_epoch_iff_leader_present() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1)]);

        // ISR only: partition epoch + 1, leader epoch unchanged.
        let delta = image.apply(
            4,
            &[MetadataRecord::PartitionChange(PartitionChangeRecord { isr: Some(vec![1, 2]), ..change(tid(1), 0, 0) })],
        );
        assert!(delta.rejected.is_empty());
        let p = image.partition(tp(0)).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(1), 0, 1));
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(delta.partitions[&tp(0)].old.as_ref().unwrap().isr, vec![1, 2, 3]);

        // The same leader named again still bumps the leader epoch (KRaft's merge).
        image.apply(
            5,
            &[MetadataRecord::PartitionChange(PartitionChangeRecord {
                leader: LeaderChange::Broker(1),
                ..change(tid(1), 0, 1)
            })],
        );
        let p = image.partition(tp(0)).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(1), 1, 2));

        // A new leader.
        image.apply(
            6,
            &[MetadataRecord::PartitionChange(PartitionChangeRecord {
                leader: LeaderChange::Broker(2),
                ..change(tid(1), 0, 2)
            })],
        );
        let p = image.partition(tp(0)).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(2), 2, 3));

        // No leader.
        image.apply(
            7,
            &[MetadataRecord::PartitionChange(PartitionChangeRecord {
                leader: LeaderChange::None,
                ..change(tid(1), 0, 3)
            })],
        );
        let p = image.partition(tp(0)).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (None, 3, 4));
        assert_eq!(p.leader_or_no_leader(), NO_LEADER);

        // Two changes in one entry: the second is computed against the first's epoch, and the
        // delta folds them into one change from before the entry to after it.
        let delta = image.apply(
            8,
            &[
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    leader: LeaderChange::Broker(1),
                    ..change(tid(1), 0, 4)
                }),
                MetadataRecord::PartitionChange(PartitionChangeRecord { isr: Some(vec![1]), ..change(tid(1), 0, 5) }),
            ],
        );
        assert!(delta.rejected.is_empty());
        let folded = &delta.partitions[&tp(0)];
        assert_eq!(folded.old.as_ref().unwrap().partition_epoch, 4);
        assert_eq!(
            folded.new.as_ref().unwrap(),
            &PartitionRegistration {
                replicas: vec![1, 2, 3],
                isr: vec![1],
                leader: Some(1),
                leader_epoch: 4,
                partition_epoch: 6
            }
        );
    }

    #[test]
    fn partition_change_that_does_not_fit_is_rejected_without_effect() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2], 1)]);
        let before = image.clone();
        let cases = [
            (change(tid(1), 0, 1), ApplyError::PartitionEpochMismatch { current: 0, expected: 1 }),
            (change(tid(1), 1, 0), ApplyError::UnknownPartition { topic_id: tid(1), partition: 1 }),
            (change(tid(1), -1, 0), ApplyError::UnknownPartition { topic_id: tid(1), partition: -1 }),
            (change(tid(2), 0, 0), ApplyError::UnknownPartition { topic_id: tid(2), partition: 0 }),
            (
                PartitionChangeRecord { isr: Some(vec![1, 4]), ..change(tid(1), 0, 0) },
                ApplyError::InvalidPartition(RegistrationError::IsrMemberNotReplica(4)),
            ),
            (
                PartitionChangeRecord { leader: LeaderChange::Broker(3), ..change(tid(1), 0, 0) },
                ApplyError::InvalidPartition(RegistrationError::LeaderNotInIsr(3)),
            ),
            (
                PartitionChangeRecord { isr: Some(vec![2]), ..change(tid(1), 0, 0) },
                ApplyError::InvalidPartition(RegistrationError::LeaderNotInIsr(1)),
            ),
            (
                PartitionChangeRecord { isr: Some(vec![]), ..change(tid(1), 0, 0) },
                ApplyError::InvalidPartition(RegistrationError::EmptyIsr),
            ),
            (
                PartitionChangeRecord { replicas: Some(vec![1, 3]), ..change(tid(1), 0, 0) },
                ApplyError::InvalidPartition(RegistrationError::IsrMemberNotReplica(2)),
            ),
        ];
        for (i, (record, reason)) in cases.into_iter().enumerate() {
            let record = MetadataRecord::PartitionChange(record);
            let delta = image.apply(10 + i as u64, std::slice::from_ref(&record));
            assert_eq!(delta.rejected, vec![RejectedRecord { record, reason }]);
            assert!(delta.partitions.is_empty());
        }
        assert_eq!(image.topics, before.topics);
    }

    #[test]
    fn remove_topic_frees_the_name_and_drops_its_configs() {
        let mut image = image_with(&[1], &[(&[1], &[1], 1)]);
        image.apply(
            4,
            &[MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "retention.ms".into(),
                value: Some("5".into()),
            }],
        );
        assert_eq!(image.topic_by_name("t").unwrap().configs["retention.ms"], "5");

        let delta = image.apply(
            5,
            &[
                MetadataRecord::RemoveTopic { topic_id: tid(1) },
                MetadataRecord::Topic { name: "t".into(), topic_id: tid(2) },
                partition(tid(2), 0, &[1], &[1], 1),
                MetadataRecord::RemoveTopic { topic_id: tid(1) },
            ],
        );
        assert_eq!(delta.rejected.len(), 1);
        assert_eq!(delta.rejected[0].reason, ApplyError::UnknownTopic(tid(1)));
        assert_eq!(delta.removed_topics.keys().copied().collect::<Vec<_>>(), vec![tid(1)]);
        assert_eq!(delta.removed_topics[&tid(1)].partitions.len(), 1);
        assert_eq!(delta.new_topics, BTreeSet::from([tid(2)]));
        let recreated = image.topic_by_name("t").unwrap();
        assert_eq!(recreated.topic_id, tid(2));
        assert!(recreated.configs.is_empty());
        assert!(image.topic(tid(1)).is_none());

        // Created and removed within one entry: the cores never hear of it.
        let delta = image.apply(
            6,
            &[
                MetadataRecord::Topic { name: "x".into(), topic_id: tid(3) },
                partition(tid(3), 0, &[1], &[1], 1),
                MetadataRecord::RemoveTopic { topic_id: tid(3) },
            ],
        );
        assert!(delta.rejected.is_empty());
        assert!(delta.new_topics.is_empty() && delta.removed_topics.is_empty() && delta.partitions.is_empty());
    }

    #[test]
    fn configs_are_set_and_deleted_per_resource() {
        let mut image = image_with(&[1], &[(&[1], &[1], 1)]);
        let set = |resource: ConfigResource, value: Option<&str>| MetadataRecord::Config {
            resource,
            name: "k".into(),
            value: value.map(str::to_owned),
        };
        let delta = image.apply(
            4,
            &[
                set(ConfigResource::Cluster, Some("c")),
                set(ConfigResource::Broker(9), Some("b")),
                set(ConfigResource::Topic("t".into()), Some("t")),
                set(ConfigResource::Topic("missing".into()), Some("x")),
            ],
        );
        assert_eq!(delta.rejected[0].reason, ApplyError::UnknownTopicName("missing".into()));
        assert_eq!(image.cluster_configs["k"], "c");
        assert_eq!(image.broker_configs[&9]["k"], "b");
        assert_eq!(image.topic_by_name("t").unwrap().configs["k"], "t");
        assert_eq!(delta.configs[&ConfigResource::Broker(9)]["k"].as_deref(), Some("b"));

        let delta = image.apply(5, &[set(ConfigResource::Cluster, None), set(ConfigResource::Broker(9), None)]);
        assert!(image.cluster_configs.is_empty());
        assert!(image.broker_configs.is_empty());
        assert_eq!(delta.configs[&ConfigResource::Cluster]["k"], None);
    }

    #[test]
    fn image_round_trips_through_json() {
        // The serde derives are there for a future snapshot (the serialized image at an index).
        let mut image = image_with(&[1, 2], &[(&[1, 2], &[1, 2], 1)]);
        image.apply(
            4,
            &[MetadataRecord::Config {
                resource: ConfigResource::Broker(2),
                name: "k".into(),
                value: Some("v".into()),
            }],
        );
        let json = serde_json::to_vec(&image).unwrap();
        assert_eq!(serde_json::from_slice::<MetadataImage>(&json).unwrap(), image);
    }

    #[test]
    #[should_panic(expected = "metadata entry 3 applied after entry 3")]
    fn applying_an_entry_twice_is_a_bug() {
        let mut image = MetadataImage::new();
        image.apply(3, &[]);
        image.apply(3, &[]);
    }

    #[test]
    fn same_batches_give_same_image_on_every_node() {
        // Determinism: two nodes applying the same entries, including rejected records, agree.
        let batches: Vec<Vec<MetadataRecord>> = vec![
            vec![register(3, Some("b")), register(1, Some("a")), register(2, None)],
            vec![
                MetadataRecord::Topic { name: "t".into(), topic_id: tid(1) },
                partition(tid(1), 0, &[3, 1], &[3, 1], 3),
                partition(tid(1), 5, &[1], &[1], 1),
            ],
            vec![MetadataRecord::PartitionChange(PartitionChangeRecord { isr: Some(vec![3]), ..change(tid(1), 0, 0) })],
        ];
        let run = || {
            let mut image = MetadataImage::new();
            let deltas: Vec<_> = batches.iter().zip(1..).map(|(b, i)| image.apply(i, b)).collect();
            (image, deltas)
        };
        assert_eq!(run(), run());
        assert_eq!(run().1[1].rejected.len(), 1);
    }
}
