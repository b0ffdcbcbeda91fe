//! The controller core driven as a driver would: requests and ticks in, proposals committed in order
//! to an image with `MetadataImage::apply` (asserting no record is ever rejected), replies collected.

use std::collections::{BTreeMap, VecDeque};

use super::*;
use crate::metadata::image::tests::image_with;
use crate::metadata::{BrokerEpoch, LeaderChange, MetadataImage, MetadataRecord, PartitionChangeRecord};
use crate::types::{BrokerId, TopicId, TopicIdPartition};

const SEED: u64 = 42;

/// A driver with instant, in-order commits (when asked) and brokers that apply every entry at once.
struct Harness {
    core: ControllerCore,
    image: MetadataImage,
    in_flight: VecDeque<Proposal>,
    replies: BTreeMap<RequestToken, ControllerReply>,
    now_ms: u64,
    next_token: RequestToken,
    /// Every proposal, in order.
    proposed: Vec<Proposal>,
}

impl Harness {
    fn new(config: ControllerConfig) -> Harness {
        Harness::with_image(config, MetadataImage::new(), SEED)
    }

    fn with_image(config: ControllerConfig, image: MetadataImage, seed: u64) -> Harness {
        Harness {
            core: ControllerCore::new(config, &image, 1, 0, seed),
            image,
            in_flight: VecDeque::new(),
            replies: BTreeMap::new(),
            now_ms: 0,
            next_token: 1,
            proposed: Vec::new(),
        }
    }

    fn absorb(&mut self, out: ControllerOutput) -> Vec<Proposal> {
        for (token, reply) in out.replies {
            assert!(self.replies.insert(token, reply).is_none(), "token {token} answered twice");
        }
        self.in_flight.extend(out.proposals.iter().cloned());
        self.proposed.extend(out.proposals.iter().cloned());
        out.proposals
    }

    fn submit(&mut self, request: ControllerRequest) -> RequestToken {
        let token = self.next_token;
        self.next_token += 1;
        let out = self.core.handle(token, request, self.now_ms);
        self.absorb(out);
        token
    }

    /// The proposals the tick made (also queued for commit).
    fn tick(&mut self) -> Vec<Proposal> {
        let out = self.core.tick(self.now_ms);
        self.absorb(out)
    }

    fn commit_one(&mut self) -> bool {
        let Some(proposal) = self.in_flight.pop_front() else { return false };
        let index = self.image.applied_index + 1;
        let delta = self.image.apply(index, &proposal.records);
        assert!(delta.rejected.is_empty(), "rejected: {:?}", delta.rejected);
        let out = self.core.on_committed(&self.image, &delta, Some(proposal.id));
        self.absorb(out);
        true
    }

    fn commit_all(&mut self) {
        while self.commit_one() {}
    }

    fn reply(&mut self, token: RequestToken) -> ControllerReply {
        self.replies.remove(&token).unwrap_or_else(|| panic!("no reply for token {token}"))
    }

    /// Submits, commits everything, returns the reply.
    fn call(&mut self, request: ControllerRequest) -> ControllerReply {
        let token = self.submit(request);
        self.commit_all();
        self.reply(token)
    }

    fn register(&mut self, broker_id: BrokerId, incarnation: u128) -> BrokerEpoch {
        match self.call(ControllerRequest::BrokerRegistration(registration(broker_id, incarnation))) {
            ControllerReply::BrokerRegistration(Ok(reply)) => reply.broker_epoch,
            other => panic!("{other:?}"),
        }
    }

    fn heartbeat_request(&self, broker_id: BrokerId, broker_epoch: BrokerEpoch, shut_down: bool) -> ControllerRequest {
        ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
            broker_id,
            broker_epoch,
            current_metadata_offset: self.image.applied_index,
            want_fence: false,
            want_shut_down: shut_down,
        })
    }

    /// A caught-up heartbeat, committed.
    fn beat(&mut self, broker_id: BrokerId, broker_epoch: BrokerEpoch) -> HeartbeatReply {
        let request = self.heartbeat_request(broker_id, broker_epoch, false);
        heartbeat_reply(self.call(request)).unwrap()
    }

    fn leaders(&self) -> BTreeMap<TopicIdPartition, Option<BrokerId>> {
        self.image.partitions().map(|(tp, p)| (tp, p.leader)).collect()
    }
}

/// A registration of `broker_id` at 127.0.0.<id>:9092 (also used by the liveness tests).
pub(crate) fn registration(broker_id: BrokerId, incarnation: u128) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        broker_id,
        incarnation_id: uuid::Uuid::from_u128(incarnation),
        host: format!("127.0.0.{broker_id}"),
        port: 9092,
        rack: None,
        cluster_id: None,
    }
}

fn heartbeat_reply(reply: ControllerReply) -> Result<HeartbeatReply, HeartbeatError> {
    match reply {
        ControllerReply::BrokerHeartbeat(result) => result,
        other => panic!("{other:?}"),
    }
}

fn created(reply: ControllerReply) -> Vec<CreateTopicResult> {
    match reply {
        ControllerReply::CreateTopics(results) => results,
        other => panic!("{other:?}"),
    }
}

fn create_request(name: &str, partitions: i32, rf: i16) -> ControllerRequest {
    ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        }],
        validate_only: false,
    })
}

fn manual_request(name: &str, assignments: &[&[BrokerId]]) -> ControllerRequest {
    ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: assignments
                .iter()
                .zip(0..)
                .map(|(ids, partition_index)| ReplicaAssignment { partition_index, broker_ids: ids.to_vec() })
                .collect(),
            configs: BTreeMap::new(),
        }],
        validate_only: false,
    })
}

fn happy(results: Vec<CreateTopicResult>) -> TopicId {
    assert_eq!(results.len(), 1);
    results[0].outcome.as_ref().unwrap_or_else(|e| panic!("{e}")).topic_id
}

/// Three brokers registered, caught up and unfenced; `__consumer_offsets` created by the first tick.
fn three_brokers() -> (Harness, BTreeMap<BrokerId, BrokerEpoch>) {
    let mut h = Harness::new(ControllerConfig::new(3));
    // All three registrations in flight at once: each is validated against the others.
    let tokens: Vec<_> = [1, 2, 3]
        .iter()
        .map(|&id| h.submit(ControllerRequest::BrokerRegistration(registration(id, 100 + id as u128))))
        .collect();
    assert_eq!(h.core.pending_proposals(), 3);
    assert!(h.replies.is_empty(), "no registration is answered before it commits");
    h.commit_all();
    let mut epochs = BTreeMap::new();
    for (token, id) in tokens.into_iter().zip([1, 2, 3]) {
        match h.reply(token) {
            ControllerReply::BrokerRegistration(Ok(reply)) => epochs.insert(id, reply.broker_epoch),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(epochs, BTreeMap::from([(1, 1), (2, 2), (3, 3)]), "a broker's epoch is its registration's index");
    assert!(h.image.brokers.values().all(|b| b.fenced));

    // Behind its registration: not caught up, stays fenced, nothing proposed.
    let request = ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
        broker_id: 3,
        broker_epoch: 3,
        current_metadata_offset: 2,
        want_fence: false,
        want_shut_down: false,
    });
    let token = h.submit(request);
    assert!(h.in_flight.is_empty());
    assert_eq!(
        heartbeat_reply(h.reply(token)).unwrap(),
        HeartbeatReply { is_caught_up: false, is_fenced: true, in_controlled_shutdown: false, should_shut_down: false }
    );

    for id in [1, 2, 3] {
        let reply = h.beat(id, epochs[&id]);
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
    assert!(h.image.brokers.values().all(|b| !b.fenced));

    let proposals = h.tick();
    assert_eq!(proposals.len(), 1, "the offsets topic, once three brokers are active");
    h.commit_all();
    let offsets = h.image.topic_by_name(OFFSETS_TOPIC).unwrap();
    assert_eq!(offsets.partitions.len(), 50);
    assert!(offsets.partitions.iter().all(|p| p.replicas.len() == 3 && p.isr == p.replicas));
    (h, epochs)
}

#[test]
fn three_brokers_fail_over_rejoin_and_shut_down_cleanly() {
    let (mut h, mut epochs) = three_brokers();

    // A topic of 6 partitions, RF 3: leaders spread evenly, ISR = replicas, epochs 0.
    let orders = happy(created(h.call(create_request("orders", 6, 3))));
    let topic = h.image.topic(orders).unwrap();
    let mut led = BTreeMap::new();
    for p in &topic.partitions {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr, p.replicas);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(p.replicas[0]), 0, 0));
        *led.entry(p.replicas[0]).or_insert(0) += 1;
    }
    assert_eq!(led, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    // A partition only broker 2 replicates: it goes offline with it and returns with it.
    let solo = happy(created(h.call(manual_request("solo", &[&[2]]))));
    let solo_tp = TopicIdPartition { topic_id: solo, partition: 0 };

    // Broker 2 falls silent at t = 0; 1 and 3 heartbeat every 2 s.
    let before = h.image.clone();
    let mut fenced_at = None;
    for step in 1..=12 {
        h.now_ms = step * 1_000;
        if step % 2 == 0 {
            h.beat(1, epochs[&1]);
            h.beat(3, epochs[&3]);
        }
        let proposals = h.tick();
        if !proposals.is_empty() {
            assert_eq!(proposals.len(), 1);
            fenced_at = Some(h.now_ms);
            break;
        }
    }
    assert_eq!(fenced_at, Some(10_000), "fenced once more than 9 s passed since its last heartbeat (t = 0)");
    let fence = h.in_flight.back().unwrap().records.clone();
    assert_eq!(
        fence.last(),
        Some(&MetadataRecord::BrokerChange {
            broker_id: 2,
            broker_epoch: 2,
            fenced: Some(true),
            in_controlled_shutdown: None
        })
    );
    h.commit_all();
    assert!(h.image.broker(2).unwrap().fenced);
    for (tp, old) in before.partitions() {
        let new = h.image.partition(tp).unwrap();
        let expected_isr: Vec<BrokerId> = old.isr.iter().copied().filter(|&id| id != 2).collect();
        if tp == solo_tp {
            // The last ISR member: the ISR stays, the partition has no leader at a new epoch.
            assert_eq!((new.isr.clone(), new.leader, new.leader_epoch), (vec![2], None, 1));
        } else if old.leader == Some(2) {
            let successor = old.replicas.iter().copied().find(|id| expected_isr.contains(id));
            assert_eq!(new.leader, successor, "{tp:?}: the first ISR replica in assignment order");
            assert_eq!(new.leader_epoch, old.leader_epoch + 1);
            assert_eq!(new.isr, expected_isr);
        } else {
            assert_eq!((new.leader, new.leader_epoch), (old.leader, old.leader_epoch), "{tp:?}");
            assert_eq!(new.isr, expected_isr);
        }
        if old.isr.contains(&2) {
            assert_eq!(new.partition_epoch, old.partition_epoch + 1);
        }
    }
    // Fencing happened once: later ticks propose nothing more.
    h.now_ms += 5_000;
    h.beat(1, epochs[&1]);
    h.beat(3, epochs[&3]);
    assert!(h.tick().is_empty());

    // Broker 2 restarts: a new incarnation, fenced at a new epoch; it left every ISR already, so the
    // registration is the only record.
    let token = h.submit(ControllerRequest::BrokerRegistration(registration(2, 202)));
    assert!(matches!(&h.in_flight.back().unwrap().records[..], [MetadataRecord::RegisterBroker(r)] if r.fenced));
    h.commit_all();
    let epoch = match h.reply(token) {
        ControllerReply::BrokerRegistration(Ok(reply)) => reply.broker_epoch,
        other => panic!("{other:?}"),
    };
    assert_eq!(epoch, h.image.applied_index as BrokerEpoch);
    // The old epoch is stale now.
    let stale = h.heartbeat_request(2, epochs[&2], false);
    let err = heartbeat_reply(h.call(stale)).unwrap_err();
    assert_eq!(
        (err.code().code(), err.to_string()),
        (77, format!("Expected broker epoch {epoch}, but got broker epoch 2"))
    );
    epochs.insert(2, epoch);

    // Not yet caught up with its registration: stays fenced.
    let mut request = h.heartbeat_request(2, epoch, false);
    if let ControllerRequest::BrokerHeartbeat(r) = &mut request {
        r.current_metadata_offset = epoch as u64 - 1;
    }
    let reply = heartbeat_reply(h.call(request)).unwrap();
    assert!(reply.is_fenced && !reply.is_caught_up);
    // Caught up: unfenced, and the leaderless partition gets it back as leader at a new epoch.
    let token = h.submit(h.heartbeat_request(2, epoch, false));
    assert_eq!(
        h.in_flight.back().unwrap().records,
        vec![
            MetadataRecord::BrokerChange {
                broker_id: 2,
                broker_epoch: epoch,
                fenced: Some(false),
                in_controlled_shutdown: None
            },
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: solo,
                partition: 0,
                expected_partition_epoch: 1,
                isr: None,
                leader: LeaderChange::Broker(2),
                replicas: None,
            }),
        ]
    );
    assert!(!h.replies.contains_key(&token), "answered only once the unfence commits");
    h.commit_all();
    assert!(!heartbeat_reply(h.reply(token)).unwrap().is_fenced);
    let p = h.image.partition(solo_tp).unwrap();
    assert_eq!((p.leader, p.leader_epoch), (Some(2), 2));
    assert!(h.image.leaderless_partitions().is_empty());

    // Broker 1 shuts down in a controlled way: its leaderships move first.
    assert!(h.leaders().values().any(|&l| l == Some(1)));
    let token = h.submit(h.heartbeat_request(1, epochs[&1], true));
    let records = h.in_flight.back().unwrap().records.clone();
    assert_eq!(
        records[0],
        MetadataRecord::BrokerChange {
            broker_id: 1,
            broker_epoch: 1,
            fenced: None,
            in_controlled_shutdown: Some(true)
        }
    );
    h.commit_all();
    let shutdown_index = h.image.applied_index;
    assert_eq!(
        heartbeat_reply(h.reply(token)).unwrap(),
        HeartbeatReply { is_caught_up: true, is_fenced: false, in_controlled_shutdown: true, should_shut_down: false }
    );
    assert!(h.leaders().values().all(|&l| l != Some(1)), "every leadership moved away");
    assert!(h.image.partitions().all(|(_, p)| !p.isr.contains(&1)));
    assert!(h.image.leaderless_partitions().is_empty(), "3 was in every ISR to take over");

    // Not complete until brokers 2 and 3 report the shutdown entry.
    let reply = h.beat(1, epochs[&1]);
    assert!(reply.in_controlled_shutdown && !reply.should_shut_down);
    h.beat(3, epochs[&3]);
    let reply = heartbeat_reply(h.call(h.heartbeat_request(1, epochs[&1], true))).unwrap();
    assert!(!reply.should_shut_down, "broker 2 has not reported since the shutdown entry");
    assert!(h.image.applied_index >= shutdown_index);
    h.beat(2, epochs[&2]);
    let token = h.submit(h.heartbeat_request(1, epochs[&1], true));
    assert_eq!(
        h.in_flight.back().unwrap().records,
        vec![MetadataRecord::BrokerChange {
            broker_id: 1,
            broker_epoch: 1,
            fenced: Some(true),
            in_controlled_shutdown: None
        }]
    );
    h.commit_all();
    assert_eq!(
        heartbeat_reply(h.reply(token)).unwrap(),
        HeartbeatReply { is_caught_up: true, is_fenced: true, in_controlled_shutdown: false, should_shut_down: true }
    );
    assert!(h.image.broker(1).unwrap().fenced);
    assert_eq!(h.core.pending_proposals(), 0);
    assert_eq!(h.core.speculative_image(), &h.image);
}

#[test]
fn same_seed_same_proposals_different_seed_different_topic_ids() {
    let run = |seed: u64| {
        let mut h = Harness::with_image(ControllerConfig::new(1), MetadataImage::new(), seed);
        let epoch = h.register(1, 1);
        h.beat(1, epoch);
        h.tick();
        h.call(create_request("t", 3, 1));
        h.commit_all();
        h.proposed
    };
    assert_eq!(run(7), run(7));
    let topic_ids = |proposals: Vec<Proposal>| -> Vec<TopicId> {
        proposals
            .into_iter()
            .flat_map(|p| p.records)
            .filter_map(|r| match r {
                MetadataRecord::Topic { topic_id, .. } => Some(topic_id),
                _ => None,
            })
            .collect()
    };
    assert_ne!(topic_ids(run(7)), topic_ids(run(8)));
}

#[test]
fn a_reply_waits_for_every_earlier_proposal() {
    let (mut h, epochs) = three_brokers();
    let create = h.submit(create_request("t", 1, 1));
    // This heartbeat changes nothing, but the topic it was computed after is not committed yet.
    let beat = h.submit(h.heartbeat_request(1, epochs[&1], false));
    assert_eq!(h.in_flight.len(), 1);
    assert!(h.replies.is_empty());
    h.commit_all();
    assert!(matches!(h.reply(create), ControllerReply::CreateTopics(_)));
    assert!(heartbeat_reply(h.reply(beat)).is_ok());
    // With nothing pending, a no-op heartbeat is answered at once.
    let beat = h.submit(h.heartbeat_request(1, epochs[&1], false));
    assert!(h.replies.contains_key(&beat));
}

#[test]
fn request_level_refusals_are_answered_at_once() {
    let (mut h, _) = three_brokers();
    // The cluster id arrives in an entry this core did not propose.
    let index = h.image.applied_index + 1;
    let delta = h.image.apply(index, &[MetadataRecord::ClusterId { id: "c1".into() }]);
    h.core.on_committed(&h.image, &delta, None);
    h.submit(create_request("t", 1, 1));
    let stale = h.submit(h.heartbeat_request(1, 99, false));
    let wrong_cluster = h.submit(ControllerRequest::BrokerRegistration(BrokerRegistrationRequest {
        cluster_id: Some("other".into()),
        ..registration(4, 4)
    }));
    let alter = h.submit(ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: 99,
        partitions: Vec::new(),
    }));
    assert_eq!(h.in_flight.len(), 1, "only the topic is proposed");
    assert_eq!(heartbeat_reply(h.reply(stale)).unwrap_err().code(), ErrorCode::StaleBrokerEpoch);
    match h.reply(wrong_cluster) {
        ControllerReply::BrokerRegistration(Err(e)) => {
            assert_eq!(
                (e.code().code(), e.to_string()),
                (104, "Expected cluster ID c1, but got cluster ID other".into())
            )
        }
        other => panic!("{other:?}"),
    }
    match h.reply(alter) {
        ControllerReply::AlterPartition(Err(e)) => assert_eq!(e.code().code(), 77),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_second_create_of_a_pending_topic_already_exists() {
    let (mut h, _) = three_brokers();
    let first = h.submit(create_request("t", 1, 1));
    let second = h.submit(create_request("t", 2, 1));
    assert_eq!(h.in_flight.len(), 1);
    h.commit_all();
    assert!(created(h.reply(first))[0].outcome.is_ok());
    let err = created(h.reply(second))[0].outcome.clone().unwrap_err();
    assert_eq!((err.code().code(), err.to_string()), (36, "Topic 't' already exists.".into()));
    // Deleted while a partition increase is pending: the removal is computed after it.
    let grow = h.submit(ControllerRequest::CreatePartitions(CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic { name: "t".into(), count: 3, assignments: None }],
        validate_only: false,
    }));
    let delete =
        h.submit(ControllerRequest::DeleteTopics(DeleteTopicsRequest { topics: vec![TopicRef::Name("t".into())] }));
    let again =
        h.submit(ControllerRequest::DeleteTopics(DeleteTopicsRequest { topics: vec![TopicRef::Name("t".into())] }));
    h.commit_all();
    assert!(matches!(h.reply(grow), ControllerReply::CreatePartitions(r) if r[0].outcome.is_ok()));
    assert!(matches!(h.reply(delete), ControllerReply::DeleteTopics(r) if r[0].outcome.is_ok()));
    match h.reply(again) {
        ControllerReply::DeleteTopics(r) => assert_eq!(r[0].outcome.as_ref().unwrap_err().code().code(), 3),
        other => panic!("{other:?}"),
    }
    assert!(h.image.topic_by_name("t").is_none());
}

#[test]
fn a_fence_computed_behind_a_pending_isr_change_names_its_partition_epoch() {
    let (mut h, epochs) = three_brokers();
    let t = happy(created(h.call(manual_request("t", &[&[1, 2, 3]]))));
    let tp = TopicIdPartition { topic_id: t, partition: 0 };
    // Leader 1 shrinks the ISR to [1, 2]; not committed yet.
    let alter = h.submit(ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: epochs[&1],
        partitions: vec![AlterPartitionData {
            tp,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![
                IsrMember { broker_id: 1, broker_epoch: None },
                IsrMember { broker_id: 2, broker_epoch: Some(2) },
            ],
        }],
    }));
    // Broker 2 expires meanwhile (1 and 3 keep heartbeating).
    h.now_ms = 10_000;
    h.submit(h.heartbeat_request(1, epochs[&1], false));
    h.submit(h.heartbeat_request(3, epochs[&3], false));
    let fence = h.tick();
    assert_eq!(fence.len(), 1);
    let change = fence[0]
        .records
        .iter()
        .find_map(|r| match r {
            MetadataRecord::PartitionChange(c) if c.topic_id == t => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((change.expected_partition_epoch, change.isr.clone()), (1, Some(vec![1])));
    h.commit_all();
    match h.reply(alter) {
        ControllerReply::AlterPartition(Ok(results)) => {
            assert_eq!(results[0].outcome.as_ref().unwrap().isr, vec![1, 2]);
            assert_eq!(results[0].outcome.as_ref().unwrap().partition_epoch, 1);
        }
        other => panic!("{other:?}"),
    }
    let p = h.image.partition(tp).unwrap();
    assert_eq!((p.isr.clone(), p.leader, p.partition_epoch), (vec![1], Some(1), 2));
}

#[test]
fn alter_partition_through_the_core_refuses_duplicates_and_expands_the_isr() {
    let (mut h, epochs) = three_brokers();
    let t = happy(created(h.call(manual_request("t", &[&[1, 2], &[2, 1]]))));
    let tp0 = TopicIdPartition { topic_id: t, partition: 0 };
    let tp1 = TopicIdPartition { topic_id: t, partition: 1 };
    let shrink = |tp| AlterPartitionData {
        tp,
        leader_epoch: 0,
        partition_epoch: 0,
        new_isr: vec![IsrMember { broker_id: 1, broker_epoch: Some(1) }],
    };
    let reply = h.call(ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: epochs[&1],
        partitions: vec![shrink(tp0), shrink(tp0), shrink(tp1)],
    }));
    let results = match reply {
        ControllerReply::AlterPartition(Ok(results)) => results,
        other => panic!("{other:?}"),
    };
    assert_eq!(results[0].outcome.as_ref().unwrap().isr, vec![1]);
    assert_eq!(results[1].outcome, Err(AlterPartitionError::InvalidRequest(InvalidAlterPartition::DuplicatePartition)));
    assert_eq!(
        results[2].outcome.as_ref().unwrap_err().code(),
        ErrorCode::InvalidRequest,
        "1 does not lead partition 1"
    );
    assert_eq!(h.image.partition(tp0).unwrap().isr, vec![1]);
    // Back to [1, 2] at the new partition epoch.
    let reply = h.call(ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: epochs[&1],
        partitions: vec![AlterPartitionData {
            tp: tp0,
            leader_epoch: 0,
            partition_epoch: 1,
            new_isr: vec![
                IsrMember { broker_id: 1, broker_epoch: Some(1) },
                IsrMember { broker_id: 2, broker_epoch: Some(2) },
            ],
        }],
    }));
    assert!(matches!(reply, ControllerReply::AlterPartition(Ok(r)) if r[0].outcome.is_ok()));
    let p = h.image.partition(tp0).unwrap();
    assert_eq!((p.isr.clone(), p.leader_epoch, p.partition_epoch), (vec![1, 2], 0, 2));
}

#[test]
fn a_registration_retried_while_pending_gets_the_committed_epoch() {
    let mut h = Harness::new(ControllerConfig::new(1));
    let first = h.submit(ControllerRequest::BrokerRegistration(registration(1, 1)));
    let retry = h.submit(ControllerRequest::BrokerRegistration(registration(1, 1)));
    assert_eq!(h.in_flight.len(), 1, "the retry proposes nothing");
    h.commit_all();
    let epoch = |reply| match reply {
        ControllerReply::BrokerRegistration(Ok(r)) => r.broker_epoch,
        other => panic!("{other:?}"),
    };
    assert_eq!(epoch(h.reply(first)), 1);
    assert_eq!(epoch(h.reply(retry)), 1);
}

#[test]
fn a_restart_while_leading_moves_leadership_in_the_registration_entry() {
    let (mut h, _) = three_brokers();
    let t = happy(created(h.call(manual_request("t", &[&[2, 1, 3]]))));
    let tp = TopicIdPartition { topic_id: t, partition: 0 };
    assert_eq!(h.image.leader(tp), Some(2));
    // Broker 2 restarts before its session expired (Kafka would answer DUPLICATE_BROKER_REGISTRATION).
    let epoch = h.register(2, 999);
    let p = h.image.partition(tp).unwrap();
    assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (Some(1), 1, vec![1, 3]));
    let b = h.image.broker(2).unwrap();
    assert_eq!((b.fenced, b.epoch, b.incarnation_id.as_u128()), (true, epoch, 999));
}

#[test]
fn resign_hands_back_every_waiting_request() {
    let (mut h, epochs) = three_brokers();
    let a = h.submit(create_request("a", 1, 1));
    let b = h.submit(h.heartbeat_request(2, epochs[&2], false));
    let c = h.submit(create_request("c", 1, 1));
    assert_eq!(h.core.waiting_replies(), 3);
    let Harness { core, .. } = h;
    assert_eq!(core.resign(), vec![a, b, c]);
}

#[test]
fn a_foreign_entry_restarts_the_speculation_from_the_committed_image() {
    let (mut h, _) = three_brokers();
    // An entry this core did not propose (say, from before it became active).
    let index = h.image.applied_index + 1;
    let record = MetadataRecord::Config {
        resource: crate::metadata::ConfigResource::Cluster,
        name: "k".into(),
        value: Some("v".into()),
    };
    let delta = h.image.apply(index, &[record]);
    let out = h.core.on_committed(&h.image, &delta, None);
    assert_eq!(out, ControllerOutput::default());
    assert_eq!(h.core.speculative_image(), &h.image);
}

/// The brokers that `proposals` fence (a fence entry ends with the fencing `BrokerChange`).
fn fenced_by(proposals: &[Proposal]) -> Vec<BrokerId> {
    proposals
        .iter()
        .filter_map(|p| match p.records.last() {
            Some(MetadataRecord::BrokerChange { broker_id, fenced: Some(true), .. }) => Some(*broker_id),
            _ => None,
        })
        .collect()
}

#[test]
fn sessions_start_when_the_controller_becomes_active() {
    // A new controller over an image with three unfenced brokers and no session history.
    let image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1)]);
    let mut h = Harness::with_image(ControllerConfig::new(3), image, SEED);
    h.core = ControllerCore::new(ControllerConfig::new(3), &h.image, 2, 50_000, SEED);
    h.now_ms = 59_000;
    let proposals = h.tick();
    assert_eq!(proposals.len(), 1, "the offsets topic, no fence: sessions started at 50 s");
    h.commit_all();
    // Nobody heartbeat to the new controller: one fence per tick, all sessions equally old, so by
    // id.
    let mut fences = Vec::new();
    for tick in 0..3 {
        h.now_ms = 59_001 + 100 * tick;
        let fenced = fenced_by(&h.tick());
        assert_eq!(fenced.len(), 1, "one fence per tick: {fenced:?}");
        fences.extend(fenced);
        h.commit_all();
    }
    assert_eq!(fences, vec![1, 2, 3]);
    // The last fence leaves the partition leaderless with its ISR intact.
    let tp = TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition: 0 };
    let p = h.image.partition(tp).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (None, vec![3]));
}

#[test]
fn the_longest_silent_broker_is_fenced_first_and_a_late_heartbeat_saves_the_next() {
    // Leader 1 went silent first; follower 2's heartbeats are late. Both sessions have lapsed at the
    // tick: 1 alone is fenced and its leadership moves to 2, whose heartbeat before the next tick
    // keeps it in. Fencing both in one tick would have left the partition on 3 alone.
    let image = image_with(&[1, 2, 3], &[(&[1, 2, 3], &[1, 2, 3], 1)]);
    let mut h = Harness::with_image(ControllerConfig::new(3), image, SEED);
    h.core = ControllerCore::new(ControllerConfig::new(3), &h.image, 2, 50_000, SEED);
    h.now_ms = 50_100;
    h.tick();
    h.commit_all();
    let epoch = |h: &Harness, id: BrokerId| h.image.brokers[&id].epoch;
    h.now_ms = 50_200;
    h.beat(2, epoch(&h, 2));
    h.now_ms = 59_000;
    h.beat(3, epoch(&h, 3));
    h.now_ms = 59_250;
    assert_eq!(fenced_by(&h.tick()), vec![1], "1 and 2 have both lapsed; 1 has been silent longer");
    h.commit_all();
    h.now_ms = 59_260;
    h.beat(2, epoch(&h, 2));
    h.now_ms = 59_350;
    assert_eq!(fenced_by(&h.tick()), Vec::<BrokerId>::new(), "2 heartbeat in time for the next tick");
    h.commit_all();
    let tp = TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition: 0 };
    let p = h.image.partition(tp).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (Some(2), vec![2, 3]));
}

#[test]
fn a_new_controller_completes_a_shutdown_begun_under_the_old_one() {
    let mut image = image_with(&[1, 2], &[(&[1, 2], &[2], 2)]);
    let index = image.applied_index + 1;
    image.apply(
        index,
        &[MetadataRecord::BrokerChange {
            broker_id: 1,
            broker_epoch: 1,
            fenced: None,
            in_controlled_shutdown: Some(true),
        }],
    );
    let mut h = Harness::with_image(ControllerConfig::new(2), image, SEED);
    assert_eq!(h.core.session(1).unwrap().shutdown_offset, Some(index));
    // Broker 2 has not reported to this controller yet: 1 waits.
    let reply = heartbeat_reply(h.call(h.heartbeat_request(1, 1, true))).unwrap();
    assert!(reply.in_controlled_shutdown && !reply.should_shut_down);
    h.beat(2, 1);
    let reply = heartbeat_reply(h.call(h.heartbeat_request(1, 1, true))).unwrap();
    assert!(reply.should_shut_down);
}

#[test]
fn automatic_preferred_elections_move_at_most_a_bounded_batch_per_round() {
    // 250 partitions led by 2 although 1 is preferred and in sync.
    let spec: Vec<(&[BrokerId], &[BrokerId], BrokerId)> = (0..250).map(|_| (&[1, 2][..], &[1, 2][..], 2)).collect();
    let image = image_with(&[1, 2], &spec);
    let mut config = ControllerConfig::new(2);
    config.leader_imbalance_check_interval_ms = 60_000;
    let mut h = Harness::with_image(config, image, SEED);
    let keep_alive = |h: &mut Harness| {
        h.submit(h.heartbeat_request(1, 1, false));
        h.submit(h.heartbeat_request(2, 1, false));
    };
    h.now_ms = 59_999;
    keep_alive(&mut h);
    let offsets = h.tick();
    assert_eq!(offsets.len(), 1, "only the offsets topic: the interval has not passed");
    h.commit_all();

    let mut rounds = Vec::new();
    for step in 0..5 {
        h.now_ms = 60_000 + step;
        keep_alive(&mut h);
        let proposals = h.tick();
        rounds.push(proposals.iter().map(|p| p.records.len()).sum::<usize>());
    }
    assert_eq!(rounds, vec![100, 100, 50, 0, 0], "leftovers move on the next ticks, then wait an interval");
    h.commit_all();
    assert!(h.image.partitions().all(|(_, p)| p.leader == Some(p.replicas[0])));
    let tp = TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition: 249 };
    assert_eq!(h.image.partition(tp).unwrap().leader_epoch, 1);
}

fn elect(h: &mut Harness, election: ElectionType, topics: Option<&[(&str, &[i32])]>) -> Vec<(String, i32, i16)> {
    let topics = topics.map(|ts| {
        ts.iter().map(|(name, ps)| ElectLeadersTopic { name: name.to_string(), partitions: ps.to_vec() }).collect()
    });
    match h.call(ControllerRequest::ElectLeaders(ElectLeadersRequest { election, topics })) {
        ControllerReply::ElectLeaders(results) => results
            .into_iter()
            .flat_map(|t| {
                t.partitions
                    .into_iter()
                    .map(move |(p, outcome)| (t.name.clone(), p, outcome.map_or_else(|e| e.code().code(), |()| 0)))
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn elect_leaders_preferred_moves_only_partitions_whose_preferred_replica_can_lead() {
    // t-0: preferred 1 follows; t-1: preferred 2 leads; t-2: preferred 3 is not in the ISR.
    let image = image_with(&[1, 2, 3], &[(&[1, 2], &[1, 2], 2), (&[2, 1], &[2, 1], 2), (&[3, 1], &[1], 1)]);
    let mut h = Harness::with_image(ControllerConfig::new(3), image, SEED);
    let tp = |partition| TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition };
    let epoch_before = h.image.partition(tp(0)).unwrap().leader_epoch;
    let asked: &[(&str, &[i32])] = &[("t", &[0, 1, 2, 7, 0]), ("nope", &[0])];
    let results = elect(&mut h, ElectionType::Preferred, Some(asked));
    let expected: Vec<(String, i32, i16)> = vec![
        ("t".into(), 0, 0),
        ("t".into(), 1, 84),
        ("t".into(), 2, 80),
        ("t".into(), 7, 3),
        ("t".into(), 0, 0),
        ("nope".into(), 0, 3),
    ];
    assert_eq!(results, expected, "one outcome per partition asked for, in order; a repeat gets the first's");
    assert_eq!(h.image.leader(tp(0)), Some(1));
    assert_eq!(h.image.partition(tp(0)).unwrap().leader_epoch, epoch_before + 1, "elected once");
    assert_eq!(h.image.leader(tp(2)), Some(1));
    // Asked again: nothing left to do.
    assert_eq!(elect(&mut h, ElectionType::Preferred, Some(&[("t", &[0])])), vec![("t".into(), 0, 84)]);
}

#[test]
fn elect_leaders_for_every_partition_reports_only_those_that_needed_one() {
    let image = image_with(&[1, 2, 3], &[(&[1, 2], &[1, 2], 2), (&[2, 1], &[2, 1], 2), (&[3, 1], &[1], 1)]);
    let mut h = Harness::with_image(ControllerConfig::new(3), image, SEED);
    assert_eq!(elect(&mut h, ElectionType::Preferred, None), vec![("t".into(), 0, 0), ("t".into(), 2, 80)]);
    assert_eq!(elect(&mut h, ElectionType::Preferred, None), vec![("t".into(), 2, 80)]);
}

#[test]
fn elect_leaders_unclean_never_elects_outside_the_isr() {
    // t-0 leads already; t-1 is leaderless with its only ISR member fenced, while replica 2 (outside
    // the ISR) is alive: Kafka's unclean election would pick 2 and lose what only 1 has.
    let mut image = image_with(&[1, 2], &[(&[1, 2], &[1, 2], 1), (&[1, 2], &[1], 1)]);
    let broker_epoch = image.brokers[&1].epoch;
    let mut fence = changes_removing_broker(&image, 1);
    fence.push(MetadataRecord::BrokerChange {
        broker_id: 1,
        broker_epoch,
        fenced: Some(true),
        in_controlled_shutdown: None,
    });
    let index = image.applied_index + 1;
    assert!(image.apply(index, &fence).rejected.is_empty());
    let mut h = Harness::with_image(ControllerConfig::new(2), image, SEED);
    let tp0 = TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition: 0 };
    let tp1 = TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition: 1 };
    assert_eq!((h.image.leader(tp0), h.image.leader(tp1)), (Some(2), None));
    let results = elect(&mut h, ElectionType::Unclean, Some(&[("t", &[0, 1])]));
    assert_eq!(results, vec![("t".into(), 0, 84), ("t".into(), 1, 83)]);
    assert_eq!(h.image.leader(tp1), None, "replica 2 is not in the ISR");
}

#[test]
fn elect_leaders_unclean_gives_a_leaderless_partition_a_live_isr_member() {
    // Leaderless while ISR member 1 is live: the window between a fence and the unfence that
    // elects it (`changes_adding_broker`), made here directly.
    let mut image = image_with(&[1, 2], &[(&[1, 2], &[1, 2], 1)]);
    let tp = TopicIdPartition { topic_id: crate::metadata::image::tests::tid(1), partition: 0 };
    let no_leader = MetadataRecord::PartitionChange(PartitionChangeRecord {
        topic_id: tp.topic_id,
        partition: 0,
        expected_partition_epoch: image.partition(tp).unwrap().partition_epoch,
        isr: None,
        leader: LeaderChange::None,
        replicas: None,
    });
    let index = image.applied_index + 1;
    assert!(image.apply(index, &[no_leader]).rejected.is_empty());
    let mut h = Harness::with_image(ControllerConfig::new(2), image, SEED);
    assert_eq!(elect(&mut h, ElectionType::Unclean, Some(&[("t", &[0])])), vec![("t".into(), 0, 0)]);
    assert_eq!(h.image.leader(tp), Some(1), "the first ISR member in assignment order");
}

#[test]
fn elect_leaders_over_the_bound_elects_nothing() {
    // One election more than a request may make: Kafka refuses the operation whole.
    let n = MAX_ELECTIONS_PER_REQUEST + 1;
    let parts: Vec<(&[BrokerId], &[BrokerId], BrokerId)> = vec![(&[1, 2], &[1, 2], 2); n];
    let mut image = image_with(&[1, 2], &parts);
    // One partition that needs nothing keeps its own outcome.
    let topic = crate::metadata::image::tests::tid(1);
    let extra = crate::metadata::image::tests::partition(topic, n as i32, &[1, 2], &[1, 2], 1);
    let index = image.applied_index + 1;
    assert!(image.apply(index, &[extra]).rejected.is_empty());
    let mut h = Harness::with_image(ControllerConfig::new(2), image, SEED);
    let before = h.image.applied_index;
    let results = elect(&mut h, ElectionType::Preferred, None);
    assert_eq!(results.len(), n, "the partition needing nothing is left out, as always");
    assert!(results.iter().all(|(_, _, code)| *code == 44), "{:?}", &results[..3]);
    assert_eq!(h.image.applied_index, before, "nothing proposed");
    let asked: &[(&str, &[i32])] = &[("t", &[0, n as i32])];
    assert_eq!(
        elect(&mut h, ElectionType::Preferred, Some(asked)),
        vec![("t".into(), 0, 0), ("t".into(), n as i32, 84)]
    );
}

#[test]
fn single_node_creates_the_offsets_topic_once_its_broker_is_unfenced() {
    let mut h = Harness::new(ControllerConfig::new(1));
    let epoch = h.register(1, 1);
    assert!(h.tick().is_empty(), "the only broker is still fenced");
    h.beat(1, epoch);
    let proposals = h.tick();
    assert_eq!(proposals.len(), 1);
    h.commit_all();
    let offsets = h.image.topic_by_name(OFFSETS_TOPIC).unwrap();
    assert!(offsets.partitions.iter().all(|p| p.replicas == vec![1] && p.leader == Some(1)));
    assert!(h.tick().is_empty());
}

#[test]
fn the_core_stops_accepting_operations_at_the_waiting_bound() {
    let (mut h, epochs) = three_brokers();
    h.submit(create_request("t", 1, 1));
    while h.core.accepts_operations() {
        h.submit(h.heartbeat_request(1, epochs[&1], false));
    }
    assert_eq!(h.core.waiting_replies(), WAITING_REPLIES_MAX);
    h.commit_all();
    assert!(h.core.accepts_operations());
    assert_eq!(h.core.waiting_replies(), 0);
    assert_eq!(h.replies.len(), WAITING_REPLIES_MAX);
}

#[test]
#[should_panic(expected = "the driver must hold operations back")]
fn handing_over_an_operation_past_the_bound_is_a_driver_bug() {
    let (mut h, epochs) = three_brokers();
    h.submit(create_request("t", 1, 1));
    for _ in 0..=WAITING_REPLIES_MAX {
        h.submit(h.heartbeat_request(1, epochs[&1], false));
    }
}

#[test]
#[should_panic(expected = "committed before older ones")]
fn committing_out_of_order_is_a_driver_bug() {
    let (mut h, _) = three_brokers();
    h.submit(create_request("a", 1, 1));
    h.submit(create_request("b", 1, 1));
    let second = h.in_flight.pop_back().unwrap();
    let index = h.image.applied_index + 1;
    let delta = h.image.apply(index, &second.records);
    h.core.on_committed(&h.image, &delta, Some(second.id));
}

#[test]
fn proposal_ids_round_trip_through_the_entry_context() {
    let id = ProposalId { controller_epoch: 7, seq: u64::MAX - 3 };
    assert_eq!(ProposalId::from_bytes(&id.to_bytes()), Some(id));
    let bytes = id.to_bytes();
    for len in 0..ProposalId::ENCODED_LEN {
        assert_eq!(ProposalId::from_bytes(&bytes[..len]), None);
    }
    assert_eq!(ProposalId::from_bytes(&[0; 17]), None);
}

#[test]
fn every_operation_error_maps_to_its_kafka_code() {
    use crate::metadata::PlacementError;
    let cases: Vec<(ErrorCode, i16)> = vec![
        (RegistrationError::InvalidBrokerId(-1).code(), 42),
        (RegistrationError::InconsistentClusterId { expected: "a".into(), found: "b".into() }.code(), 104),
        (HeartbeatError::NotRegistered(1).code(), 77),
        (HeartbeatError::StaleBrokerEpoch { broker_id: 1, expected: 1, found: 2 }.code(), 77),
        (CreateTopicError::DuplicateName.code(), 42),
        (CreateTopicError::AlreadyExists("t".into()).code(), 36),
        (CreateTopicError::InvalidName(TopicNameError::Empty).code(), 17),
        (CreateTopicError::Collision { name: "a.b".into(), existing: "a_b".into() }.code(), 17),
        (CreateTopicError::InvalidConfig(validate_topic_config("min.insync.replicas", "0").unwrap_err()).code(), 40),
        (CreateTopicError::AssignmentWithReplicationFactor.code(), 42),
        (CreateTopicError::AssignmentWithPartitionCount.code(), 42),
        (CreateTopicError::DuplicateAssignment(0).code(), 39),
        (CreateTopicError::InvalidAssignment(crate::metadata::AssignmentError::EmptyReplicaList).code(), 39),
        (CreateTopicError::AssignmentAllInactive(0).code(), 39),
        (CreateTopicError::AssignmentNotConsecutive.code(), 39),
        (CreateTopicError::InvalidReplicationFactor(0).code(), 38),
        (CreateTopicError::InvalidPartitionCount(0).code(), 37),
        (CreateTopicError::Placement { replication_factor: 1, error: PlacementError::AllBrokersFenced }.code(), 38),
        (CreateTopicError::AllInactive(1).code(), 38),
        (CreateTopicError::TooManyPartitions(1).code(), 37),
        (DeleteTopicError::UnknownTopic.code(), 3),
        (DeleteTopicError::UnknownTopicId.code(), 100),
        (DeleteTopicError::DuplicateName.code(), 42),
        (DeleteTopicError::DuplicateId.code(), 42),
        (CreatePartitionsError::DuplicateName.code(), 42),
        (CreatePartitionsError::UnknownTopic.code(), 3),
        (CreatePartitionsError::AlreadyHas(1).code(), 37),
        (CreatePartitionsError::NotAnIncrease { name: "t".into(), current: 2, requested: 1 }.code(), 37),
        (CreatePartitionsError::AssignmentCount { additional: 1, given: 0 }.code(), 39),
        (CreatePartitionsError::InvalidAssignment(crate::metadata::AssignmentError::EmptyReplicaList).code(), 39),
        (CreatePartitionsError::AssignmentAllInactive(1).code(), 39),
        (CreatePartitionsError::Placement(PlacementError::AllBrokersFenced).code(), 38),
        (CreatePartitionsError::AllInactive(1).code(), 38),
        (CreatePartitionsError::TooManyPartitions(1).code(), 37),
        (AlterConfigsError::DuplicateResource.code(), 42),
        (AlterConfigsError::DuplicateKey("k".into()).code(), 42),
        (AlterConfigsError::UnknownTopic("t".into()).code(), 3),
        (AlterConfigsError::InvalidConfig(validate_topic_config("min.insync.replicas", "0").unwrap_err()).code(), 40),
        (ElectLeaderError::UnknownTopic("t".into()).code(), 3),
        (ElectLeaderError::UnknownPartition { topic: "t".into(), partition: 1 }.code(), 3),
        (ElectLeaderError::ElectionNotNeeded.code(), 84),
        (ElectLeaderError::PreferredLeaderNotAvailable.code(), 80),
        (ElectLeaderError::EligibleLeadersNotAvailable.code(), 83),
        (ElectLeaderError::TooManyElections.code(), 44),
    ];
    for (i, (error, code)) in cases.into_iter().enumerate() {
        assert_eq!(error.code(), code, "case {i}: {error:?}");
    }
}
