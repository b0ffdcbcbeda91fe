//! The oracle controller of simulator v1 (design 18, step 4): one always-correct, never-failing
//! active controller whose commits are instant. It stands in for the Raft quorum and
//! `ControllerCore` until step 6, and reuses the real decision code where it exists: the metadata
//! image and its records, the election builder ([`changes_removing_broker`],
//! [`changes_adding_broker`]) and AlterPartition validation ([`alter_partition`]).
//!
//! What it decides (design 5.2 to 5.4): registration of a new incarnation (fencing the old one in
//! the same entry, so a restarted broker never resumes a leader epoch), unfencing on a heartbeat
//! from a caught-up broker, fencing after a session timeout, ISR changes proposed by leaders.
//! Brokers learn each committed entry from the network (a push after every commit and every
//! heartbeat answer carry the log end), so their images lag by message delays and losses.
//!
//! [`OracleMode::Unclean`] is a deliberately broken variant: when a partition is left without an
//! ISR member to lead, it elects any live replica (Kafka's `unclean.leader.election.enable`). The
//! invariant checker must catch the acknowledged records this loses.

use std::collections::BTreeMap;

use crate::controller::AlterPartitionData;
use crate::controller::{alter_partition, changes_adding_broker, changes_removing_broker, check_sender};
use crate::metadata::RegisterBrokerRecord;
use crate::metadata::{LeaderChange, MetadataImage, MetadataRecord, PartitionChangeRecord, PartitionRecord};
use crate::partition_replica::{AlterIsr, PartitionAssignment};
use crate::types::{BrokerEpoch, BrokerId, TopicId, TopicIdPartition, NO_LEADER};

use super::net::Part;

/// How long a broker may go without a heartbeat before it is fenced. Kafka's default is 9 s; the
/// simulator uses the multi-process tests' 1.5 s-2 s range so several fence/rejoin cycles fit in a
/// seed's simulated time.
pub const SESSION_TIMEOUT_MS: u64 = 2000;
/// Brokers heartbeat this often (Kafka: 2 s with a 9 s session).
pub const HEARTBEAT_INTERVAL_MS: u64 = 500;
/// How often the controller looks for expired sessions.
pub const CONTROLLER_TICK_MS: u64 = 100;

// Design 13: the session must outlast two heartbeats, or one lost heartbeat fences a live broker.
const _: () = assert!(SESSION_TIMEOUT_MS > 2 * HEARTBEAT_INTERVAL_MS);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OracleMode {
    /// Elections from the ISR only (design 5.3).
    Clean,
    /// Broken on purpose: a leaderless partition elects any live replica, ISR reset to it.
    Unclean,
}

pub struct OracleController {
    pub image: MetadataImage,
    /// Committed entries; entry `i` has index `i + 1`.
    log: Vec<Vec<MetadataRecord>>,
    last_heartbeat_ms: BTreeMap<BrokerId, u64>,
    mode: OracleMode,
    pub topic_id: TopicId,
    pub partitions: usize,
}

impl OracleController {
    /// A cluster at time 0: every broker registered and unfenced, one topic whose partition `p`
    /// has replicas `assignments[p]`, led by the first, all in sync.
    pub fn bootstrap(
        incarnations: &BTreeMap<BrokerId, uuid::Uuid>,
        assignments: &[Vec<BrokerId>],
        mode: OracleMode,
    ) -> OracleController {
        let topic_id = uuid::Uuid::from_u128(0x5157_0000_0000_0000_0000_0000_0000_0001);
        let mut controller = OracleController {
            image: MetadataImage::new(),
            log: Vec::new(),
            last_heartbeat_ms: BTreeMap::new(),
            mode,
            topic_id,
            partitions: assignments.len(),
        };
        controller.commit(vec![MetadataRecord::ClusterId { id: "sim".to_string() }]);
        for (&broker, &incarnation) in incarnations {
            controller.commit(vec![register_record(broker, incarnation)]);
            controller.last_heartbeat_ms.insert(broker, 0);
        }
        let unfence = controller
            .image
            .brokers
            .values()
            .map(|b| MetadataRecord::BrokerChange {
                broker_id: b.broker_id,
                broker_epoch: b.epoch,
                fenced: Some(false),
                in_controlled_shutdown: None,
            })
            .collect();
        controller.commit(unfence);
        let mut topic = vec![MetadataRecord::Topic { name: "sim".to_string(), topic_id }];
        for (p, replicas) in assignments.iter().enumerate() {
            topic.push(MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: p as i32,
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader: replicas[0],
                leader_epoch: 0,
                partition_epoch: 0,
            }));
        }
        controller.commit(topic);
        controller
    }

    pub fn log(&self) -> &[Vec<MetadataRecord>] {
        &self.log
    }

    /// The index of the last committed entry.
    pub fn end(&self) -> u64 {
        self.log.len() as u64
    }

    /// A leader's ISR change as the controller's AlterPartition takes it.
    pub fn alter_partition_data(&self, part: Part, request: &AlterIsr) -> AlterPartitionData {
        AlterPartitionData::from_alter_isr(self.tp(part), request)
    }

    pub fn tp(&self, part: Part) -> TopicIdPartition {
        TopicIdPartition { topic_id: self.topic_id, partition: part as i32 }
    }

    pub fn assignment(&self, part: Part) -> PartitionAssignment {
        assignment_in(&self.image, self.tp(part)).expect("the simulated topic exists")
    }

    pub fn leader(&self, part: Part) -> Option<BrokerId> {
        self.image.leader(self.tp(part))
    }

    /// Raft mode: this oracle decides nothing and mirrors the quorum's committed log, entry
    /// `index` being `records` (empty for a leader's first entry of its term).
    pub fn append_committed(&mut self, index: u64, records: Vec<MetadataRecord>) {
        assert_eq!(index, self.end() + 1, "the mirror gets committed entries in order");
        let delta = self.image.apply(index, &records);
        assert!(delta.rejected.is_empty(), "the quorum committed records the image refuses: {:?}", delta.rejected);
        self.log.push(records);
    }

    /// Commits and applies one entry. A record the image refuses is a controller bug (ours or the
    /// election code's): the simulator stops on it (design 14.4, 1).
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        let index = self.end() + 1;
        let delta = self.image.apply(index, &records);
        assert!(delta.rejected.is_empty(), "controller committed records the image refuses: {:?}", delta.rejected);
        self.log.push(records);
        if self.mode == OracleMode::Unclean {
            self.elect_unclean();
        }
    }

    /// The broken variant: every leaderless partition with a live replica outside its ISR elects
    /// it, alone in the new ISR.
    fn elect_unclean(&mut self) {
        let records: Vec<MetadataRecord> = self
            .image
            .leaderless_partitions()
            .into_iter()
            .filter_map(|tp| {
                let current = self.image.partition(tp)?;
                let chosen = current.replicas.iter().copied().find(|&r| self.image.is_active_broker(r))?;
                Some(MetadataRecord::PartitionChange(PartitionChangeRecord {
                    topic_id: tp.topic_id,
                    partition: tp.partition,
                    expected_partition_epoch: current.partition_epoch,
                    isr: Some(vec![chosen]),
                    leader: LeaderChange::Broker(chosen),
                    replicas: None,
                }))
            })
            .collect();
        if !records.is_empty() {
            let index = self.end() + 1;
            let delta = self.image.apply(index, &records);
            assert!(delta.rejected.is_empty(), "unclean election refused: {:?}", delta.rejected);
            self.log.push(records);
        }
    }

    /// A broker process announces itself. The same incarnation again (a retry) changes nothing; a
    /// new one fences the previous incarnation and moves its leaderships in the same entry.
    /// Returns whether anything was committed.
    pub fn on_register(&mut self, broker: BrokerId, incarnation: uuid::Uuid, now_ms: u64) -> bool {
        let mut records = Vec::new();
        if let Some(old) = self.image.broker(broker) {
            if old.incarnation_id == incarnation {
                return false;
            }
            if !old.fenced {
                records.push(MetadataRecord::BrokerChange {
                    broker_id: broker,
                    broker_epoch: old.epoch,
                    fenced: Some(true),
                    in_controlled_shutdown: None,
                });
            }
            records.extend(changes_removing_broker(&self.image, broker));
        }
        records.push(register_record(broker, incarnation));
        self.last_heartbeat_ms.insert(broker, now_ms);
        self.commit(records);
        true
    }

    /// A heartbeat of the current incarnation keeps the session; a fenced broker that has applied
    /// its own registration is unfenced, with elections for leaderless partitions. Returns
    /// whether anything was committed.
    pub fn on_heartbeat(&mut self, broker: BrokerId, broker_epoch: BrokerEpoch, applied: u64, now_ms: u64) -> bool {
        let Some(registration) = self.image.broker(broker) else { return false };
        if registration.epoch != broker_epoch {
            return false;
        }
        self.last_heartbeat_ms.insert(broker, now_ms);
        if !registration.fenced || applied < registration.epoch as u64 {
            return false;
        }
        let mut records = vec![MetadataRecord::BrokerChange {
            broker_id: broker,
            broker_epoch,
            fenced: Some(false),
            in_controlled_shutdown: None,
        }];
        records.extend(changes_adding_broker(&self.image, broker));
        self.commit(records);
        true
    }

    /// Fences every unfenced broker whose session expired. Returns whether anything was committed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let expired: Vec<(BrokerId, BrokerEpoch)> = self
            .image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| now_ms.saturating_sub(self.last_heartbeat_ms[&b.broker_id]) > SESSION_TIMEOUT_MS)
            .map(|b| (b.broker_id, b.epoch))
            .collect();
        for &(broker, broker_epoch) in &expired {
            let mut records = vec![MetadataRecord::BrokerChange {
                broker_id: broker,
                broker_epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            }];
            records.extend(changes_removing_broker(&self.image, broker));
            self.commit(records);
        }
        !expired.is_empty()
    }

    /// AlterPartition from a leader (design 5.4). `Ok` means accepted; the new registration
    /// reaches the leader through metadata, as the design's driver learns it.
    pub fn on_alter_partition(
        &mut self,
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
        part: Part,
        request: &AlterIsr,
    ) -> Result<(), i16> {
        check_sender(&self.image, broker, broker_epoch).map_err(|e| e.code().code())?;
        let data = self.alter_partition_data(part, request);
        let accepted = alter_partition(&self.image, broker, &data).map_err(|e| e.code().code())?;
        if let Some(record) = accepted.record {
            self.commit(vec![record]);
        }
        Ok(())
    }
}

fn register_record(broker: BrokerId, incarnation: uuid::Uuid) -> MetadataRecord {
    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: broker,
        incarnation_id: incarnation,
        host: format!("10.0.0.{broker}"),
        port: 9092,
        rack: None,
        fenced: true,
    })
}

/// The registration of a partition as the replica rules take it.
pub fn assignment_in(image: &MetadataImage, tp: TopicIdPartition) -> Option<PartitionAssignment> {
    let p = image.partition(tp)?;
    Some(PartitionAssignment {
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        leader: p.leader.unwrap_or(NO_LEADER),
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
    })
}
