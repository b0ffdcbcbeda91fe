//! AlterPartition: a partition leader asks the controller to change its ISR (after a follower caught
//! up or fell behind). Validation follows Kafka's `ReplicationControlManager.alterPartition` and
//! `validateAlterPartitionData` check by check, in the same order, because the order decides which
//! error a leader sees and leaders react differently to each (retry, refresh metadata, give up).
//!
//! An accepted request becomes a `PartitionChange` with the new ISR: the partition epoch moves, the
//! leader epoch does not (metadata 3.6+ semantics: an ISR change is not a leader change). A request
//! whose ISR equals the current one is accepted with no record, as in Kafka. Left out from Kafka:
//! leader recovery state (no unclean election, so never RECOVERING) and reassignment.

use crate::metadata::{BrokerEpoch, MetadataImage, MetadataRecord, PartitionRegistration};
use crate::types::{BrokerId, LeaderEpoch, PartitionEpoch, TopicId, TopicIdPartition};

use super::election::PartitionChangeBuilder;
use super::errors::ErrorCode;

/// One member of the requested ISR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsrMember {
    pub broker_id: BrokerId,
    /// The member's broker epoch as the leader knows it; `None` (Kafka's -1) skips the check.
    pub broker_epoch: Option<BrokerEpoch>,
}

/// One partition of an AlterPartition request (v2+: topics by id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionData {
    pub tp: TopicIdPartition,
    /// The sender's leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the sender's ISR change was computed against.
    pub partition_epoch: PartitionEpoch,
    pub new_isr: Vec<IsrMember>,
}

impl AlterPartitionData {
    /// A leader's proposed ISR change (`partition_replica`'s form) as the
    /// controller takes it.
    pub fn from_alter_isr(tp: TopicIdPartition, request: &crate::partition_replica::AlterIsr) -> AlterPartitionData {
        AlterPartitionData {
            tp,
            leader_epoch: request.leader_epoch,
            partition_epoch: request.partition_epoch,
            new_isr: request
                .new_isr
                .iter()
                .map(|m| IsrMember {
                    broker_id: m.broker,
                    broker_epoch: (m.broker_epoch >= 0).then_some(m.broker_epoch),
                })
                .collect(),
        }
    }
}

/// An accepted request: the record to propose (none if the ISR is unchanged) and the registration
/// after it, for the reply (leader, ISR, leader epoch, partition epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionAccepted {
    pub record: Option<MetadataRecord>,
    pub partition: PartitionRegistration,
}

/// Why an AlterPartition request (or one partition of it) is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlterPartitionError {
    /// Whole request: the sender is not registered at the broker epoch it sent.
    #[error("broker {broker_id} sent broker epoch {request}, its registration has {current:?}")]
    StaleBrokerEpoch { broker_id: BrokerId, current: Option<BrokerEpoch>, request: BrokerEpoch },
    #[error("topic id {0} is unknown")]
    UnknownTopicId(TopicId),
    #[error("partition {} of topic {} is unknown", .0.partition, .0.topic_id)]
    UnknownTopicOrPartition(TopicIdPartition),
    /// The request is ahead of this image: the sender has seen a newer controller's decisions.
    #[error(
        "the request's epochs (leader {request_leader_epoch}, partition {request_partition_epoch}) are ahead of \
         ours (leader {current_leader_epoch}, partition {current_partition_epoch})"
    )]
    NotController {
        current_leader_epoch: LeaderEpoch,
        request_leader_epoch: LeaderEpoch,
        current_partition_epoch: PartitionEpoch,
        request_partition_epoch: PartitionEpoch,
    },
    #[error("leader epoch {request} is older than the current {current}")]
    FencedLeaderEpoch { current: LeaderEpoch, request: LeaderEpoch },
    #[error("invalid request: {0}")]
    InvalidRequest(InvalidAlterPartition),
    #[error("partition epoch {request} is older than the current {current}")]
    InvalidUpdateVersion { current: PartitionEpoch, request: PartitionEpoch },
    #[error("ineligible replicas in the new ISR: {0:?}")]
    IneligibleReplica(Vec<IneligibleReplica>),
}

impl AlterPartitionError {
    /// The Kafka error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            AlterPartitionError::StaleBrokerEpoch { .. } => ErrorCode::StaleBrokerEpoch,
            AlterPartitionError::UnknownTopicId(_) => ErrorCode::UnknownTopicId,
            AlterPartitionError::UnknownTopicOrPartition(_) => ErrorCode::UnknownTopicOrPartition,
            AlterPartitionError::NotController { .. } => ErrorCode::NotController,
            AlterPartitionError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            AlterPartitionError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            AlterPartitionError::InvalidUpdateVersion { .. } => ErrorCode::InvalidUpdateVersion,
            AlterPartitionError::IneligibleReplica(_) => ErrorCode::IneligibleReplica,
        }
    }
}

/// The INVALID_REQUEST cases.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAlterPartition {
    #[error("broker {sender} is not the leader (the leader is {leader:?})")]
    NotLeader { sender: BrokerId, leader: Option<BrokerId> },
    #[error("the new ISR {isr:?} has a duplicate, a negative id or a broker outside the replicas {replicas:?}")]
    IsrNotWithinReplicas { isr: Vec<BrokerId>, replicas: Vec<BrokerId> },
    #[error("the new ISR {isr:?} does not contain the leader {leader}")]
    IsrWithoutLeader { isr: Vec<BrokerId>, leader: BrokerId },
    /// Two entries of one request name the same partition: the second would be computed against a
    /// partition epoch the first is about to change.
    #[error("the partition appears more than once in the request")]
    DuplicatePartition,
}

/// An ISR member the controller will not accept, and why (Kafka's `ineligibleReplicasForIsr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IneligibleReplica {
    pub broker_id: BrokerId,
    pub reason: IneligibleReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IneligibleReason {
    NotRegistered,
    ShuttingDown,
    Fenced,
    /// The leader saw another incarnation of this broker catch up, not the registered one.
    BrokerEpochMismatch {
        requested: BrokerEpoch,
        expected: BrokerEpoch,
    },
}

/// The request-level check that comes before any partition (Kafka's `checkBrokerEpoch`).
pub fn check_sender(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: BrokerEpoch,
) -> Result<(), AlterPartitionError> {
    let current = image.broker(broker_id).map(|b| b.epoch);
    if current != Some(broker_epoch) {
        return Err(AlterPartitionError::StaleBrokerEpoch { broker_id, current, request: broker_epoch });
    }
    Ok(())
}

/// Validates one partition of an AlterPartition request from `sender` and builds its change.
/// Call [`check_sender`] first.
pub fn alter_partition(
    image: &MetadataImage,
    sender: BrokerId,
    data: &AlterPartitionData,
) -> Result<AlterPartitionAccepted, AlterPartitionError> {
    let tp = data.tp;
    let topic = image.topic(tp.topic_id).ok_or(AlterPartitionError::UnknownTopicId(tp.topic_id))?;
    let current = usize::try_from(tp.partition)
        .ok()
        .and_then(|p| topic.partitions.get(p))
        .ok_or(AlterPartitionError::UnknownTopicOrPartition(tp))?;

    // Ahead of us: this controller has likely lost its role and not noticed yet; NOT_CONTROLLER
    // sends the leader looking for the new one.
    if data.leader_epoch > current.leader_epoch || data.partition_epoch > current.partition_epoch {
        return Err(AlterPartitionError::NotController {
            current_leader_epoch: current.leader_epoch,
            request_leader_epoch: data.leader_epoch,
            current_partition_epoch: current.partition_epoch,
            request_partition_epoch: data.partition_epoch,
        });
    }
    if data.leader_epoch < current.leader_epoch {
        return Err(AlterPartitionError::FencedLeaderEpoch {
            current: current.leader_epoch,
            request: data.leader_epoch,
        });
    }
    let Some(leader) = current.leader.filter(|&leader| leader == sender) else {
        return Err(AlterPartitionError::InvalidRequest(InvalidAlterPartition::NotLeader {
            sender,
            leader: current.leader,
        }));
    };
    if data.partition_epoch < current.partition_epoch {
        return Err(AlterPartitionError::InvalidUpdateVersion {
            current: current.partition_epoch,
            request: data.partition_epoch,
        });
    }

    let new_isr: Vec<BrokerId> = data.new_isr.iter().map(|m| m.broker_id).collect();
    if !isr_within_replicas(&current.replicas, &new_isr) {
        return Err(AlterPartitionError::InvalidRequest(InvalidAlterPartition::IsrNotWithinReplicas {
            isr: new_isr,
            replicas: current.replicas.clone(),
        }));
    }
    if !new_isr.contains(&leader) {
        return Err(AlterPartitionError::InvalidRequest(InvalidAlterPartition::IsrWithoutLeader {
            isr: new_isr,
            leader,
        }));
    }
    let ineligible: Vec<IneligibleReplica> = data.new_isr.iter().filter_map(|m| ineligibility(image, m)).collect();
    if !ineligible.is_empty() {
        return Err(AlterPartitionError::IneligibleReplica(ineligible));
    }

    let record = PartitionChangeBuilder::new(image, tp).expect("the partition exists").with_target_isr(new_isr).build();
    let partition = match &record {
        Some(MetadataRecord::PartitionChange(change)) => {
            // The leader is in the new ISR and eligible, hence acceptable: it keeps leading.
            debug_assert!(change.leader.is_no_change(), "an ISR change moved the leader: {change:?}");
            current.merge(change).expect("a validated ISR change applies")
        }
        Some(other) => unreachable!("the builder only builds partition changes: {other:?}"),
        None => current.clone(),
    };
    Ok(AlterPartitionAccepted { record, partition })
}

/// Kafka's `Replicas.validateIsr`: no negative id, no duplicate, every member a replica. An empty
/// ISR passes here and fails the leader check next, as in Kafka.
fn isr_within_replicas(replicas: &[BrokerId], isr: &[BrokerId]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    isr.iter().all(|&id| id >= 0 && seen.insert(id) && replicas.contains(&id))
}

fn ineligibility(image: &MetadataImage, member: &IsrMember) -> Option<IneligibleReplica> {
    let reason = match image.broker(member.broker_id) {
        None => IneligibleReason::NotRegistered,
        Some(b) if b.in_controlled_shutdown => IneligibleReason::ShuttingDown,
        Some(b) if b.fenced => IneligibleReason::Fenced,
        Some(b) => match member.broker_epoch {
            Some(requested) if requested != b.epoch => {
                IneligibleReason::BrokerEpochMismatch { requested, expected: b.epoch }
            }
            _ => return None,
        },
    };
    Some(IneligibleReplica { broker_id: member.broker_id, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::tests::{image_with, register, tid};
    use crate::metadata::{LeaderChange, PartitionChangeRecord};

    fn tp(partition: i32) -> TopicIdPartition {
        TopicIdPartition { topic_id: tid(1), partition }
    }

    fn members(ids: &[BrokerId]) -> Vec<IsrMember> {
        ids.iter().map(|&broker_id| IsrMember { broker_id, broker_epoch: None }).collect()
    }

    fn request(leader_epoch: LeaderEpoch, partition_epoch: PartitionEpoch, isr: &[BrokerId]) -> AlterPartitionData {
        AlterPartitionData { tp: tp(0), leader_epoch, partition_epoch, new_isr: members(isr) }
    }

    /// Replicas [1, 2, 3, 4], ISR [1, 2], leader 1, at leader epoch 2 and partition epoch 5.
    fn image() -> MetadataImage {
        let mut image = image_with(&[1, 2, 3, 4], &[(&[1, 2, 3, 4], &[1, 2, 3], 1)]);
        let steps = [
            PartitionChangeRecord {
                topic_id: tid(1),
                partition: 0,
                expected_partition_epoch: 0,
                isr: None,
                leader: LeaderChange::Broker(2),
                replicas: None,
            },
            PartitionChangeRecord {
                topic_id: tid(1),
                partition: 0,
                expected_partition_epoch: 1,
                isr: None,
                leader: LeaderChange::Broker(1),
                replicas: None,
            },
            PartitionChangeRecord {
                topic_id: tid(1),
                partition: 0,
                expected_partition_epoch: 2,
                isr: Some(vec![1, 2, 3]),
                leader: LeaderChange::NoChange,
                replicas: None,
            },
            PartitionChangeRecord {
                topic_id: tid(1),
                partition: 0,
                expected_partition_epoch: 3,
                isr: Some(vec![1, 3]),
                leader: LeaderChange::NoChange,
                replicas: None,
            },
            PartitionChangeRecord {
                topic_id: tid(1),
                partition: 0,
                expected_partition_epoch: 4,
                isr: Some(vec![1, 2]),
                leader: LeaderChange::NoChange,
                replicas: None,
            },
        ];
        for step in steps {
            let index = image.applied_index + 1;
            assert!(image.apply(index, &[MetadataRecord::PartitionChange(step)]).rejected.is_empty());
        }
        let p = image.partition(tp(0)).unwrap();
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (Some(1), vec![1, 2], 2, 5));
        image
    }

    fn set_broker(image: &mut MetadataImage, broker_id: BrokerId, fenced: Option<bool>, shutdown: Option<bool>) {
        let broker_epoch = image.brokers[&broker_id].epoch;
        let index = image.applied_index + 1;
        let record = MetadataRecord::BrokerChange { broker_id, broker_epoch, fenced, in_controlled_shutdown: shutdown };
        assert!(image.apply(index, &[record]).rejected.is_empty());
    }

    #[test]
    fn expanding_the_isr_bumps_the_partition_epoch_only() {
        let mut image = image();
        let accepted = alter_partition(&image, 1, &request(2, 5, &[1, 2, 3])).unwrap();
        assert_eq!(
            accepted.partition,
            PartitionRegistration {
                replicas: vec![1, 2, 3, 4],
                isr: vec![1, 2, 3],
                leader: Some(1),
                leader_epoch: 2,
                partition_epoch: 6
            }
        );
        let record = accepted.record.unwrap();
        assert_eq!(
            record,
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: tid(1),
                partition: 0,
                expected_partition_epoch: 5,
                isr: Some(vec![1, 2, 3]),
                leader: LeaderChange::NoChange,
                replicas: None,
            })
        );
        // The reply's state is exactly what every broker will apply.
        let index = image.applied_index + 1;
        assert!(image.apply(index, &[record]).rejected.is_empty());
        assert_eq!(image.partition(tp(0)), Some(&accepted.partition));
    }

    #[test]
    fn shrinking_the_isr_keeps_the_leader_epoch() {
        let accepted = alter_partition(&image(), 1, &request(2, 5, &[1])).unwrap();
        assert_eq!(
            (accepted.partition.isr.clone(), accepted.partition.leader_epoch, accepted.partition.partition_epoch),
            (vec![1], 2, 6)
        );
    }

    #[test]
    fn unchanged_isr_is_accepted_without_a_record() {
        let accepted = alter_partition(&image(), 1, &request(2, 5, &[1, 2])).unwrap();
        assert_eq!(accepted.record, None);
        assert_eq!(accepted.partition.partition_epoch, 5);
    }

    #[test]
    fn checks_come_in_kafkas_order() {
        let image = image();
        let check = |sender: BrokerId, data: AlterPartitionData| alter_partition(&image, sender, &data).unwrap_err();

        // Unknown topic, then unknown partition.
        let mut data = request(2, 5, &[1, 2]);
        data.tp.topic_id = tid(9);
        assert_eq!(check(1, data), AlterPartitionError::UnknownTopicId(tid(9)));
        let mut data = request(2, 5, &[1, 2]);
        data.tp.partition = 1;
        assert_eq!(check(1, data).code().code(), 3);

        // Epochs ahead of ours come before everything else, even a wrong sender and a bad ISR.
        assert_eq!(check(3, request(3, 5, &[9])).code().code(), 41);
        assert_eq!(check(3, request(2, 6, &[9])).code().code(), 41);
        assert_eq!(check(3, request(1, 6, &[9])).code().code(), 41, "partition epoch ahead, leader epoch behind");
        // Leader epoch behind, before the sender check.
        assert_eq!(check(3, request(1, 5, &[9])), AlterPartitionError::FencedLeaderEpoch { current: 2, request: 1 });
        // Not the leader, before the partition epoch.
        assert_eq!(
            check(3, request(2, 4, &[9])),
            AlterPartitionError::InvalidRequest(InvalidAlterPartition::NotLeader { sender: 3, leader: Some(1) })
        );
        // Partition epoch behind, before the ISR checks.
        assert_eq!(check(1, request(2, 4, &[9])), AlterPartitionError::InvalidUpdateVersion { current: 5, request: 4 });
        // ISR outside the replicas, duplicated, negative, or without the leader.
        for isr in [&[1, 9][..], &[1, 2, 2], &[1, -1]] {
            let err = check(1, request(2, 5, isr));
            assert!(
                matches!(err, AlterPartitionError::InvalidRequest(InvalidAlterPartition::IsrNotWithinReplicas { .. })),
                "{isr:?}: {err:?}"
            );
        }
        for isr in [&[2, 3][..], &[]] {
            assert_eq!(
                check(1, request(2, 5, isr)),
                AlterPartitionError::InvalidRequest(InvalidAlterPartition::IsrWithoutLeader {
                    isr: isr.to_vec(),
                    leader: 1
                })
            );
        }
    }

    #[test]
    fn fenced_shutting_down_unregistered_or_restarted_members_are_ineligible() {
        let mut image = image();
        set_broker(&mut image, 2, Some(true), None);
        set_broker(&mut image, 3, None, Some(true));
        let index = image.applied_index + 1;
        image.apply(index, &[MetadataRecord::UnregisterBroker { broker_id: 4, broker_epoch: 1 }]);
        assert!(image.broker(4).is_none());
        let err = alter_partition(&image, 1, &request(2, 5, &[1, 2, 3, 4])).unwrap_err();
        assert_eq!(err.code().code(), 107);
        assert_eq!(
            err,
            AlterPartitionError::IneligibleReplica(vec![
                IneligibleReplica { broker_id: 2, reason: IneligibleReason::Fenced },
                IneligibleReplica { broker_id: 3, reason: IneligibleReason::ShuttingDown },
                IneligibleReplica { broker_id: 4, reason: IneligibleReason::NotRegistered },
            ])
        );

        // Broker 2 restarts: the leader saw the old incarnation (epoch 1) catch up.
        let mut image = self::image();
        let index = image.applied_index + 1;
        image.apply(index, &[register(2, None)]);
        set_broker(&mut image, 2, Some(false), None);
        let mut data = request(2, 5, &[1, 2]);
        data.new_isr[1].broker_epoch = Some(1);
        assert_eq!(
            alter_partition(&image, 1, &data).unwrap_err(),
            AlterPartitionError::IneligibleReplica(vec![IneligibleReplica {
                broker_id: 2,
                reason: IneligibleReason::BrokerEpochMismatch { requested: 1, expected: index as i64 },
            }])
        );
        data.new_isr[1].broker_epoch = Some(index as i64);
        assert!(alter_partition(&image, 1, &data).is_ok());
    }

    #[test]
    fn sender_must_be_registered_at_its_epoch() {
        let image = image();
        assert_eq!(check_sender(&image, 1, 1), Ok(()));
        let err = check_sender(&image, 1, 7).unwrap_err();
        assert_eq!(err, AlterPartitionError::StaleBrokerEpoch { broker_id: 1, current: Some(1), request: 7 });
        assert_eq!(err.code().code(), 77);
        assert_eq!(check_sender(&image, 9, 1).unwrap_err().code().code(), 77);
    }

    #[test]
    fn every_error_maps_to_its_kafka_code() {
        let tp = tp(0);
        let cases = [
            (AlterPartitionError::StaleBrokerEpoch { broker_id: 1, current: None, request: 1 }, 77),
            (AlterPartitionError::UnknownTopicId(tid(1)), 100),
            (AlterPartitionError::UnknownTopicOrPartition(tp), 3),
            (
                AlterPartitionError::NotController {
                    current_leader_epoch: 0,
                    request_leader_epoch: 1,
                    current_partition_epoch: 0,
                    request_partition_epoch: 0,
                },
                41,
            ),
            (AlterPartitionError::FencedLeaderEpoch { current: 1, request: 0 }, 74),
            (AlterPartitionError::InvalidRequest(InvalidAlterPartition::NotLeader { sender: 1, leader: None }), 42),
            (AlterPartitionError::InvalidRequest(InvalidAlterPartition::DuplicatePartition), 42),
            (AlterPartitionError::InvalidUpdateVersion { current: 1, request: 0 }, 95),
            (AlterPartitionError::IneligibleReplica(vec![]), 107),
        ];
        for (err, code) in cases {
            assert_eq!(err.code().code(), code, "{err:?}");
        }
    }

    #[test]
    fn a_leaderless_partition_refuses_every_sender() {
        let mut image = image_with(&[1, 2], &[(&[1, 2], &[1], 1)]);
        let index = image.applied_index + 1;
        let change = PartitionChangeRecord {
            topic_id: tid(1),
            partition: 0,
            expected_partition_epoch: 0,
            isr: None,
            leader: LeaderChange::None,
            replicas: None,
        };
        image.apply(index, &[MetadataRecord::PartitionChange(change)]);
        assert_eq!(
            alter_partition(&image, 1, &request(1, 1, &[1])).unwrap_err(),
            AlterPartitionError::InvalidRequest(InvalidAlterPartition::NotLeader { sender: 1, leader: None })
        );
    }
}
