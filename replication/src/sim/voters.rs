//! Simulator v2's controller quorum (design 18, step 6): three voters, each a [`QuorumCore`]
//! exchanging Raft messages through the simulated network, each applying committed entries to its
//! own [`MetadataImage`], and the leader running a [`ControllerCore`] driven as net's production
//! driver (`net/src/cluster/node.rs`) drives it:
//! - activate on a controller tick once the node leads and has applied an entry of its own term;
//! - resign on applying an entry of another term, on a refused proposal, or when the quorum
//!   reports another role or term (at a tick or when a request arrives);
//! - call `on_committed` for every applied non-empty entry while active, with the entry's context
//!   as the proposal id.
//!
//! The voters are dedicated controller processes (KRaft's isolated mode), not brokers. A crash
//! loses everything but the persisted Raft entries and hard state; a restart replays the log from
//! index 1 into a fresh image. Persisting is instant and atomic here (a `ready` round runs within
//! one event), so torn or unsynced Raft writes are not modelled.
//!
//! [`Ledger`] is the checker's view of the quorum: the committed log as first applied by anyone,
//! the image after each index, and which voter was active in which term. It checks, on every
//! applied entry, that no two voters apply different entries at one index (quorum safety) and that
//! every voter's image equals the others' at the same index; and on every activation, that no two
//! voters are active controllers in the same term. It also feeds the committed records to the
//! mirror [`OracleController`], which in this mode decides nothing: brokers read their metadata
//! from it, and the partition invariants read the committed registrations from it.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::Rng;

use super::controller::{OracleController, SESSION_TIMEOUT_MS};
use super::invariants::{Invariant, Violation};
use super::net::{Msg, Part};
use crate::controller::{
    ControllerConfig, ControllerCore, ControllerOutput, ControllerReply, ControllerRequest, ErrorCode, ProposalId,
    RequestToken,
};
use crate::metadata::{decode_batch, encode_batch, MetadataImage, MetadataRecord};
use crate::quorum::{discard_logger, Entry, EntryType, HardState, Message, QuorumConfig, QuorumCore, Restored, Role};
use crate::types::BrokerId;

/// Voters in the quorum, ids `1..=VOTERS`.
pub const VOTERS: usize = 3;
/// Preferred-leader rounds run this often (Kafka: 300 s), so a seed's run sees a few.
const LEADER_IMBALANCE_CHECK_MS: u64 = 5_000;

/// Who waits for a controller reply, and what to answer.
#[derive(Clone, Copy, Debug)]
pub struct Waiter {
    pub broker: BrokerId,
    /// The broker's process when it asked: a restarted broker lost the connection and the reply.
    pub broker_incarnation: u64,
    pub kind: WaitKind,
}

#[derive(Clone, Copy, Debug)]
pub enum WaitKind {
    Register,
    Heartbeat,
    Alter { part: Part, req: u64 },
}

/// What a voter call asks the world to do.
#[derive(Default)]
pub struct VoterOut {
    /// Raft messages to peers.
    pub raft: Vec<Message>,
    /// Replies to brokers. `MetadataEnd` replies are filled in with the voter's applied index.
    pub replies: Vec<(Waiter, Msg)>,
}

/// The committed log as the voters applied it; see the module docs.
pub struct Ledger {
    /// Entry `i` has index `i + 1`: its term and data.
    entries: Vec<(u64, Bytes)>,
    /// The image after applying entry `i`.
    images: Vec<MetadataImage>,
    /// The voter that activated in each term.
    active_by_term: BTreeMap<u64, BrokerId>,
    pub violation: Option<Violation>,
    pub activations: u64,
}

impl Ledger {
    fn fail(&mut self, invariant: Invariant, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, detail });
        }
    }

    /// Voter `voter` applied `entry` (decoded as `records`) and now has `image`.
    fn record(
        &mut self,
        voter: BrokerId,
        entry: &Entry,
        records: &[MetadataRecord],
        image: &MetadataImage,
        mirror: &mut OracleController,
    ) {
        let i = entry.index as usize;
        if i <= self.entries.len() {
            let (term, data) = &self.entries[i - 1];
            if *term != entry.term || *data != entry.data {
                let detail = format!(
                    "V{voter} applied index {i} term {} ({} bytes); another voter applied term {term} ({} bytes)",
                    entry.term,
                    entry.data.len(),
                    data.len()
                );
                self.fail(Invariant::QuorumSafety, detail);
            } else if self.images[i - 1] != *image {
                let detail = format!("V{voter}'s image at index {i} differs from the first applier's");
                self.fail(Invariant::ImageDivergence, detail);
            }
            return;
        }
        if i != self.entries.len() + 1 {
            let detail = format!("V{voter} applied index {i} with the committed log at {}", self.entries.len());
            self.fail(Invariant::QuorumSafety, detail);
            return;
        }
        self.entries.push((entry.term, entry.data.clone()));
        mirror.append_committed(entry.index, records.to_vec());
        if mirror.image != *image {
            self.fail(Invariant::ImageDivergence, format!("V{voter}'s image at index {i} differs from the mirror's"));
        }
        self.images.push(image.clone());
    }

    fn activated(&mut self, voter: BrokerId, term: u64) {
        self.activations += 1;
        match self.active_by_term.insert(term, voter) {
            Some(other) if other != voter => {
                self.fail(Invariant::TwoControllersInTerm, format!("V{other} and V{voter} both active in term {term}"))
            }
            _ => {}
        }
    }
}

/// The bootstrap Raft log every voter starts with: the oracle's bootstrap entries, term 1, all
/// committed. Returns what each voter has on disk and the ledger that matches it.
pub fn bootstrap(mirror: &OracleController) -> (Restored, Ledger) {
    let mut entries = Vec::new();
    let mut image = MetadataImage::new();
    let mut images = Vec::new();
    for (i, records) in mirror.log().iter().enumerate() {
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryNormal);
        e.term = 1;
        e.index = i as u64 + 1;
        e.data = Bytes::from(encode_batch(records));
        let delta = image.apply(e.index, records);
        assert!(delta.rejected.is_empty());
        images.push(image.clone());
        entries.push(e);
    }
    let hard_state = HardState { term: 1, commit: entries.len() as u64, ..Default::default() };
    let ledger = Ledger {
        entries: entries.iter().map(|e| (e.term, e.data.clone())).collect(),
        images,
        active_by_term: BTreeMap::new(),
        violation: None,
        activations: 0,
    };
    (Restored { hard_state, entries }, ledger)
}

pub struct Voter {
    pub id: BrokerId,
    pub up: bool,
    /// Bumped at every start: messages and timers for an earlier process are lost.
    pub incarnation: u64,
    core: Option<QuorumCore>,
    /// What survives a crash.
    disk: Restored,
    pub image: MetadataImage,
    /// Term of the last entry applied (empty entries included).
    last_applied_term: u64,
    active: Option<ControllerCore>,
    active_term: u64,
    waiting: BTreeMap<RequestToken, Waiter>,
    next_token: RequestToken,
    /// False only in the deliberately broken `ControllerMode::RaftWithoutLeadership`.
    must_lead: bool,
}

impl Voter {
    pub fn new(id: BrokerId, disk: Restored, must_lead: bool) -> Voter {
        Voter {
            must_lead,
            id,
            up: false,
            incarnation: 0,
            core: None,
            disk,
            image: MetadataImage::new(),
            last_applied_term: 0,
            active: None,
            active_term: 0,
            waiting: BTreeMap::new(),
            next_token: 0,
        }
    }

    pub fn describe(&self) -> String {
        let status = self.core.as_ref().map(QuorumCore::status);
        format!(
            "V{} up={} inc={} applied={} active={:?} disk_last={} status={status:?}",
            self.id,
            self.up,
            self.incarnation,
            self.image.applied_index,
            self.active.as_ref().map(|_| self.active_term),
            self.disk.entries.last().map_or(0, |e| e.index),
        )
    }

    pub fn leads(&self) -> bool {
        self.core.as_ref().is_some_and(|c| c.status().role == Role::Leader)
    }

    pub fn start(&mut self, rng: &mut SmallRng, ledger: &mut Ledger, mirror: &mut OracleController) -> VoterOut {
        assert!(!self.up);
        self.up = true;
        self.incarnation += 1;
        self.image = MetadataImage::new();
        self.last_applied_term = 0;
        let cfg = QuorumConfig { node: self.id, voters: (1..=VOTERS as BrokerId).collect() };
        let core = QuorumCore::open(&cfg, self.disk.clone(), rng.random(), &discard_logger())
            .expect("a voter opens what it persisted");
        self.core = Some(core);
        let mut out = VoterOut::default();
        self.process(ledger, mirror, &mut out);
        out
    }

    /// `kill -9`: the persisted Raft log and hard state survive, nothing else.
    pub fn crash(&mut self) {
        self.up = false;
        self.core = None;
        self.active = None;
        self.waiting.clear();
    }

    /// One Raft tick, then one controller tick (both every 100 ms).
    pub fn tick(
        &mut self,
        now_ms: u64,
        rng: &mut SmallRng,
        ledger: &mut Ledger,
        mirror: &mut OracleController,
    ) -> VoterOut {
        let mut out = VoterOut::default();
        self.core.as_mut().expect("ticks reach running voters").tick();
        self.process(ledger, mirror, &mut out);
        let status = self.core.as_ref().expect("running").status();
        let leads = status.role == Role::Leader;
        if self.active.is_some() && (!leads || self.active_term != status.term) {
            self.resign(&mut out);
        }
        // As net's driver: only once everything in the log is applied.
        let caught_up = self.image.applied_index >= status.last_index;
        if (leads || !self.must_lead) && self.active.is_none() && self.last_applied_term == status.term && caught_up {
            let mut config = ControllerConfig::new(VOTERS);
            config.session_timeout_ms = SESSION_TIMEOUT_MS;
            config.leader_imbalance_check_interval_ms = LEADER_IMBALANCE_CHECK_MS;
            config.offsets_topic_num_partitions = 1;
            self.active = Some(ControllerCore::new(config, &self.image, status.term, now_ms, rng.random()));
            self.active_term = status.term;
            ledger.activated(self.id, status.term);
        }
        if let Some(core) = self.active.as_mut() {
            let controller_out = core.tick(now_ms);
            self.dispatch(controller_out, &mut out);
            self.process(ledger, mirror, &mut out);
        }
        out
    }

    pub fn step(&mut self, m: Message, ledger: &mut Ledger, mirror: &mut OracleController) -> VoterOut {
        let mut out = VoterOut::default();
        self.core.as_mut().expect("messages reach running voters").step(m).expect("raft accepts a peer's message");
        self.process(ledger, mirror, &mut out);
        out
    }

    /// A broker's request. `Err(leader)`: not the active controller (NOT_CONTROLLER), with the
    /// leader this voter knows of; the output (a resignation's replies) goes out either way. A busy controller drops the request; the broker retries.
    pub fn request(
        &mut self,
        waiter: Waiter,
        request: ControllerRequest,
        now_ms: u64,
        ledger: &mut Ledger,
        mirror: &mut OracleController,
    ) -> (VoterOut, Result<(), Option<BrokerId>>) {
        let mut out = VoterOut::default();
        let status = self.core.as_ref().expect("requests reach running voters").status();
        if self.active.is_some() && (status.role != Role::Leader || status.term != self.active_term) {
            self.resign(&mut out);
        }
        let Some(core) = self.active.as_mut() else { return (out, Err(status.leader)) };
        if !core.accepts_operations() {
            return (out, Ok(()));
        }
        let token = self.next_token;
        self.next_token += 1;
        self.waiting.insert(token, waiter);
        let controller_out = core.handle(token, request, now_ms);
        self.dispatch(controller_out, &mut out);
        self.process(ledger, mirror, &mut out);
        (out, Ok(()))
    }

    /// Proposes the controller's entries and releases its replies.
    fn dispatch(&mut self, controller_out: ControllerOutput, out: &mut VoterOut) {
        for p in controller_out.proposals {
            let core = self.core.as_mut().expect("running");
            let context = Bytes::copy_from_slice(&p.id.to_bytes());
            if core.propose(context, Bytes::from(encode_batch(&p.records))).is_err() {
                // The proposal is lost and the next ones would commit out of order.
                self.resign(out);
                return;
            }
        }
        for (token, reply) in controller_out.replies {
            if let Some(waiter) = self.waiting.remove(&token) {
                out.replies.push((waiter, reply_msg(waiter, reply, self.image.applied_index)));
            }
        }
    }

    fn resign(&mut self, out: &mut VoterOut) {
        let Some(core) = self.active.take() else { return };
        for token in core.resign() {
            if let Some(waiter) = self.waiting.remove(&token) {
                if let WaitKind::Alter { part, req } = waiter.kind {
                    let result = Err(ErrorCode::NotController.code());
                    out.replies.push((waiter, Msg::AlterPartitionResponse { part, req, result }));
                }
            }
        }
        // Requests answered by nobody (heartbeats, registrations) are retried by the brokers.
        self.waiting.clear();
    }

    /// The driver loop of `quorum`'s module docs, until raft-rs has nothing ready.
    fn process(&mut self, ledger: &mut Ledger, mirror: &mut OracleController, out: &mut VoterOut) {
        loop {
            let Some(core) = self.core.as_mut() else { return };
            let Some(mut rd) = core.ready() else { return };
            out.raft.append(&mut rd.send_now);
            let committed = std::mem::take(&mut rd.committed);
            if let Some(first) = rd.entries.first() {
                self.disk.entries.retain(|e| e.index < first.index);
                self.disk.entries.extend(rd.entries.iter().cloned());
            }
            if let Some(hs) = &rd.hard_state {
                self.disk.hard_state = hs.clone();
            }
            out.raft.append(&mut rd.send_after_persist);
            for e in &committed {
                self.apply(e, ledger, mirror, out);
            }
            let core = self.core.as_mut().expect("running");
            let mut light = core.persisted(rd);
            out.raft.append(&mut light.send);
            for e in &light.committed {
                self.apply(e, ledger, mirror, out);
            }
        }
    }

    fn apply(&mut self, e: &Entry, ledger: &mut Ledger, mirror: &mut OracleController, out: &mut VoterOut) {
        if e.get_entry_type() != EntryType::EntryNormal {
            return;
        }
        self.last_applied_term = e.term;
        if self.active.is_some() && e.term != self.active_term {
            self.resign(out);
        }
        if e.data.is_empty() {
            self.image.applied_index = e.index;
            ledger.record(self.id, e, &[], &self.image, mirror);
            return;
        }
        let records = decode_batch(&e.data).expect("committed entries decode");
        let delta = self.image.apply(e.index, &records);
        if !delta.rejected.is_empty() {
            let detail = format!("V{} refused committed records at {}: {:?}", self.id, e.index, delta.rejected);
            ledger.fail(Invariant::ImageDivergence, detail);
        }
        ledger.record(self.id, e, &records, &self.image, mirror);
        let Some(core) = self.active.as_mut() else { return };
        let controller_out = core.on_committed(&self.image, &delta, ProposalId::from_bytes(&e.context));
        self.dispatch(controller_out, out);
    }
}

/// The message a broker gets for a controller reply. Registration and heartbeat answers say how
/// far the metadata log goes: `applied`, the voter's applied index.
fn reply_msg(waiter: Waiter, reply: ControllerReply, applied: u64) -> Msg {
    match (waiter.kind, reply) {
        (WaitKind::Alter { part, req }, ControllerReply::AlterPartition(result)) => {
            let result = match result {
                Ok(results) => results
                    .into_iter()
                    .next()
                    .expect("one result per partition asked")
                    .outcome
                    .map(|_| ())
                    .map_err(|e| e.code().code()),
                Err(e) => Err(e.code().code()),
            };
            Msg::AlterPartitionResponse { part, req, result }
        }
        (WaitKind::Register | WaitKind::Heartbeat, _) => Msg::MetadataEnd { end: applied },
        (kind, reply) => panic!("{kind:?} answered with {reply:?}"),
    }
}
