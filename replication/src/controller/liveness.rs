//! Broker registration, heartbeats, fencing and controlled shutdown: Kafka's
//! `ClusterControlManager.registerBroker`, `BrokerHeartbeatManager.calculateNextBrokerState` and
//! `ReplicationControlManager.handleBroker{Fenced,Unfenced,InControlledShutdown}`.
//!
//! What is in the log and what is not: fenced / in controlled shutdown are registration state,
//! written as records, so every broker agrees who may lead. Last heartbeat time, reported metadata
//! offset and the index of a controlled-shutdown record are the active controller's memory
//! ([`BrokerSession`]): they change every two seconds per broker and mean nothing to a successor,
//! which starts every session at its own "now" (design 5.2) so a failover never fences everyone.
//!
//! A broker's state, from its registration: fenced → `Fenced`, else in controlled shutdown →
//! `ControlledShutdown`, else `Unfenced`. A heartbeat moves it:
//!
//! | from | heartbeat | to | records |
//! |---|---|---|---|
//! | Fenced | `want_shut_down` | ShutdownNow | none (already fenced) |
//! | Fenced | not `want_fence`, caught up | Unfenced | unfence, then elections for leaderless partitions |
//! | Unfenced | `want_fence` (and `want_shut_down`) | Fenced (ShutdownNow) | ISR removals and leader moves, then fence |
//! | Unfenced | `want_shut_down`, leads something | ControlledShutdown | in-controlled-shutdown, then ISR removals and leader moves |
//! | Unfenced | `want_shut_down`, leads nothing | ShutdownNow | as fencing |
//! | ControlledShutdown | leads nothing, every active broker has applied the shutdown entry | ShutdownNow | as fencing |
//!
//! "Caught up" is Kafka's rule: the broker's applied metadata index has reached the index of its
//! own registration (its broker epoch), so it knows every partition it replicates before it may
//! lead one. Record order within an entry follows Kafka's handlers.

use std::collections::BTreeMap;

use crate::metadata::{BrokerEpoch, BrokerRegistration, MetadataImage, MetadataRecord, RegisterBrokerRecord};
use crate::types::BrokerId;

use super::election::{changes_adding_broker, changes_removing_broker};
use super::errors::ErrorCode;

/// A BrokerRegistration request (Kafka API 62), the fields the controller uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistrationRequest {
    pub broker_id: BrokerId,
    /// Random per process start.
    pub incarnation_id: uuid::Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// The cluster id the broker was formatted with, if it knows one.
    pub cluster_id: Option<String>,
}

/// The reply to an accepted registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerRegistrationReply {
    /// The index of the committed `RegisterBroker` record: the epoch every later request carries.
    pub broker_epoch: BrokerEpoch,
}

/// Why a registration is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("Invalid broker id {0}: broker ids must be non-negative.")]
    InvalidBrokerId(BrokerId),
    /// Kafka's message, word for word.
    #[error("Expected cluster ID {expected}, but got cluster ID {found}")]
    InconsistentClusterId { expected: String, found: String },
}

impl RegistrationError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistrationError::InvalidBrokerId(_) => ErrorCode::InvalidRequest,
            RegistrationError::InconsistentClusterId { .. } => ErrorCode::InconsistentClusterId,
        }
    }
}

/// A BrokerHeartbeat request (Kafka API 63).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerHeartbeatRequest {
    pub broker_id: BrokerId,
    pub broker_epoch: BrokerEpoch,
    /// The index of the last metadata entry the broker has applied.
    pub current_metadata_offset: u64,
    /// The broker is not ready to lead (still recovering its logs).
    pub want_fence: bool,
    /// The broker is stopping (SIGTERM): move its leaderships away first.
    pub want_shut_down: bool,
}

/// Kafka's BrokerHeartbeat response fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The broker has applied its own registration.
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Controlled shutdown is complete (or was not needed): the broker may stop now.
    pub should_shut_down: bool,
}

/// Why a heartbeat is refused. Both are Kafka's STALE_BROKER_EPOCH, with its messages: the broker
/// re-registers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("No broker registration found for broker id {0}")]
    NotRegistered(BrokerId),
    #[error("Expected broker epoch {expected}, but got broker epoch {found}")]
    StaleBrokerEpoch { broker_id: BrokerId, expected: BrokerEpoch, found: BrokerEpoch },
}

impl HeartbeatError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HeartbeatError::NotRegistered(_) | HeartbeatError::StaleBrokerEpoch { .. } => ErrorCode::StaleBrokerEpoch,
        }
    }
}

/// What the active controller remembers of a broker between heartbeats (not in the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerSession {
    pub last_heartbeat_ms: u64,
    /// The metadata index the broker last reported; `None` until its first heartbeat to this
    /// controller (counts as 0: it blocks others' controlled shutdowns until it reports).
    pub metadata_offset: Option<u64>,
    /// The index of the committed entry that put the broker in controlled shutdown.
    pub shutdown_offset: Option<u64>,
}

impl BrokerSession {
    fn start(now_ms: u64) -> BrokerSession {
        BrokerSession { last_heartbeat_ms: now_ms, metadata_offset: None, shutdown_offset: None }
    }
}

/// Every registered broker's session.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    brokers: BTreeMap<BrokerId, BrokerSession>,
}

impl Sessions {
    /// A new active controller's sessions: every registered broker heard from "now". A broker already
    /// in controlled shutdown gets the image's index as its shutdown offset, a bound at or past its
    /// real record (the successor does not know which entry it was).
    pub(crate) fn activate(image: &MetadataImage, now_ms: u64) -> Sessions {
        let brokers = image
            .brokers
            .values()
            .map(|b| {
                let mut session = BrokerSession::start(now_ms);
                if b.in_controlled_shutdown {
                    session.shutdown_offset = Some(image.applied_index);
                }
                (b.broker_id, session)
            })
            .collect();
        Sessions { brokers }
    }

    pub(crate) fn get(&self, broker: BrokerId) -> Option<&BrokerSession> {
        self.brokers.get(&broker)
    }

    /// A new registration starts a new session.
    pub(crate) fn register(&mut self, broker: BrokerId, now_ms: u64) {
        self.brokers.insert(broker, BrokerSession::start(now_ms));
    }

    pub(crate) fn set_shutdown_offset(&mut self, broker: BrokerId, index: u64) {
        if let Some(session) = self.brokers.get_mut(&broker) {
            session.shutdown_offset = Some(index);
        }
    }

    fn get_or_start(&mut self, broker: BrokerId, now_ms: u64) -> &mut BrokerSession {
        self.brokers.entry(broker).or_insert_with(|| BrokerSession::start(now_ms))
    }

    /// Unfenced brokers of `image` not heard from for more than `timeout_ms` (Kafka's
    /// `hasValidSession` is false once `now > last + timeout`), the longest silent first (ties by
    /// id). Sessions of brokers no longer registered are dropped; a registered broker without one
    /// starts one now.
    pub(crate) fn expired(&mut self, image: &MetadataImage, now_ms: u64, timeout_ms: u64) -> Vec<BrokerId> {
        self.brokers.retain(|id, _| image.brokers.contains_key(id));
        let mut out: Vec<(u64, BrokerId)> = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| (self.get_or_start(b.broker_id, now_ms).last_heartbeat_ms, b.broker_id))
            .filter(|(last, _)| now_ms > last.saturating_add(timeout_ms))
            .collect();
        out.sort_unstable();
        out.into_iter().map(|(_, id)| id).collect()
    }

    /// Kafka's `lowestActiveOffset`: the least metadata index reported by an active broker (unfenced,
    /// not shutting down); `u64::MAX` if there is none.
    fn lowest_active_offset(&self, image: &MetadataImage) -> u64 {
        image
            .brokers
            .values()
            .filter(|b| b.is_active())
            .map(|b| self.brokers.get(&b.broker_id).and_then(|s| s.metadata_offset).unwrap_or(0))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// The records for a registration; empty when the same incarnation re-registers unchanged (a retry
/// whose reply was lost): its epoch stays.
///
/// A new incarnation (or a changed endpoint) replaces the registration, fenced. The old one is
/// removed from every ISR and its leaderships move first, in the same entry (design 5.2): a
/// restarted broker may have lost unsynced data, so it leads again only at a new leader epoch.
/// Kafka refuses a new incarnation while the old one's session is valid
/// (DUPLICATE_BROKER_REGISTRATION); here it wins at once, so a restart need not wait out the
/// session.
pub(crate) fn registration_records(
    image: &MetadataImage,
    request: &BrokerRegistrationRequest,
) -> Result<Vec<MetadataRecord>, RegistrationError> {
    let id = request.broker_id;
    if id < 0 {
        return Err(RegistrationError::InvalidBrokerId(id));
    }
    if let (Some(expected), Some(found)) = (&image.cluster_id, &request.cluster_id) {
        if expected != found {
            return Err(RegistrationError::InconsistentClusterId { expected: expected.clone(), found: found.clone() });
        }
    }
    let record = MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: id,
        incarnation_id: request.incarnation_id,
        host: request.host.clone(),
        port: request.port,
        rack: request.rack.clone(),
        fenced: true,
    });
    match image.broker(id) {
        None => Ok(vec![record]),
        Some(existing) if same_registration(existing, request) => Ok(Vec::new()),
        Some(_) => {
            let mut records = changes_removing_broker(image, id);
            records.push(record);
            Ok(records)
        }
    }
}

fn same_registration(existing: &BrokerRegistration, request: &BrokerRegistrationRequest) -> bool {
    existing.incarnation_id == request.incarnation_id
        && existing.host == request.host
        && existing.port == request.port
        && existing.rack == request.rack
}

/// Kafka's `BrokerControlState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BrokerState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

impl BrokerState {
    fn of(registration: &BrokerRegistration) -> BrokerState {
        if registration.fenced {
            BrokerState::Fenced
        } else if registration.in_controlled_shutdown {
            BrokerState::ControlledShutdown
        } else {
            BrokerState::Unfenced
        }
    }

    fn fenced(self) -> bool {
        matches!(self, BrokerState::Fenced | BrokerState::ShutdownNow)
    }
}

/// Handles one heartbeat: checks the epoch, decides the broker's next state (table in the module
/// docs), refreshes its session. Returns the records of the transition (empty if none) and the
/// reply, which describes the state after those records.
pub(crate) fn heartbeat(
    image: &MetadataImage,
    sessions: &mut Sessions,
    request: &BrokerHeartbeatRequest,
    now_ms: u64,
) -> Result<(Vec<MetadataRecord>, HeartbeatReply), HeartbeatError> {
    let id = request.broker_id;
    let registration = image.broker(id).ok_or(HeartbeatError::NotRegistered(id))?;
    if registration.epoch != request.broker_epoch {
        return Err(HeartbeatError::StaleBrokerEpoch {
            broker_id: id,
            expected: registration.epoch,
            found: request.broker_epoch,
        });
    }
    let is_caught_up = i128::from(request.current_metadata_offset) >= i128::from(registration.epoch);
    let current = BrokerState::of(registration);
    let next = match current {
        BrokerState::Fenced if request.want_shut_down => BrokerState::ShutdownNow,
        BrokerState::Fenced if !request.want_fence && is_caught_up => BrokerState::Unfenced,
        BrokerState::Fenced => BrokerState::Fenced,
        BrokerState::Unfenced if request.want_fence && request.want_shut_down => BrokerState::ShutdownNow,
        BrokerState::Unfenced if request.want_fence => BrokerState::Fenced,
        BrokerState::Unfenced if request.want_shut_down && leads_any(image, id) => BrokerState::ControlledShutdown,
        BrokerState::Unfenced if request.want_shut_down => BrokerState::ShutdownNow,
        BrokerState::Unfenced => BrokerState::Unfenced,
        BrokerState::ControlledShutdown if leads_any(image, id) => BrokerState::ControlledShutdown,
        BrokerState::ControlledShutdown => {
            let shutdown_offset = sessions.get(id).and_then(|s| s.shutdown_offset);
            if shutdown_offset.is_some_and(|offset| offset <= sessions.lowest_active_offset(image)) {
                BrokerState::ShutdownNow
            } else {
                BrokerState::ControlledShutdown
            }
        }
        BrokerState::ShutdownNow => unreachable!("no registration is in ShutdownNow"),
    };
    let records = match (current, next) {
        (current, next) if current == next => Vec::new(),
        (_, BrokerState::Fenced | BrokerState::ShutdownNow) => fence_records(image, id),
        (BrokerState::Fenced, BrokerState::Unfenced) => {
            let mut records = vec![MetadataRecord::BrokerChange {
                broker_id: id,
                broker_epoch: registration.epoch,
                fenced: Some(false),
                // A broker fenced at the end of a controlled shutdown that keeps running instead of
                // stopping comes back active, not into a shutdown it no longer asks for.
                in_controlled_shutdown: registration.in_controlled_shutdown.then_some(false),
            }];
            records.extend(changes_adding_broker(image, id));
            records
        }
        (BrokerState::Unfenced, BrokerState::ControlledShutdown) => {
            let mut records = vec![MetadataRecord::BrokerChange {
                broker_id: id,
                broker_epoch: registration.epoch,
                fenced: None,
                in_controlled_shutdown: Some(true),
            }];
            records.extend(changes_removing_broker(image, id));
            records
        }
        (current, next) => unreachable!("no transition from {current:?} to {next:?}"),
    };
    let session = sessions.get_or_start(id, now_ms);
    session.last_heartbeat_ms = now_ms;
    session.metadata_offset = Some(request.current_metadata_offset);
    let reply = HeartbeatReply {
        is_caught_up,
        is_fenced: next.fenced(),
        in_controlled_shutdown: next == BrokerState::ControlledShutdown,
        should_shut_down: next == BrokerState::ShutdownNow,
    };
    Ok((records, reply))
}

fn leads_any(image: &MetadataImage, broker: BrokerId) -> bool {
    image.partitions().any(|(_, p)| p.leader == Some(broker))
}

/// Fencing `broker` (Kafka's `handleBrokerFenced`): it leaves every ISR it is not the last member of
/// and every leadership moves to an acceptable ISR member (or to none), then the fence record.
/// Nothing if it is already fenced and out of every ISR it can leave.
pub(crate) fn fence_records(image: &MetadataImage, broker: BrokerId) -> Vec<MetadataRecord> {
    let mut records = changes_removing_broker(image, broker);
    if let Some(registration) = image.broker(broker).filter(|b| !b.fenced) {
        records.push(MetadataRecord::BrokerChange {
            broker_id: broker,
            broker_epoch: registration.epoch,
            fenced: Some(true),
            in_controlled_shutdown: None,
        });
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::tests::{image_with, tid};
    use crate::metadata::{LeaderChange, PartitionChangeRecord};
    use crate::types::TopicIdPartition;

    use crate::controller::tests::registration as request;

    fn beat(image: &MetadataImage, broker_id: BrokerId, offset: u64) -> BrokerHeartbeatRequest {
        BrokerHeartbeatRequest {
            broker_id,
            broker_epoch: image.brokers[&broker_id].epoch,
            current_metadata_offset: offset,
            want_fence: false,
            want_shut_down: false,
        }
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        let index = image.applied_index + 1;
        let delta = image.apply(index, records);
        assert!(delta.rejected.is_empty(), "{:?}", delta.rejected);
    }

    fn change(partition: i32, expected: i32, isr: Option<Vec<BrokerId>>, leader: LeaderChange) -> MetadataRecord {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: tid(1),
            partition,
            expected_partition_epoch: expected,
            isr,
            leader,
            replicas: None,
        })
    }

    #[test]
    fn first_registration_is_one_fenced_record() {
        let image = MetadataImage::new();
        let records = registration_records(&image, &request(1, 7)).unwrap();
        assert_eq!(
            records,
            vec![MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 1,
                incarnation_id: uuid::Uuid::from_u128(7),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                fenced: true,
            })]
        );
    }

    #[test]
    fn same_incarnation_unchanged_is_a_retry_without_records() {
        // image_with registers broker n with incarnation n.
        let image = image_with(&[1, 2], &[]);
        assert_eq!(registration_records(&image, &request(1, 1)).unwrap(), vec![]);
        // A changed endpoint is a new registration even with the same incarnation.
        let mut moved = request(1, 1);
        moved.port = 9093;
        assert!(matches!(registration_records(&image, &moved).unwrap()[..], [MetadataRecord::RegisterBroker(_)]));
    }

    #[test]
    fn new_incarnation_moves_leadership_and_leaves_isrs_in_the_same_entry() {
        let mut image =
            image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1), (&[2, 1], &[1], 1), (&[3, 2], &[3, 2], 3)]);
        let records = registration_records(&image, &request(1, 99)).unwrap();
        assert_eq!(
            records[..2],
            [
                change(0, 0, Some(vec![2, 3]), LeaderChange::Broker(2)),
                // 1 is the last ISR member: the ISR stays, the partition goes leaderless.
                change(1, 0, None, LeaderChange::None),
            ]
        );
        assert!(
            matches!(&records[2], MetadataRecord::RegisterBroker(r) if r.incarnation_id.as_u128() == 99 && r.fenced)
        );
        assert_eq!(records.len(), 3);
        apply(&mut image, &records);
        let b = image.broker(1).unwrap();
        assert!(b.fenced);
        assert_eq!(b.epoch, image.applied_index as i64);
    }

    #[test]
    fn registration_with_another_cluster_id_is_refused() {
        let mut image = MetadataImage::new();
        apply(&mut image, &[MetadataRecord::ClusterId { id: "a".into() }]);
        let mut req = request(1, 1);
        req.cluster_id = Some("b".into());
        let err = registration_records(&image, &req).unwrap_err();
        assert_eq!(err.to_string(), "Expected cluster ID a, but got cluster ID b");
        assert_eq!(err.code().code(), 104);
        req.cluster_id = Some("a".into());
        assert!(registration_records(&image, &req).is_ok());
        req.cluster_id = None;
        assert!(registration_records(&image, &req).is_ok());
        req.broker_id = -1;
        assert_eq!(registration_records(&image, &req).unwrap_err().code(), ErrorCode::InvalidRequest);
    }

    #[test]
    fn heartbeat_with_a_wrong_epoch_is_stale() {
        let image = image_with(&[1], &[]);
        let mut sessions = Sessions::activate(&image, 0);
        let mut req = beat(&image, 1, 10);
        req.broker_epoch += 1;
        let err = heartbeat(&image, &mut sessions, &req, 5).unwrap_err();
        assert_eq!(err, HeartbeatError::StaleBrokerEpoch { broker_id: 1, expected: 1, found: 2 });
        assert_eq!(err.to_string(), "Expected broker epoch 1, but got broker epoch 2");
        assert_eq!(err.code().code(), 77);
        req.broker_id = 9;
        let err = heartbeat(&image, &mut sessions, &req, 5).unwrap_err();
        assert_eq!(err.to_string(), "No broker registration found for broker id 9");
        assert_eq!(err.code(), ErrorCode::StaleBrokerEpoch);
        // A refused heartbeat does not refresh the session.
        assert_eq!(sessions.get(1).unwrap().last_heartbeat_ms, 0);
    }

    #[test]
    fn fenced_broker_is_unfenced_once_caught_up_with_its_registration() {
        let mut image = MetadataImage::new();
        let records = registration_records(&image, &request(1, 1)).unwrap();
        apply(&mut image, &records);
        apply(&mut image, &[]);
        let epoch = image.brokers[&1].epoch;
        assert_eq!(epoch, 1);
        let mut sessions = Sessions::activate(&image, 0);

        // Behind its registration: stays fenced, not caught up.
        let (records, reply) = heartbeat(&image, &mut sessions, &beat(&image, 1, 0), 10).unwrap();
        assert_eq!(records, vec![]);
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: false,
                is_fenced: true,
                in_controlled_shutdown: false,
                should_shut_down: false
            }
        );
        assert_eq!(sessions.get(1).unwrap().last_heartbeat_ms, 10);
        assert_eq!(sessions.get(1).unwrap().metadata_offset, Some(0));

        // Caught up but wants to stay fenced (still recovering logs).
        let mut req = beat(&image, 1, 1);
        req.want_fence = true;
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 20).unwrap();
        assert_eq!((records, reply.is_caught_up, reply.is_fenced), (vec![], true, true));

        // Caught up: unfenced.
        let (records, reply) = heartbeat(&image, &mut sessions, &beat(&image, 1, 1), 30).unwrap();
        assert_eq!(
            records,
            vec![MetadataRecord::BrokerChange {
                broker_id: 1,
                broker_epoch: 1,
                fenced: Some(false),
                in_controlled_shutdown: None
            }]
        );
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: true,
                is_fenced: false,
                in_controlled_shutdown: false,
                should_shut_down: false
            }
        );
    }

    #[test]
    fn unfencing_elects_leaders_for_leaderless_partitions_after_the_unfence_record() {
        let mut image = image_with(&[1, 2], &[(&[1, 2], &[1], -1)]);
        // Broker 1 restarted: fenced at a new epoch.
        let records = registration_records(&image, &request(1, 50)).unwrap();
        apply(&mut image, &records);
        let mut sessions = Sessions::activate(&image, 0);
        let offset = image.applied_index;
        let (records, reply) = heartbeat(&image, &mut sessions, &beat(&image, 1, offset), 1).unwrap();
        assert!(!reply.is_fenced);
        assert_eq!(
            records,
            vec![
                MetadataRecord::BrokerChange {
                    broker_id: 1,
                    broker_epoch: offset as i64,
                    fenced: Some(false),
                    in_controlled_shutdown: None
                },
                change(0, 0, None, LeaderChange::Broker(1)),
            ]
        );
        apply(&mut image, &records);
        let p = image.partition(TopicIdPartition { topic_id: tid(1), partition: 0 }).unwrap();
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 1));
    }

    #[test]
    fn unfencing_a_broker_fenced_after_controlled_shutdown_clears_the_shutdown() {
        let mut image = image_with(&[1, 2], &[]);
        let shut_down = MetadataRecord::BrokerChange {
            broker_id: 2,
            broker_epoch: 1,
            fenced: Some(true),
            in_controlled_shutdown: Some(true),
        };
        apply(&mut image, &[shut_down]);
        let mut sessions = Sessions::activate(&image, 0);
        let (records, reply) = heartbeat(&image, &mut sessions, &beat(&image, 2, 3), 1).unwrap();
        assert_eq!(
            records,
            vec![MetadataRecord::BrokerChange {
                broker_id: 2,
                broker_epoch: 1,
                fenced: Some(false),
                in_controlled_shutdown: Some(false)
            }]
        );
        assert!(!reply.is_fenced && !reply.in_controlled_shutdown);
        apply(&mut image, &records);
        assert!(image.is_active_broker(2));
    }

    #[test]
    fn want_fence_fences_an_unfenced_broker_and_moves_its_leaderships() {
        let image = image_with(&[1, 2], &[(&[1, 2], &[1, 2], 1)]);
        let mut sessions = Sessions::activate(&image, 0);
        let mut req = beat(&image, 1, 3);
        req.want_fence = true;
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 1).unwrap();
        assert_eq!(
            records,
            vec![
                change(0, 0, Some(vec![2]), LeaderChange::Broker(2)),
                MetadataRecord::BrokerChange {
                    broker_id: 1,
                    broker_epoch: 1,
                    fenced: Some(true),
                    in_controlled_shutdown: None
                },
            ]
        );
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: true,
                is_fenced: true,
                in_controlled_shutdown: false,
                should_shut_down: false
            }
        );
        // want_fence with want_shut_down: the same records, and shut down now.
        req.want_shut_down = true;
        let (records2, reply) = heartbeat(&image, &mut sessions, &req, 2).unwrap();
        assert_eq!(records2, records);
        assert!(reply.should_shut_down && reply.is_fenced);
    }

    #[test]
    fn shutdown_of_a_broker_leading_nothing_fences_it_at_once() {
        let image = image_with(&[1, 2], &[(&[1, 2], &[1, 2], 1)]);
        let mut sessions = Sessions::activate(&image, 0);
        let mut req = beat(&image, 2, 3);
        req.want_shut_down = true;
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 1).unwrap();
        assert_eq!(
            records,
            vec![
                change(0, 0, Some(vec![1]), LeaderChange::NoChange),
                MetadataRecord::BrokerChange {
                    broker_id: 2,
                    broker_epoch: 1,
                    fenced: Some(true),
                    in_controlled_shutdown: None
                },
            ]
        );
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: true,
                is_fenced: true,
                in_controlled_shutdown: false,
                should_shut_down: true
            }
        );
    }

    #[test]
    fn fenced_broker_asking_to_shut_down_may_at_once_without_records() {
        let mut image = image_with(&[1, 2], &[]);
        let records = fence_records(&image, 2);
        apply(&mut image, &records);
        let mut sessions = Sessions::activate(&image, 0);
        let mut req = beat(&image, 2, 0);
        req.want_shut_down = true;
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 1).unwrap();
        assert_eq!(records, vec![]);
        assert!(reply.should_shut_down && reply.is_fenced && !reply.is_caught_up);
    }

    #[test]
    fn controlled_shutdown_waits_for_active_brokers_to_apply_its_entry() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1)]);
        let mut sessions = Sessions::activate(&image, 0);
        let mut req = beat(&image, 1, 3);
        req.want_shut_down = true;
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 1).unwrap();
        assert_eq!(
            records,
            vec![
                MetadataRecord::BrokerChange {
                    broker_id: 1,
                    broker_epoch: 1,
                    fenced: None,
                    in_controlled_shutdown: Some(true)
                },
                change(0, 0, Some(vec![2, 3]), LeaderChange::Broker(2)),
            ]
        );
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: true,
                is_fenced: false,
                in_controlled_shutdown: true,
                should_shut_down: false
            }
        );
        apply(&mut image, &records);
        let shutdown_index = image.applied_index;
        sessions.set_shutdown_offset(1, shutdown_index);

        // Brokers 2 and 3 have not reported the entry yet.
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 2).unwrap();
        assert_eq!(records, vec![]);
        assert!(reply.in_controlled_shutdown && !reply.should_shut_down);
        heartbeat(&image, &mut sessions, &beat(&image, 2, shutdown_index), 3).unwrap();
        let (_, reply) = heartbeat(&image, &mut sessions, &req, 4).unwrap();
        assert!(!reply.should_shut_down, "broker 3 has not applied the shutdown entry");
        heartbeat(&image, &mut sessions, &beat(&image, 3, shutdown_index - 1), 5).unwrap();
        let (_, reply) = heartbeat(&image, &mut sessions, &req, 6).unwrap();
        assert!(!reply.should_shut_down, "broker 3 is one entry behind");
        heartbeat(&image, &mut sessions, &beat(&image, 3, shutdown_index), 7).unwrap();

        // Now: fenced in the same step, shut down.
        let (records, reply) = heartbeat(&image, &mut sessions, &req, 8).unwrap();
        assert_eq!(
            records,
            vec![MetadataRecord::BrokerChange {
                broker_id: 1,
                broker_epoch: 1,
                fenced: Some(true),
                in_controlled_shutdown: None
            }]
        );
        assert_eq!(
            reply,
            HeartbeatReply {
                is_caught_up: true,
                is_fenced: true,
                in_controlled_shutdown: false,
                should_shut_down: true
            }
        );
    }

    #[test]
    fn controlled_shutdown_of_a_sole_isr_member_leaves_the_partition_leaderless() {
        // As in Kafka: no other ISR member to take over, so the partition goes offline.
        let mut image = image_with(&[1, 2], &[(&[1, 2], &[1], 1)]);
        let mut sessions = Sessions::activate(&image, 0);
        let mut req = beat(&image, 1, 3);
        req.want_shut_down = true;
        let (records, _) = heartbeat(&image, &mut sessions, &req, 1).unwrap();
        assert_eq!(records[1], change(0, 0, None, LeaderChange::None));
        apply(&mut image, &records);
        assert!(!leads_any(&image, 1));
    }

    #[test]
    fn sessions_expire_after_the_timeout_for_unfenced_brokers_only() {
        let mut image = image_with(&[1, 2, 3], &[]);
        let records = fence_records(&image, 3);
        apply(&mut image, &records);
        let mut sessions = Sessions::activate(&image, 1_000);
        assert_eq!(
            sessions.expired(&image, 10_000, 9_000),
            Vec::<BrokerId>::new(),
            "exactly the timeout is still valid"
        );
        assert_eq!(sessions.expired(&image, 10_001, 9_000), vec![1, 2], "fenced broker 3 does not expire");
        heartbeat(&image, &mut sessions, &beat(&image, 2, 3), 10_001).unwrap();
        assert_eq!(sessions.expired(&image, 10_002, 9_000), vec![1]);
        // A broker registered after activation gets a session when first looked at.
        let mut later = image.clone();
        let records = registration_records(&later, &request(4, 4)).unwrap();
        apply(&mut later, &records);
        let unfence = MetadataRecord::BrokerChange {
            broker_id: 4,
            broker_epoch: later.brokers[&4].epoch,
            fenced: Some(false),
            in_controlled_shutdown: None,
        };
        apply(&mut later, &[unfence]);
        assert_eq!(sessions.expired(&later, 20_000, 9_000), vec![1, 2]);
        assert_eq!(sessions.get(4).unwrap().last_heartbeat_ms, 20_000);
        // The longest silent comes first, whatever its id.
        heartbeat(&image, &mut sessions, &beat(&image, 1, 3), 10_500).unwrap();
        assert_eq!(sessions.expired(&later, 20_000, 9_000), vec![2, 1]);
    }

    #[test]
    fn fence_records_move_leadership_then_fence() {
        let image = image_with(&[1, 2, 3], &[(&[2, 1, 3], &[2, 1, 3], 2), (&[1, 3], &[1, 3], 1)]);
        assert_eq!(
            fence_records(&image, 2),
            vec![
                change(0, 0, Some(vec![1, 3]), LeaderChange::Broker(1)),
                MetadataRecord::BrokerChange {
                    broker_id: 2,
                    broker_epoch: 1,
                    fenced: Some(true),
                    in_controlled_shutdown: None
                },
            ]
        );
    }
}
