//! `ControllerCore`: the active controller as a pure state machine.
//!
//! The driver hands it requests ([`ControllerCore::handle`]) and the clock ([`ControllerCore::tick`]);
//! it answers with entries to propose (one per operation: the records of one operation commit
//! atomically) and replies. The driver proposes each entry with its [`ProposalId`] in the Raft entry's
//! context, applies committed entries to its `MetadataImage` as every broker does, and tells the core
//! ([`ControllerCore::on_committed`]), which releases the replies that waited for them. When the node
//! loses leadership (or Raft refuses a proposal) the driver calls [`ControllerCore::resign`] and fails
//! the returned requests with NOT_CONTROLLER; the next active controller starts a new core.
//!
//! **Validation sees its own proposals.** Operations are checked against a speculative image: the
//! committed image plus every pending proposal, applied in order (KRaft's active controller replays
//! its records before they commit the same way). So a second CreateTopics of the same name gets
//! TOPIC_ALREADY_EXISTS while the first is in flight, and a fence computed while an ISR change is
//! pending names the partition epoch that change will produce. Rejected alternatives: one in-flight
//! proposal per partition or per kind (an admin operation touching many partitions would wait on
//! every ISR change, and "kind" is not what conflicts), and re-validating against the committed image
//! at commit time (the records are already in the log by then). Raft commits this leader's entries in
//! the order proposed, so the speculation is exact; the only index-dependent value, a broker epoch
//! (= the index of its `RegisterBroker`), is provisional in the speculative image until that entry
//! commits, and nothing can use it before: the broker learns its epoch from the reply, which is sent
//! only after the commit, and the registered broker is fenced until a heartbeat carrying that epoch.
//! After a commit the speculative image is rebuilt from the committed one when its broker epochs
//! change (a registration) and kept otherwise, so the common commit costs no copy.
//!
//! **Replies wait for what they depend on** (Kafka's `ControllerPurgatory`). A reply is released when
//! every proposal made up to and including its operation has committed: an operation that changed
//! something waits for its own entry, one that changed nothing (a heartbeat, an error result) for
//! the last pending entry, and is answered at once only when nothing is pending. A client therefore
//! never hears of state that might still be lost. Request-level refusals (stale broker epoch, wrong
//! cluster id) are answered at once, as Kafka's exceptions are.
//!
//! **Sessions are memory.** Heartbeat times live here, not in the log (see [`super::liveness`]); a
//! new core starts every session at its own "now".

use std::collections::{BTreeSet, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::metadata::{BrokerEpoch, MetadataDelta, MetadataImage, MetadataRecord, PartitionRegistration};
use crate::types::{BrokerId, TopicIdPartition};

use super::alter_partition::{
    alter_partition, check_sender, AlterPartitionData, AlterPartitionError, InvalidAlterPartition,
};
use super::config::{ControllerConfig, MAX_ELECTIONS_PER_REQUEST, PREFERRED_ELECTIONS_PER_TICK, WAITING_REPLIES_MAX};
use super::election::{self, changes_electing_preferred_leaders};
use super::errors::ErrorCode;
use super::liveness::{
    self, BrokerHeartbeatRequest, BrokerRegistrationReply, BrokerRegistrationRequest, BrokerSession, HeartbeatError,
    HeartbeatReply, RegistrationError, Sessions,
};
use super::topics::{
    self, AlterConfigsResult, CreatePartitionsRequest, CreatePartitionsResult, CreateTopicResult, CreateTopicsRequest,
    DeleteTopicResult, DeleteTopicsRequest, IncrementalAlterConfigsRequest,
};

/// The driver's handle on one request, echoed with its reply.
pub type RequestToken = u64;

/// Names one proposed entry. Carried in the Raft entry's context so the driver can tell the core
/// which of its proposals committed. `controller_epoch` is the Raft term the core became active in:
/// one leader per term, so ids never repeat across controllers (a bare sequence number would, when
/// a node leads twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId {
    pub controller_epoch: u64,
    pub seq: u64,
}

impl ProposalId {
    /// Length of [`ProposalId::to_bytes`].
    pub const ENCODED_LEN: usize = 16;

    /// The entry context: epoch then sequence, little-endian.
    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[..8].copy_from_slice(&self.controller_epoch.to_le_bytes());
        bytes[8..].copy_from_slice(&self.seq.to_le_bytes());
        bytes
    }

    /// `None` unless `bytes` is exactly an encoded id (an empty context: not a controller entry).
    pub fn from_bytes(bytes: &[u8]) -> Option<ProposalId> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        let (epoch, seq) = bytes.split_at(8);
        Some(ProposalId {
            controller_epoch: u64::from_le_bytes(epoch.try_into().expect("8 bytes")),
            seq: u64::from_le_bytes(seq.try_into().expect("8 bytes")),
        })
    }
}

/// One entry to propose: the records of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub id: ProposalId,
    pub records: Vec<MetadataRecord>,
}

/// AlterPartition (Kafka API 56): the sender and its ISR changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    pub broker_id: BrokerId,
    pub broker_epoch: BrokerEpoch,
    pub partitions: Vec<AlterPartitionData>,
}

/// One partition's answer: its registration after the change (or unchanged), or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionResult {
    pub tp: TopicIdPartition,
    pub outcome: Result<PartitionRegistration, AlterPartitionError>,
}

/// ElectLeaders (Kafka API 43): which kind of election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership to each partition's preferred replica (`replicas[0]`) if it is in the ISR
    /// and acceptable.
    Preferred,
    /// Give a leaderless partition a leader. Kafka may then pick a replica outside the ISR; here
    /// only an ISR member is ever elected (`unclean.leader.election.enable` is false, design 5.3),
    /// so this elects an acceptable ISR member or answers ELIGIBLE_LEADERS_NOT_AVAILABLE.
    Unclean,
}

/// ElectLeaders (Kafka API 43). `topics: None` asks for every partition of every topic; the
/// results then leave out the partitions that need no election, as Kafka's do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectLeadersRequest {
    pub election: ElectionType,
    pub topics: Option<Vec<ElectLeadersTopic>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectLeadersTopic {
    pub name: String,
    pub partitions: Vec<i32>,
}

/// One topic's outcomes, one per partition asked for, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectLeadersTopicResult {
    pub name: String,
    pub partitions: Vec<(i32, Result<(), ElectLeaderError>)>,
}

/// Why a partition got no new leader. The messages are Kafka's (`Errors.java` defaults, and
/// `ReplicationControlManager.electLeader` for the unknown ones).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElectLeaderError {
    #[error("No such topic as {0}")]
    UnknownTopic(String),
    #[error("No such partition as {topic}-{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    /// Preferred: the preferred replica leads already. Unclean: the partition has a leader.
    #[error("Leader election not needed for topic partition.")]
    ElectionNotNeeded,
    /// The preferred replica is not in the ISR, or is fenced or shutting down.
    #[error("The preferred leader was not available.")]
    PreferredLeaderNotAvailable,
    /// Unclean: no ISR member is acceptable (and no replica outside the ISR is ever elected).
    #[error("Eligible topic partition leaders are not available.")]
    EligibleLeadersNotAvailable,
    /// A request that would make more than [`MAX_ELECTIONS_PER_REQUEST`] elections: none is made
    /// (Kafka refuses an operation over its record bound, `MAX_RECORDS_PER_USER_OP`, with
    /// POLICY_VIOLATION too). Every partition that would have been elected gets this.
    #[error(
        "Unable to perform excessively large batch operation: more than {MAX_ELECTIONS_PER_REQUEST} leader elections in one request."
    )]
    TooManyElections,
}

impl ElectLeaderError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ElectLeaderError::UnknownTopic(_) | ElectLeaderError::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            ElectLeaderError::ElectionNotNeeded => ErrorCode::ElectionNotNeeded,
            ElectLeaderError::PreferredLeaderNotAvailable => ErrorCode::PreferredLeaderNotAvailable,
            ElectLeaderError::EligibleLeadersNotAvailable => ErrorCode::EligibleLeadersNotAvailable,
            ElectLeaderError::TooManyElections => ErrorCode::PolicyViolation,
        }
    }
}

/// Every operation the active controller serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerRequest {
    BrokerRegistration(BrokerRegistrationRequest),
    BrokerHeartbeat(BrokerHeartbeatRequest),
    AlterPartition(AlterPartitionRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    ElectLeaders(ElectLeadersRequest),
}

/// The reply to a [`ControllerRequest`] of the same name. An `Err` is a request-level refusal;
/// per-topic and per-partition outcomes are inside the `Ok` results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerReply {
    BrokerRegistration(Result<BrokerRegistrationReply, RegistrationError>),
    BrokerHeartbeat(Result<HeartbeatReply, HeartbeatError>),
    AlterPartition(Result<Vec<AlterPartitionResult>, AlterPartitionError>),
    CreateTopics(Vec<CreateTopicResult>),
    DeleteTopics(Vec<DeleteTopicResult>),
    CreatePartitions(Vec<CreatePartitionsResult>),
    IncrementalAlterConfigs(Vec<AlterConfigsResult>),
    ElectLeaders(Vec<ElectLeadersTopicResult>),
}

/// What a call asks of the driver: propose these entries, in order; send these replies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerOutput {
    pub proposals: Vec<Proposal>,
    pub replies: Vec<(RequestToken, ControllerReply)>,
}

/// A reply held until the entries it depends on commit.
#[derive(Clone, Debug)]
enum WaitingReply {
    Ready(ControllerReply),
    /// The broker epoch is the index of the registration's entry: read from the committed image
    /// when released.
    Registration(BrokerId),
}

impl WaitingReply {
    fn resolve(self, committed: &MetadataImage) -> ControllerReply {
        match self {
            WaitingReply::Ready(reply) => reply,
            WaitingReply::Registration(broker_id) => {
                let broker_epoch = committed
                    .broker(broker_id)
                    .expect("a registration reply is released only once the registration is applied")
                    .epoch;
                ControllerReply::BrokerRegistration(Ok(BrokerRegistrationReply { broker_epoch }))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct PendingProposal {
    id: ProposalId,
    records: Vec<MetadataRecord>,
    /// Released when this entry commits, in the order the operations came.
    replies: Vec<(RequestToken, WaitingReply)>,
}

/// The active controller's state. See the module docs.
pub struct ControllerCore {
    config: ControllerConfig,
    controller_epoch: u64,
    next_seq: u64,
    /// The committed image plus every pending proposal.
    speculative: MetadataImage,
    pending: VecDeque<PendingProposal>,
    waiting_replies: usize,
    sessions: Sessions,
    /// Topic ids and placement starts: seeded, so the simulator replays them.
    rng: SmallRng,
    next_rebalance_ms: u64,
}

impl ControllerCore {
    /// A controller that became active in Raft term `controller_epoch` with `image` applied (which
    /// includes the first entry of that term, design 5.1). Every registered broker's session starts
    /// at `now_ms`; the first automatic preferred-leader round runs one interval from now.
    pub fn new(
        config: ControllerConfig,
        image: &MetadataImage,
        controller_epoch: u64,
        now_ms: u64,
        seed: u64,
    ) -> ControllerCore {
        let mut rng = SmallRng::seed_from_u64(seed);
        // Proposal ids start at a random point, not at 0: a second core
        // activated in the same term (after a resignation while the node
        // still led) must not take the first core's entries, still in the
        // log, for its own.
        let next_seq = u64::from(rng.random::<u32>()) << 32;
        ControllerCore {
            next_rebalance_ms: now_ms.saturating_add(config.leader_imbalance_check_interval_ms),
            config,
            controller_epoch,
            next_seq,
            speculative: image.clone(),
            pending: VecDeque::new(),
            waiting_replies: 0,
            sessions: Sessions::activate(image, now_ms),
            rng,
        }
    }

    /// False while [`WAITING_REPLIES_MAX`] replies wait for commits: the driver keeps further
    /// operations in its own bounded queue until commits release some.
    pub fn accepts_operations(&self) -> bool {
        self.waiting_replies < WAITING_REPLIES_MAX
    }

    /// The image operations are validated against: committed plus pending.
    pub fn speculative_image(&self) -> &MetadataImage {
        &self.speculative
    }

    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }

    pub fn waiting_replies(&self) -> usize {
        self.waiting_replies
    }

    pub fn session(&self, broker: BrokerId) -> Option<&BrokerSession> {
        self.sessions.get(broker)
    }

    /// Serves one operation.
    ///
    /// # Panics
    /// If [`Self::accepts_operations`] is false: a driver that ignores the bound has a bug.
    pub fn handle(&mut self, token: RequestToken, request: ControllerRequest, now_ms: u64) -> ControllerOutput {
        assert!(
            self.accepts_operations(),
            "{} replies wait for commits: the driver must hold operations back",
            self.waiting_replies
        );
        match request {
            ControllerRequest::BrokerRegistration(request) => {
                match liveness::registration_records(&self.speculative, &request) {
                    Err(e) => reply_now(token, ControllerReply::BrokerRegistration(Err(e))),
                    Ok(records) => {
                        if !records.is_empty() {
                            self.sessions.register(request.broker_id, now_ms);
                        }
                        self.finish(token, records, WaitingReply::Registration(request.broker_id))
                    }
                }
            }
            ControllerRequest::BrokerHeartbeat(request) => {
                match liveness::heartbeat(&self.speculative, &mut self.sessions, &request, now_ms) {
                    Err(e) => reply_now(token, ControllerReply::BrokerHeartbeat(Err(e))),
                    Ok((records, reply)) => {
                        self.finish(token, records, WaitingReply::Ready(ControllerReply::BrokerHeartbeat(Ok(reply))))
                    }
                }
            }
            ControllerRequest::AlterPartition(request) => {
                if let Err(e) = check_sender(&self.speculative, request.broker_id, request.broker_epoch) {
                    return reply_now(token, ControllerReply::AlterPartition(Err(e)));
                }
                let (records, results) = self.alter_partitions(&request);
                self.finish(token, records, WaitingReply::Ready(ControllerReply::AlterPartition(Ok(results))))
            }
            ControllerRequest::CreateTopics(request) => {
                let (records, results) =
                    topics::create_topics(&self.speculative, &self.config, &request, &mut self.rng);
                self.finish(token, records, WaitingReply::Ready(ControllerReply::CreateTopics(results)))
            }
            ControllerRequest::DeleteTopics(request) => {
                let (records, results) = topics::delete_topics(&self.speculative, &request);
                self.finish(token, records, WaitingReply::Ready(ControllerReply::DeleteTopics(results)))
            }
            ControllerRequest::CreatePartitions(request) => {
                let (records, results) = topics::create_partitions(&self.speculative, &request, &mut self.rng);
                self.finish(token, records, WaitingReply::Ready(ControllerReply::CreatePartitions(results)))
            }
            ControllerRequest::IncrementalAlterConfigs(request) => {
                let (records, results) = topics::alter_topic_configs(&self.speculative, &request);
                self.finish(token, records, WaitingReply::Ready(ControllerReply::IncrementalAlterConfigs(results)))
            }
            ControllerRequest::ElectLeaders(request) => {
                let (records, results) = election::elect_leaders(&self.speculative, &request);
                self.finish(token, records, WaitingReply::Ready(ControllerReply::ElectLeaders(results)))
            }
        }
    }

    /// The controller's own work, driven by the clock: fence the broker whose session expired
    /// longest ago, create `__consumer_offsets` once enough brokers are active, and run a round of
    /// preferred-leader elections when due.
    ///
    /// One fence per tick, the longest silent broker first, as Kafka's `maybeFenceOneStaleBroker`:
    /// when several sessions lapse together (a new controller, a stall), the heartbeats that arrive
    /// before the next tick still save the live brokers, and a dead leader leaves the ISRs before
    /// the followers that could take over from it.
    pub fn tick(&mut self, now_ms: u64) -> ControllerOutput {
        let mut out = ControllerOutput::default();
        let stalest = self.sessions.expired(&self.speculative, now_ms, self.config.session_timeout_ms).first().copied();
        if let Some(broker) = stalest {
            let records = liveness::fence_records(&self.speculative, broker);
            out.proposals.push(self.propose(records));
        }
        if let Some(records) = topics::offsets_topic_records(&self.speculative, &self.config, &mut self.rng) {
            out.proposals.push(self.propose(records));
        }
        if self.config.auto_leader_rebalance_enable && now_ms >= self.next_rebalance_ms {
            let (records, more) = changes_electing_preferred_leaders(&self.speculative, PREFERRED_ELECTIONS_PER_TICK);
            if !records.is_empty() {
                out.proposals.push(self.propose(records));
            }
            // Partitions left over move next tick, not a whole interval later.
            self.next_rebalance_ms =
                if more { now_ms } else { now_ms.saturating_add(self.config.leader_imbalance_check_interval_ms) };
        }
        out
    }

    /// The driver applied a committed entry to `image` (`delta` is what that apply returned);
    /// `proposal` is the id in the entry's context, `None` if it has none. Returns the replies it
    /// releases.
    ///
    /// # Panics
    /// If `proposal` is one of this core's pending proposals but not the oldest: Raft commits a
    /// leader's entries in order, so the driver skipped one.
    pub fn on_committed(
        &mut self,
        image: &MetadataImage,
        delta: &MetadataDelta,
        proposal: Option<ProposalId>,
    ) -> ControllerOutput {
        let mut out = ControllerOutput::default();
        let is_oldest = proposal.is_some() && self.pending.front().map(|p| p.id) == proposal;
        if !is_oldest {
            if let Some(id) = proposal {
                assert!(!self.pending.iter().any(|p| p.id == id), "proposal {id:?} committed before older ones");
            }
            // Not ours: the speculation must start again from what did commit.
            self.rebuild(image);
            return out;
        }
        let committed = self.pending.pop_front().expect("checked above");
        for record in &committed.records {
            if let MetadataRecord::BrokerChange { broker_id, in_controlled_shutdown: Some(true), .. } = record {
                self.sessions.set_shutdown_offset(*broker_id, delta.index);
            }
        }
        self.waiting_replies -= committed.replies.len();
        out.replies.extend(committed.replies.into_iter().map(|(token, reply)| (token, reply.resolve(image))));

        let registered = committed.records.iter().any(|r| matches!(r, MetadataRecord::RegisterBroker(_)));
        debug_assert!(delta.rejected.is_empty(), "committed controller records were rejected: {:?}", delta.rejected);
        if registered || !delta.rejected.is_empty() {
            // Broker epochs are now known (or the image disagrees with us): speculate again.
            self.rebuild(image);
        } else if self.pending.is_empty() {
            self.speculative.applied_index = image.applied_index;
            debug_assert!(self.speculative == *image, "the speculative image drifted from the committed one");
        }
        out
    }

    /// The node is no longer the active controller. Returns every request still waiting: the
    /// driver answers them NOT_CONTROLLER (their entries may still commit; clients retry, and the
    /// operations are re-validated by the next controller).
    pub fn resign(self) -> Vec<RequestToken> {
        self.pending.into_iter().flat_map(|p| p.replies.into_iter().map(|(token, _)| token)).collect()
    }

    fn alter_partitions(&self, request: &AlterPartitionRequest) -> (Vec<MetadataRecord>, Vec<AlterPartitionResult>) {
        let mut seen = BTreeSet::new();
        let mut records = Vec::new();
        let mut results = Vec::new();
        for data in &request.partitions {
            let outcome = if seen.insert(data.tp) {
                alter_partition(&self.speculative, request.broker_id, data).map(|accepted| {
                    records.extend(accepted.record);
                    accepted.partition
                })
            } else {
                Err(AlterPartitionError::InvalidRequest(InvalidAlterPartition::DuplicatePartition))
            };
            results.push(AlterPartitionResult { tp: data.tp, outcome });
        }
        (records, results)
    }

    /// Proposes `records` (if any) and files the reply behind the newest pending proposal, or
    /// answers it now when nothing is pending.
    fn finish(&mut self, token: RequestToken, records: Vec<MetadataRecord>, reply: WaitingReply) -> ControllerOutput {
        let mut out = ControllerOutput::default();
        if !records.is_empty() {
            out.proposals.push(self.propose(records));
        }
        match self.pending.back_mut() {
            Some(newest) => {
                newest.replies.push((token, reply));
                self.waiting_replies += 1;
            }
            None => out.replies.push((token, reply.resolve(&self.speculative))),
        }
        out
    }

    fn propose(&mut self, records: Vec<MetadataRecord>) -> Proposal {
        let id = ProposalId { controller_epoch: self.controller_epoch, seq: self.next_seq };
        self.next_seq += 1;
        let index = self.speculative.applied_index + 1;
        let delta = self.speculative.apply(index, &records);
        debug_assert!(delta.rejected.is_empty(), "proposed records do not fit the image: {:?}", delta.rejected);
        self.pending.push_back(PendingProposal { id, records: records.clone(), replies: Vec::new() });
        Proposal { id, records }
    }

    fn rebuild(&mut self, image: &MetadataImage) {
        self.speculative = image.clone();
        for pending in &self.pending {
            let index = self.speculative.applied_index + 1;
            let delta = self.speculative.apply(index, &pending.records);
            debug_assert!(delta.rejected.is_empty(), "pending records no longer fit: {:?}", delta.rejected);
        }
    }
}

fn reply_now(token: RequestToken, reply: ControllerReply) -> ControllerOutput {
    ControllerOutput { proposals: Vec::new(), replies: vec![(token, reply)] }
}
