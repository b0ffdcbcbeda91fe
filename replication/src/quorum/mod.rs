//! The metadata quorum's Raft core: tikv's raft-rs `RawNode`, wrapped so a
//! driver (or the simulator) only moves values in and out.
//!
//! The driver's loop, in raft-rs's required order:
//!
//! 1. feed inputs: [`QuorumCore::tick`] every [`TICK_MS`], [`QuorumCore::step`]
//!    for each message from a peer, [`QuorumCore::propose`];
//! 2. while [`QuorumCore::ready`] returns a [`QuorumReady`]: send its
//!    `send_now` messages, apply its `committed` entries (already durable on
//!    a quorum), persist its `entries` (truncating first if they start at or
//!    below the last persisted index) and its `hard_state` (durably if
//!    `must_sync`), then send `send_after_persist` (votes and append
//!    responses must not leave before what they promise is on disk), and
//!    hand it back to [`QuorumCore::persisted`], whose [`QuorumLight`] has
//!    more messages to send and entries to apply.
//!
//! Determinism: raft-rs draws election timeouts from `thread_rng`; after
//! every call this core overwrites the timeout with one from its own seeded
//! RNG whenever the term or role changed, so a seed decides every timeout.
//!
//! Raft ids are node ids plus one: raft-rs reserves 0 as "no node".

pub mod codec;

use crate::types::BrokerId;
use bytes::Bytes;
use raft::eraftpb::ConfState;
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use raft::eraftpb::{Entry, EntryType, HardState, Message, MessageType};

/// One tick of the Raft clock.
pub const TICK_MS: u64 = 100;
/// Ticks without a heartbeat before a follower campaigns: 1 s, randomized
/// in [1 s, 2 s).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// Largest append message a leader sends.
pub const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// Appends a leader keeps in flight to one follower.
pub const MAX_INFLIGHT_MSGS: usize = 256;

/// Converts a node id to a raft-rs id.
pub fn raft_id(node: BrokerId) -> u64 {
    u64::try_from(node).expect("node ids are non-negative") + 1
}

/// Converts a raft-rs id back to a node id.
pub fn node_id(raft_id: u64) -> BrokerId {
    assert!(raft_id > 0, "raft id 0 is no node");
    BrokerId::try_from(raft_id - 1).expect("raft ids come from node ids")
}

#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node: BrokerId,
    /// Every voter, this node included if it votes.
    pub voters: Vec<BrokerId>,
}

/// What a node persisted before it stopped: its hard state and log.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// Entries from index 1, contiguous.
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// Proposals go to the leader; `leader` is the one this node knows of.
    #[error("not the quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<BrokerId> },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A message not meant for this node, or one no leader would send.
    #[error("raft message refused (to {to})")]
    Misaddressed { to: u64 },
}

/// Output of one [`QuorumCore::ready`] round; see the module docs for the
/// order in which the driver handles its fields.
pub struct QuorumReady {
    pub send_now: Vec<Message>,
    pub committed: Vec<Entry>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub must_sync: bool,
    pub send_after_persist: Vec<Message>,
    ready: raft::Ready,
}

/// What [`QuorumCore::persisted`] releases: messages and newly committed
/// entries.
pub struct QuorumLight {
    pub send: Vec<Message>,
    pub committed: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumStatus {
    pub role: Role,
    pub term: u64,
    pub leader: Option<BrokerId>,
    pub commit: u64,
    pub last_index: u64,
}

pub struct QuorumCore {
    node: RawNode<MemStorage>,
    rng: SmallRng,
    last: (u64, StateRole),
}

impl QuorumCore {
    /// Starts a node from what it persisted. Entries are replayed from
    /// index 1 on every start (`applied = 0`): the driver rebuilds its
    /// state from the committed entries the first readies hand out.
    pub fn open(cfg: &QuorumConfig, restored: Restored, seed: u64, logger: &slog::Logger) -> Result<Self, QuorumError> {
        let voters: Vec<u64> = cfg.voters.iter().map(|&v| raft_id(v)).collect();
        let store = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        {
            let mut core = store.wl();
            core.append(&restored.entries)?;
            let mut hs = restored.hard_state;
            // A commit index past the log (hard state written, entries not
            // yet) would make raft-rs panic; the log is the authority.
            let last = restored.entries.last().map_or(0, |e| e.index);
            hs.commit = hs.commit.min(last);
            core.set_hardstate(hs);
        }
        let config = raft::Config {
            id: raft_id(cfg.node),
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: 0,
            max_size_per_msg: MAX_SIZE_PER_MSG,
            max_inflight_msgs: MAX_INFLIGHT_MSGS,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        config.validate()?;
        let node = RawNode::new(&config, store, logger)?;
        let last = (node.raft.term, node.raft.state);
        let mut core = QuorumCore { node, rng: SmallRng::seed_from_u64(seed), last };
        core.reseed_timeout();
        Ok(core)
    }

    pub fn tick(&mut self) {
        self.node.tick();
        self.after_call();
    }

    /// Feeds a message from a peer. Messages from unknown or stale peers are
    /// dropped by raft-rs itself.
    pub fn step(&mut self, m: Message) -> Result<(), QuorumError> {
        let own = self.node.raft.id;
        if m.to != own {
            return Err(QuorumError::Misaddressed { to: m.to });
        }
        if m.msg_type == MessageType::MsgHeartbeat && m.commit > self.node.raft.raft_log.last_index() {
            // A leader never sends a commit index past what the follower
            // holds (it sends min(match, committed)); raft-rs would panic
            // on one. Only a forged or corrupted message carries it.
            return Err(QuorumError::Misaddressed { to: m.to });
        }
        let r = self.node.step(m);
        self.after_call();
        match r {
            // A message for a peer that left, or a response to a step-down:
            // raft-rs tells; not the caller's fault.
            Err(raft::Error::StepPeerNotFound | raft::Error::StepLocalMsg) => Ok(()),
            r => Ok(r?),
        }
    }

    /// Appends `data` to the log if this node leads, with `context` (the
    /// controller's proposal id) beside it. The entry commits when a quorum
    /// has it; it may still be lost if leadership changes first.
    pub fn propose(&mut self, context: Bytes, data: Bytes) -> Result<(), QuorumError> {
        if self.node.raft.state != StateRole::Leader {
            return Err(QuorumError::NotLeader { leader: self.leader() });
        }
        let r = self.node.propose(context.to_vec(), data.to_vec());
        self.after_call();
        match r {
            Err(raft::Error::ProposalDropped) => Err(QuorumError::NotLeader { leader: self.leader() }),
            r => Ok(r?),
        }
    }

    /// Asks this node to campaign now (tests, and a single voter at start
    /// so it need not wait an election timeout).
    pub fn campaign(&mut self) -> Result<(), QuorumError> {
        let r = self.node.campaign();
        self.after_call();
        Ok(r?)
    }

    /// A peer could not be reached: raft-rs stops pipelining to it.
    pub fn report_unreachable(&mut self, node: BrokerId) {
        self.node.report_unreachable(raft_id(node));
    }

    pub fn ready(&mut self) -> Option<QuorumReady> {
        if !self.node.has_ready() {
            return None;
        }
        let mut rd = self.node.ready();
        assert!(rd.snapshot().is_empty(), "snapshots are not used yet");
        Some(QuorumReady {
            send_now: rd.take_messages(),
            committed: rd.take_committed_entries(),
            entries: rd.take_entries(),
            hard_state: rd.hs().cloned(),
            must_sync: rd.must_sync(),
            send_after_persist: rd.take_persisted_messages(),
            ready: rd,
        })
    }

    /// The driver persisted `rd.entries` and `rd.hard_state` and applied
    /// `rd.committed`.
    pub fn persisted(&mut self, rd: QuorumReady) -> QuorumLight {
        {
            let mut store = self.node.mut_store().wl();
            store.append(&rd.entries).expect("entries raft-rs handed out fit its own log");
            if let Some(hs) = &rd.hard_state {
                store.set_hardstate(hs.clone());
            }
        }
        let mut light = self.node.advance(rd.ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().wl().mut_hard_state().commit = commit;
        }
        let out = QuorumLight { send: light.take_messages(), committed: light.take_committed_entries() };
        // The driver applies everything it is handed before the next call.
        self.node.advance_apply();
        self.after_call();
        out
    }

    pub fn status(&self) -> QuorumStatus {
        let r = &self.node.raft;
        QuorumStatus {
            role: match r.state {
                StateRole::Follower => Role::Follower,
                StateRole::PreCandidate => Role::PreCandidate,
                StateRole::Candidate => Role::Candidate,
                StateRole::Leader => Role::Leader,
            },
            term: r.term,
            leader: self.leader(),
            commit: r.raft_log.committed,
            last_index: r.raft_log.last_index(),
        }
    }

    pub fn leader(&self) -> Option<BrokerId> {
        match self.node.raft.leader_id {
            raft::INVALID_ID => None,
            id => Some(node_id(id)),
        }
    }

    fn after_call(&mut self) {
        let now = (self.node.raft.term, self.node.raft.state);
        if now != self.last {
            self.last = now;
            self.reseed_timeout();
        }
    }

    fn reseed_timeout(&mut self) {
        let r = &mut self.node.raft;
        let (min, max) = (r.election_timeout(), 2 * r.election_timeout());
        let t = self.rng.random_range(min..max);
        r.set_randomized_election_timeout(t);
    }
}

/// A logger that drops everything (the simulator, tests).
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

#[cfg(test)]
mod tests;
