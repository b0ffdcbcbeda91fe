//! Consumer-group coordinator: Kafka's classic rebalance protocol.
//!
//! Each group lives on one core: the owner of its `__consumer_offsets`
//! partition (`partition_for_group`, Kafka's rule), so the group's state and
//! the log its commits go to share a core and need no locks. Requests reach
//! it through [`crate::shard::Shard::invoke_on`].
//!
//! States follow Kafka: Empty -> PreparingRebalance (members (re)join;
//! the join responses wait) -> CompletingRebalance (the leader computes the
//! assignment; SyncGroup responses wait for it) -> Stable. A member that
//! stops heartbeating for `session.timeout.ms` is removed and the group
//! rebalances; a member that does not rejoin within the rebalance timeout is
//! dropped from the new generation. The assignors run in the clients
//! (range, roundrobin, cooperative-sticky); the coordinator only carries
//! their bytes.
//!
//! Durability: offset commits are appended to `__consumer_offsets` with
//! fdatasync before they are acknowledged (as durable as acks=all), in
//! Kafka's record schemas ([`schema`]). On start each core replays its
//! partitions of that topic.
//!
//! Members survive a restart and a move of the coordinator, as in Kafka:
//! each completed rebalance and each fall to Empty stores the group's
//! metadata record, members and their assignments included. A rebalance
//! completes only once its record is stored (the members' SyncGroup
//! answers wait for it; if the write fails they get its error and the
//! group rebalances), so no member holds an assignment that a replay
//! would not restore. A replay restores the last record: a Stable group
//! with those members at that generation, each with a full session timeout
//! from the replay. Their heartbeats, commits and SyncGroups then go on as
//! before and the group does not rebalance; a member that does not come
//! back expires as any other. A rebalance the crash interrupted is not
//! stored, so the group restarts from the generation before it, and the
//! members that had rejoined since rejoin again.
//!
//! Growth of `__consumer_offsets` is bounded by snapshot compaction: when a
//! partition has grown by `offsets.compact.bytes` (default
//! [`DEFAULT_COMPACT_AFTER_BYTES`]) since its last snapshot, the
//! coordinator appends the current value of every live key and moves the log
//! start offset to the snapshot, so retention deletes the old segments.

pub mod lag;
pub mod schema;

use crate::shard::{now_ms, Shard};
use bytes::Bytes;
use event_listener::Event;
use futures::channel::oneshot;
use kafka_protocol::ResponseError;
use schema::{GroupValue, Key, MemberValue, OffsetValue};
use spindle_engine::records::{encode_batch, iter_records, NewRecord};
use spindle_engine::{AppendOptions, Durability};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// `offsets.topic.num.partitions`, Kafka's default.
pub const OFFSETS_TOPIC_PARTITIONS: i32 = 50;
/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
/// A `__consumer_offsets` partition is compacted after growing this much
/// (`offsets.compact.bytes`). On disk a partition then holds at most about
/// this much plus one segment and one snapshot of its live keys.
pub const DEFAULT_COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// Largest segment size of `__consumer_offsets` partitions (a quarter of
/// `offsets.compact.bytes` when that is smaller): small, so compaction frees
/// space soon.
pub const OFFSETS_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup caller gets back.
#[derive(Clone, Debug, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: every member and its metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// JoinGroup v9+: the leader of a Stable group that a static member
    /// rejoined must not run its assignor (the assignments stand).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    fn error(e: ResponseError, member_id: &str) -> Self {
        JoinOutcome { error: e.code(), generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }

    fn with_error(self, e: ResponseError) -> Self {
        JoinOutcome { error: e.code(), ..self }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(e: ResponseError) -> Self {
        SyncOutcome { error: e.code(), ..Default::default() }
    }
}

pub struct JoinArgs {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member must first learn its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the answer can tell a leader to skip its assignor.
    pub supports_skip_assignment: bool,
    /// `group.max.size`, the broker's: the most members a group admits.
    pub max_size: usize,
}

/// An empty group as it was before DeleteGroups, kept until its tombstones
/// are written ([`Coordinator::undelete`]).
pub struct DeletedGroup {
    group: Group,
    history: Option<BTreeMap<(String, i32), VecDeque<lag::CommitSample>>>,
}

/// A static member that rejoined a Stable group under a new member id,
/// waiting for the group's record with that id to be stored: Kafka keeps
/// the assignment and the generation instead of rebalancing.
struct StaticRejoin {
    old_id: String,
    new_id: String,
    generation: i32,
    /// The leader before the rejoin, which is the answer's leader below
    /// JoinGroup v9: a rejoining leader then takes itself for a follower
    /// and runs no assignment that the Stable group would ignore.
    leader_before: Option<String>,
    protocols_before: Vec<(String, Bytes)>,
    session_before: Duration,
    rebalance_before: Duration,
}

/// Where a JoinGroup stands once the coordinator has taken it in.
enum JoinStep {
    Answer(JoinOutcome),
    /// The answer comes when the join phase completes.
    Wait(oneshot::Receiver<JoinOutcome>),
    /// The member's join waiter is set while the record is written, as
    /// Kafka sets its join callback: the member counts as joined if a
    /// rebalance completes meanwhile (and then gets that answer), and its
    /// session cannot expire.
    Store(StaticRejoin, oneshot::Receiver<JoinOutcome>),
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Order of first join, for a stable choice of leader.
    joined_seq: u64,
}

struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: BTreeSet<String>,
    rebalance_deadline: Option<Instant>,
    /// Members given the current generation that have not sent SyncGroup
    /// for it yet, and when they are out of time (the rebalance timeout,
    /// as Kafka's pending-sync expiration): those still pending then are
    /// removed and the group rebalances, so a member that heartbeats but
    /// never syncs cannot hold the group in CompletingRebalance.
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<Instant>,
    /// The leader's SyncGroup is storing `completed`: the group timer
    /// leaves it to that store, so a value whose store fails (and which
    /// the group then gives up) is never written by the timer.
    sync_storing: bool,
    initial_delay_until: Option<Instant>,
    offsets: BTreeMap<(String, i32), OffsetValue>,
    state_since_ms: i64,
    /// The group at its last completed rebalance (Stable after the
    /// leader's SyncGroup) or fall to Empty: what its metadata record
    /// holds, or will once `store_due` is written.
    completed: Option<GroupValue>,
    /// `completed` is not in the log yet.
    store_due: bool,
    /// A failed store is retried by the group timer from then on.
    store_retry_at: Option<Instant>,
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeSet::new(),
            rebalance_deadline: None,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            sync_storing: false,
            initial_delay_until: None,
            offsets: BTreeMap::new(),
            state_since_ms: now_ms(),
            completed: None,
            store_due: false,
            store_retry_at: None,
        }
    }

    /// A rebalance completes (the leader's SyncGroup), or the group fell to
    /// Empty: its metadata record is due.
    fn completed(&mut self) {
        self.completed = Some(self.metadata_value());
        self.store_due = true;
    }

    /// The metadata record to keep in a compaction snapshot: the last
    /// completed state, never members in the middle of a rebalance.
    fn durable_value(&self) -> GroupValue {
        self.completed.clone().unwrap_or_else(|| GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            current_state_timestamp: self.state_since_ms,
            ..Default::default()
        })
    }

    fn set_state(&mut self, s: GroupState) {
        self.state = s;
        self.state_since_ms = now_ms();
    }

    /// The group's rebalance timeout: its members' longest (Kafka's
    /// rule), or 60 s with no members.
    fn rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(60))
    }

    /// The member id a static member's instance id maps to.
    fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance_id)).map(|m| m.id.as_str())
    }

    /// Kafka's check of the member a request names: a given instance id
    /// must map to that member id (FENCED_INSTANCE_ID when it maps to
    /// another, a newer incarnation of the static member), and the member
    /// must exist.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        match instance_id {
            Some(inst) => match self.static_member(inst) {
                Some(id) if id != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(ResponseError::UnknownMemberId),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Every member's metadata for the chosen protocol, as the leader's
    /// JoinGroup answer lists them.
    fn member_metadata(&self) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .values()
            .map(|m| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == self.protocol.as_ref())
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (m.id.clone(), m.instance_id.clone(), meta)
            })
            .collect()
    }

    /// The answer to a member joining the current generation again.
    fn current_join(&self, member_id: &str, leader: Option<String>, members: bool) -> JoinOutcome {
        JoinOutcome {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: leader.unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if members { self.member_metadata() } else { Vec::new() },
            skip_assignment: false,
        }
    }

    /// Protocols every member supports, in the first member's order of
    /// preference; the one with most first-choice votes wins (Kafka's rule).
    fn select_protocol(&self) -> Option<String> {
        let mut common: Option<Vec<String>> = None;
        for m in self.members.values() {
            let names: Vec<String> = m.protocols.iter().map(|(n, _)| n.clone()).collect();
            common = Some(match common {
                None => names,
                Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
            });
        }
        let common = common?;
        let mut votes: Vec<(usize, &String)> = common
            .iter()
            .map(|c| {
                let v = self
                    .members
                    .values()
                    .filter(|m| m.protocols.iter().find(|(n, _)| common.contains(n)).is_some_and(|(n, _)| n == c))
                    .count();
                (v, c)
            })
            .collect();
        votes.sort_by(|a, b| b.0.cmp(&a.0));
        votes.first().map(|(_, c)| (*c).clone())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol must be supported by every existing member and the newcomer.
        protocols.iter().any(|(p, _)| self.members.values().all(|m| m.protocols.iter().any(|(q, _)| q == p)))
    }

    fn metadata_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout.as_millis() as i32,
                    session_timeout: m.session_timeout.as_millis() as i32,
                    subscription: self
                        .protocol
                        .as_ref()
                        .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

/// A member's view for DescribeGroups and the lag tools.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct GroupInfo {
    pub group: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberInfo>,
}

#[derive(Default)]
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions of this core already replayed.
    loaded: RefCell<BTreeSet<i32>>,
    /// Size of each partition at its last snapshot.
    compacted_at: RefCell<HashMap<i32, u64>>,
    /// Per partition: appends share it, a snapshot holds it alone. A
    /// snapshot is built from memory, so it must not run while an append
    /// is in flight: that append would land before the snapshot in the log
    /// and its value, not yet in memory, would be overwritten on replay by
    /// the older one the snapshot carries.
    write_gates: RefCell<HashMap<i32, Rc<WriteGate>>>,
    /// Recent commits per group and partition, for lag status.
    history: RefCell<HashMap<String, BTreeMap<(String, i32), VecDeque<lag::CommitSample>>>>,
    member_seq: Cell<u64>,
    /// Groups whose metadata record [`store_group`] is writing.
    storing: RefCell<BTreeSet<String>>,
}

/// Appends to a `__consumer_offsets` partition share the gate; a snapshot
/// takes it alone. Unlike glommio's `RwLock`, a waiting snapshot stops new
/// appends from entering, so a steady stream of commits cannot starve it.
#[derive(Default)]
struct WriteGate {
    appends: Cell<usize>,
    snapshot: Cell<bool>,
    changed: Event,
}

struct GatePass<'a> {
    gate: &'a WriteGate,
    exclusive: bool,
}

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        if self.exclusive {
            self.gate.snapshot.set(false);
        } else {
            self.gate.appends.set(self.gate.appends.get() - 1);
        }
        self.gate.changed.notify(usize::MAX);
    }
}

impl WriteGate {
    async fn shared(&self) -> GatePass<'_> {
        while self.snapshot.get() {
            let listener = self.changed.listen();
            if self.snapshot.get() {
                listener.await;
            }
        }
        self.appends.set(self.appends.get() + 1);
        GatePass { gate: self, exclusive: false }
    }

    async fn exclusive(&self) -> GatePass<'_> {
        // One snapshot at a time (a partition has one compactor, but be safe).
        while self.snapshot.get() {
            let listener = self.changed.listen();
            if self.snapshot.get() {
                listener.await;
            }
        }
        self.snapshot.set(true);
        let pass = GatePass { gate: self, exclusive: true };
        while self.appends.get() > 0 {
            let listener = self.changed.listen();
            if self.appends.get() > 0 {
                listener.await;
            }
        }
        pass
    }
}

fn new_member_id(client_id: &str) -> String {
    format!("{}-{}", if client_id.is_empty() { "member" } else { client_id }, uuid::Uuid::new_v4())
}

impl Coordinator {
    fn next_seq(&self) -> u64 {
        let s = self.member_seq.get() + 1;
        self.member_seq.set(s);
        s
    }

    /// Cluster mode: this broker stopped leading `partition`; its groups
    /// are the new leader's to serve (rebuilt there from the log).
    pub fn unload_partition(&self, partition: i32) {
        if self.loaded.borrow_mut().remove(&partition) {
            self.groups
                .borrow_mut()
                .retain(|id, _| schema::partition_for_group(id, OFFSETS_TOPIC_PARTITIONS) != partition);
            tracing::info!(partition, "unloaded __consumer_offsets partition");
        }
    }

    pub fn is_loaded(&self, partition: i32) -> bool {
        self.loaded.borrow().contains(&partition)
    }

    fn write_gate(&self, partition: i32) -> Rc<WriteGate> {
        self.write_gates.borrow_mut().entry(partition).or_default().clone()
    }

    // ------------------------------------------------------------------
    // JoinGroup / SyncGroup / Heartbeat / LeaveGroup
    // ------------------------------------------------------------------

    /// JoinGroup. `initial_delay` is `group.initial.rebalance.delay.ms`.
    /// `store` writes the group's record at least at a generation: a static
    /// member rejoining a Stable group under a new id is answered once the
    /// record with that id is stored, as in Kafka.
    pub async fn join<F, Fut>(&self, initial_delay: Duration, a: JoinArgs, store: F) -> JoinOutcome
    where
        F: FnOnce(i32) -> Fut,
        Fut: std::future::Future<Output = Result<(), ResponseError>>,
    {
        // A waiter dropped unanswered: the group was unloaded (this broker
        // stopped coordinating it).
        let unloaded = |_| JoinOutcome::error(ResponseError::NotCoordinator, "");
        match self.join_step(initial_delay, &a) {
            JoinStep::Answer(out) => out,
            JoinStep::Wait(rx) => rx.await.unwrap_or_else(unloaded),
            JoinStep::Store(rejoin, rx) => {
                let stored = store(rejoin.generation).await;
                match self.finish_static_rejoin(&a, rejoin, stored) {
                    Some(out) => out,
                    // Answered meanwhile: by a rebalance, a fence, a leave.
                    None => rx.await.unwrap_or_else(unloaded),
                }
            }
        }
    }

    fn join_step(&self, initial_delay: Duration, a: &JoinArgs) -> JoinStep {
        let answer = |e: ResponseError, member: &str| JoinStep::Answer(JoinOutcome::error(e, member));
        let mut groups = self.groups.borrow_mut();
        if a.group.is_empty() {
            return answer(ResponseError::InvalidGroupId, &a.member_id);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&a.session_timeout_ms) {
            return answer(ResponseError::InvalidSessionTimeout, &a.member_id);
        }
        if a.protocol_type.is_empty() || a.protocols.is_empty() {
            return answer(ResponseError::InconsistentGroupProtocol, &a.member_id);
        }
        let g = groups.entry(a.group.clone()).or_insert_with(|| Group::new(&a.group));
        if g.state == GroupState::Dead {
            *g = Group::new(&a.group);
        }
        if !g.supports(&a.protocol_type, &a.protocols) {
            return answer(ResponseError::InconsistentGroupProtocol, &a.member_id);
        }
        if !accepts_joining_member(g, a) {
            refuse_over_max_size(g, a);
            return answer(ResponseError::GroupMaxSizeReached, "");
        }
        let session = Duration::from_millis(a.session_timeout_ms as u64);
        let rebalance = Duration::from_millis(a.rebalance_timeout_ms.max(a.session_timeout_ms) as u64);
        let now = Instant::now();
        let mut member_id = a.member_id.clone();
        if member_id.is_empty() {
            member_id = new_member_id(&a.client_id);
            match &a.instance_id {
                Some(inst) => {
                    if let Some(old) = g.static_member(inst).map(str::to_string) {
                        if let Some(rejoin) = replace_static_member(g, &old, &member_id, a) {
                            let (tx, rx) = oneshot::channel();
                            g.members.get_mut(&member_id).expect("just replaced").join_waiter = Some(tx);
                            return JoinStep::Store(rejoin, rx);
                        }
                    }
                }
                None if a.require_known_member_id => {
                    g.pending.insert(member_id.clone());
                    return answer(ResponseError::MemberIdRequired, &member_id);
                }
                None => {}
            }
        } else if !g.pending.remove(&member_id) {
            if let Err(e) = g.check_member(&member_id, a.instance_id.as_deref()) {
                return answer(e, &member_id);
            }
            // Kafka's rule: the same metadata again gets the current
            // generation (a lost answer, or a follower's needless rejoin);
            // the leader's rejoin or new metadata starts a rebalance.
            let m = g.members.get_mut(&member_id).expect("checked");
            let same = m.protocols == a.protocols;
            let leader = g.leader.as_deref() == Some(member_id.as_str());
            match g.state {
                GroupState::CompletingRebalance if same => {
                    m.last_seen = now;
                    return JoinStep::Answer(g.current_join(&member_id, g.leader.clone(), leader));
                }
                GroupState::Stable if same && !leader => {
                    m.last_seen = now;
                    return JoinStep::Answer(g.current_join(&member_id, g.leader.clone(), false));
                }
                _ => {}
            }
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq();
        let m = g.members.entry(member_id.clone()).or_insert_with(|| Member {
            id: member_id.clone(),
            instance_id: a.instance_id.clone(),
            client_id: a.client_id.clone(),
            client_host: a.client_host.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: now,
            join_waiter: None,
            sync_waiter: None,
            joined_seq: seq,
        });
        m.session_timeout = session;
        m.rebalance_timeout = rebalance;
        m.protocols = a.protocols.clone();
        m.last_seen = now;
        if let Some(old) = m.join_waiter.replace(tx) {
            let _ = old.send(JoinOutcome::error(ResponseError::RebalanceInProgress, &member_id));
        }
        g.protocol_type = Some(a.protocol_type.clone());
        if g.state != GroupState::PreparingRebalance {
            prepare_rebalance(g, if g.state == GroupState::Empty { Some(initial_delay) } else { None });
        }
        try_complete_join(g, false);
        JoinStep::Wait(rx)
    }

    /// The store of a static member's new id ended. Stored: the member
    /// gets the current generation and keeps its assignment (a v9+ leader
    /// is told to skip its assignor). Failed: the replacement is undone,
    /// as Kafka does, and the member gets the error. `None` if the member
    /// was answered meanwhile (its join waiter is gone).
    fn finish_static_rejoin(
        &self,
        a: &JoinArgs,
        r: StaticRejoin,
        stored: Result<(), ResponseError>,
    ) -> Option<JoinOutcome> {
        let mut groups = self.groups.borrow_mut();
        let g = groups.get_mut(&a.group)?;
        g.members.get_mut(&r.new_id)?.join_waiter.take()?;
        Some(static_rejoin_answer(g, a, r, stored))
    }

    /// SyncGroup. The leader's sync completes the rebalance once `store`
    /// has written the group's metadata record for it: every member's
    /// answer waits for that, as in Kafka. If the write fails, every member
    /// gets its error and the group rebalances.
    pub async fn sync<F, Fut>(
        &self,
        group: &str,
        generation: i32,
        member: (&str, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        store: F,
    ) -> SyncOutcome
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), ResponseError>>,
    {
        let (member_id, instance_id) = member;
        let (rx, leader) = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group) else { return SyncOutcome::error(ResponseError::UnknownMemberId) };
            if let Err(e) = g.check_member(member_id, instance_id) {
                return SyncOutcome::error(e);
            }
            let m = g.members.get_mut(member_id).expect("checked");
            m.last_seen = Instant::now();
            if generation != g.generation {
                return SyncOutcome::error(ResponseError::IllegalGeneration);
            }
            if g.state != GroupState::PreparingRebalance {
                g.pending_sync.remove(member_id);
            }
            match g.state {
                GroupState::PreparingRebalance => return SyncOutcome::error(ResponseError::RebalanceInProgress),
                GroupState::Stable => {
                    return SyncOutcome {
                        error: 0,
                        protocol_type: g.protocol_type.clone(),
                        protocol: g.protocol.clone(),
                        assignment: m.assignment.clone(),
                    };
                }
                GroupState::Empty | GroupState::Dead => return SyncOutcome::error(ResponseError::UnknownMemberId),
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            let leader = g.leader.as_deref() == Some(member_id) && m.sync_waiter.is_none();
            let before = (g.completed.clone(), g.store_due);
            if let Some(old) = m.sync_waiter.replace(tx) {
                let _ = old.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
            }
            if leader {
                for m in g.members.values_mut() {
                    m.assignment =
                        assignments.iter().find(|(id, _)| *id == m.id).map(|(_, a)| a.clone()).unwrap_or_default();
                }
                g.completed();
                g.sync_storing = true;
            }
            (rx, leader.then_some(before))
        };
        if let Some(before) = leader {
            let stored = store().await;
            self.finish_sync(group, generation, stored, before);
        }
        // A waiter dropped unanswered: the group was unloaded.
        rx.await.unwrap_or_else(|_| SyncOutcome::error(ResponseError::NotCoordinator))
    }

    /// The leader's store of `generation` ended: the group becomes Stable
    /// and every member gets its assignment, or, if it failed, the error,
    /// and the group rebalances. Nothing, if the group moved on meanwhile
    /// (a new rebalance already answered them). `before` is the group's
    /// last completed state and whether it was due before this sync: a
    /// failed store falls back to it, so the generation that never went
    /// Stable is not written later by the group timer.
    fn finish_sync(
        &self,
        group: &str,
        generation: i32,
        stored: Result<(), ResponseError>,
        before: (Option<GroupValue>, bool),
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else { return };
        g.sync_storing = false;
        if stored.is_err() && g.completed.as_ref().is_some_and(|v| v.generation == generation) {
            // Even if the group moved on meanwhile: the generation that
            // never went Stable must not be written later.
            (g.completed, g.store_due) = before;
        }
        if g.state != GroupState::CompletingRebalance || g.generation != generation {
            return;
        }
        match stored {
            Ok(()) => {
                g.set_state(GroupState::Stable);
                for m in g.members.values_mut() {
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncOutcome {
                            error: 0,
                            protocol_type: g.protocol_type.clone(),
                            protocol: g.protocol.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
            }
            Err(e) => {
                tracing::warn!(group, generation, error = ?e, "group metadata not stored; rebalancing");
                for m in g.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncOutcome::error(e));
                    }
                }
                prepare_rebalance(g, None);
            }
        }
    }

    pub fn heartbeat(&self, group: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> i16 {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else { return ResponseError::UnknownMemberId.code() };
        if let Err(e) = g.check_member(member_id, instance_id) {
            return e.code();
        }
        let state = g.state;
        let gen = g.generation;
        let m = g.members.get_mut(member_id).expect("checked");
        m.last_seen = Instant::now();
        if generation != gen {
            return ResponseError::IllegalGeneration.code();
        }
        match state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Removes members (LeaveGroup); each entry is `(member_id, instance_id)`.
    /// Returns a code per member.
    pub fn leave(&self, group: &str, members: &[(String, Option<String>)]) -> (i16, Vec<i16>) {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else {
            return (0, members.iter().map(|_| ResponseError::UnknownMemberId.code()).collect());
        };
        let mut codes = Vec::new();
        let mut removed = false;
        for (id, inst) in members {
            // Kafka's rules: no member id is an administrative removal by
            // instance id; a pending member just goes; otherwise the
            // member must be current (FENCED_INSTANCE_ID for an old
            // incarnation of a static member).
            let target = if id.is_empty() {
                inst.as_deref().and_then(|i| g.static_member(i)).map(str::to_string)
            } else if g.pending.remove(id) {
                codes.push(0);
                continue;
            } else {
                match g.check_member(id, inst.as_deref()) {
                    Ok(()) => Some(id.clone()),
                    Err(e) => {
                        codes.push(e.code());
                        continue;
                    }
                }
            };
            match target.and_then(|t| g.members.remove(&t)) {
                Some(mut m) => {
                    if let Some(w) = m.join_waiter.take() {
                        let _ = w.send(JoinOutcome::error(ResponseError::UnknownMemberId, &m.id));
                    }
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncOutcome::error(ResponseError::UnknownMemberId));
                    }
                    removed = true;
                    codes.push(0);
                }
                None => codes.push(ResponseError::UnknownMemberId.code()),
            }
        }
        if removed {
            member_left(g);
        }
        (0, codes)
    }

    /// Timer work: completes rebalances whose deadline passed and expires
    /// members whose session timed out.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for g in groups.values_mut() {
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout)
                .map(|m| m.id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %g.id, member = %id, "member session expired");
                if let Some(mut m) = g.members.remove(id) {
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncOutcome::error(ResponseError::UnknownMemberId));
                    }
                }
            }
            if !expired.is_empty() {
                member_left(g);
            }
            if g.sync_deadline.is_some_and(|d| now >= d) {
                g.sync_deadline = None;
                let late: Vec<String> =
                    std::mem::take(&mut g.pending_sync).into_iter().filter(|id| g.members.contains_key(id)).collect();
                for id in &late {
                    tracing::info!(group = %g.id, member = %id, "member did not sync in its rebalance timeout");
                    if let Some(mut m) = g.members.remove(id) {
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(JoinOutcome::error(ResponseError::UnknownMemberId, id));
                        }
                    }
                }
                if !late.is_empty() {
                    member_left(g);
                }
            }
            if g.state == GroupState::PreparingRebalance {
                let due = g.rebalance_deadline.is_some_and(|d| now >= d);
                try_complete_join(g, due);
            }
        }
    }

    // ------------------------------------------------------------------
    // Offsets
    // ------------------------------------------------------------------

    /// Checks a commit's member and generation (generation -1 with no member:
    /// a commit from outside group management, allowed while the group has
    /// no members).
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if group.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else {
            return if generation < 0 { Ok(()) } else { Err(ResponseError::IllegalGeneration) };
        };
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return if g.members.is_empty() { Ok(()) } else { Err(ResponseError::UnknownMemberId) };
        }
        g.check_member(member_id, instance_id)?;
        let state = g.state;
        let gen = g.generation;
        let m = g.members.get_mut(member_id).expect("checked");
        m.last_seen = Instant::now();
        if generation != gen {
            return Err(ResponseError::IllegalGeneration);
        }
        if state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Records committed offsets after they were made durable.
    pub fn apply_commits(&self, group: &str, commits: &[((String, i32), OffsetValue)]) {
        let mut groups = self.groups.borrow_mut();
        let g = groups.entry(group.to_string()).or_insert_with(|| Group::new(group));
        if g.state == GroupState::Dead {
            *g = Group::new(group);
        }
        for (k, v) in commits {
            g.offsets.insert(k.clone(), v.clone());
        }
    }

    /// Committed offsets of a group: all of them, or those asked for
    /// (`None` for a partition never committed).
    pub fn offsets(&self, group: &str) -> BTreeMap<(String, i32), OffsetValue> {
        self.groups.borrow().get(group).map(|g| g.offsets.clone()).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state))
            .collect()
    }

    pub fn describe(&self, group: &str) -> Option<GroupInfo> {
        let groups = self.groups.borrow();
        let g = groups.get(group).filter(|g| g.state != GroupState::Dead)?;
        Some(GroupInfo {
            group: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            generation: g.generation,
            members: g
                .members
                .values()
                .map(|m| MemberInfo {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: g
                        .protocol
                        .as_ref()
                        .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: if g.state == GroupState::Stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        })
    }

    /// DeleteGroups: only an empty group. Marks it deleted now and returns
    /// the tombstones to write; the caller makes this call where the
    /// tombstones join the log's line ([`write_records_with`]), so no record
    /// of the group can land after them. As in Kafka, the group is gone
    /// from memory even if the write then fails.
    pub fn delete(&self, group: &str) -> Result<(Vec<Key>, DeletedGroup), ResponseError> {
        let mut groups = self.groups.borrow_mut();
        let g = groups.get_mut(group).filter(|g| g.state != GroupState::Dead).ok_or(ResponseError::GroupIdNotFound)?;
        if !g.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut keys = vec![Key::Group { group: group.to_string() }];
        keys.extend(g.offsets.keys().map(|(t, p)| Key::Offset {
            group: group.to_string(),
            topic: t.clone(),
            partition: *p,
        }));
        let old = std::mem::replace(g, Group::new(group));
        g.set_state(GroupState::Dead);
        let history = self.history.borrow_mut().remove(group);
        Ok((keys, DeletedGroup { group: old, history }))
    }

    /// Puts back a group whose deletion's tombstones were not written, so
    /// memory agrees with the log again and a retried DeleteGroups finds
    /// it (Kafka's newer coordinator rolls back the same way). Only if
    /// nothing re-created the group meanwhile: then the new one stands.
    pub fn undelete(&self, deleted: DeletedGroup) {
        let mut groups = self.groups.borrow_mut();
        let id = deleted.group.id.clone();
        match groups.get_mut(&id) {
            Some(g) if g.state == GroupState::Dead => {
                *g = deleted.group;
                if let Some(h) = deleted.history {
                    self.history.borrow_mut().insert(id, h);
                }
            }
            _ => {
                tracing::warn!(group = %id, "group re-created before its failed deletion was undone; keeping the new one")
            }
        }
    }

    /// Adds commit samples (offset and the log end at commit time).
    pub fn record_samples(&self, group: &str, samples: Vec<((String, i32), lag::CommitSample)>) {
        let mut h = self.history.borrow_mut();
        let g = h.entry(group.to_string()).or_default();
        for (k, s) in samples {
            lag::push_sample(g.entry(k).or_default(), s);
        }
    }

    /// The commit window of every partition of a group.
    pub fn history(&self, group: &str) -> BTreeMap<(String, i32), VecDeque<lag::CommitSample>> {
        self.history.borrow().get(group).cloned().unwrap_or_default()
    }

    /// OffsetDelete: forgets offsets; the caller writes the tombstones first.
    pub fn forget_offsets(&self, group: &str, parts: &[(String, i32)]) {
        if let Some(g) = self.groups.borrow_mut().get_mut(group) {
            for p in parts {
                g.offsets.remove(p);
            }
        }
    }

    pub fn group_exists(&self, group: &str) -> bool {
        self.groups.borrow().get(group).is_some_and(|g| g.state != GroupState::Dead)
    }

    /// Topics the group's members are assigned, as far as the coordinator
    /// can tell without decoding assignments: whether it has members at all.
    pub fn has_members(&self, group: &str) -> bool {
        self.groups.borrow().get(group).is_some_and(|g| !g.members.is_empty())
    }

    // ------------------------------------------------------------------
    // Replay and compaction
    // ------------------------------------------------------------------

    /// Replays one `__consumer_offsets` partition into memory.
    /// A partition already loaded is left as it is: this broker has led it
    /// since (a new leader epoch naming the same leader), so memory is
    /// newer than the log and may hold a rebalance in progress. Kafka
    /// likewise keeps a cached group over the one a load reads.
    pub async fn load_partition(&self, shard: &Rc<Shard>, partition: i32) -> Result<(), String> {
        if self.is_loaded(partition) {
            return Ok(());
        }
        let log = shard.partition(OFFSETS_TOPIC, partition).await.map_err(|e| format!("{e:?}"))?;
        let mut next = log.log_start_offset();
        let hw = log.high_watermark();
        let mut records = 0u64;
        while next < hw {
            let batches = log.read(next, 4 << 20, hw).await.map_err(|e| e.to_string())?;
            if batches.is_empty() {
                break;
            }
            for b in &batches {
                next = b.header.next_offset();
                for r in iter_records(&b.payload) {
                    let Some(key) = r.key.and_then(|k| Key::decode(k).ok()) else { continue };
                    self.apply_record(key, r.value);
                    records += 1;
                }
            }
        }
        self.loaded.borrow_mut().insert(partition);
        self.compacted_at.borrow_mut().insert(partition, log.size_bytes());
        if records > 0 {
            tracing::info!(partition, records, "replayed __consumer_offsets partition");
        }
        self.rebalance_over_capacity(partition, shard.config.group_max_size as usize);
        Ok(())
    }

    /// Kafka's `onGroupLoaded`: a group of `partition` replayed with more
    /// members than `group.max.size` (the setting was lowered) rebalances at
    /// once, so that only the first members to rejoin, up to the maximum,
    /// stay ([`accepts_joining_member`]).
    fn rebalance_over_capacity(&self, partition: i32, max_size: usize) {
        let mut groups = self.groups.borrow_mut();
        for g in groups.values_mut() {
            let over = g.members.len() > max_size
                && matches!(g.state, GroupState::Stable | GroupState::CompletingRebalance)
                && schema::partition_for_group(&g.id, OFFSETS_TOPIC_PARTITIONS) == partition;
            if over {
                tracing::info!(group = %g.id, members = g.members.len(), max_size, "loaded group is over group.max.size; rebalancing");
                prepare_rebalance(g, None);
            }
        }
    }

    fn apply_record(&self, key: Key, value: Option<Bytes>) {
        let mut groups = self.groups.borrow_mut();
        match key {
            Key::Offset { group, topic, partition } => {
                let g = groups.entry(group.clone()).or_insert_with(|| Group::new(&group));
                match value.and_then(|v| OffsetValue::decode(v).ok()) {
                    Some(v) => {
                        g.offsets.insert((topic, partition), v);
                        if g.state == GroupState::Dead {
                            g.set_state(GroupState::Empty);
                        }
                    }
                    None => {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            }
            Key::Group { group } => match value.and_then(|v| GroupValue::decode(v).ok()) {
                Some(v) => {
                    let g = groups.entry(group.clone()).or_insert_with(|| Group::new(&group));
                    self.restore(g, v);
                }
                None => {
                    if let Some(g) = groups.get_mut(&group) {
                        // Deleted: a group of that name created later
                        // starts again from generation 0, as in memory.
                        *g = Group::new(&group);
                        g.set_state(GroupState::Dead);
                    }
                }
            },
        }
    }

    /// A group as its metadata record left it: a Stable group with its
    /// members, each with a full session from now, or an Empty one.
    fn restore(&self, g: &mut Group, v: GroupValue) {
        // Records replay in log order, so generations only rise; a record
        // below the group's generation cannot be its newest state.
        if v.generation < g.generation {
            return;
        }
        g.generation = v.generation;
        g.protocol_type = Some(v.protocol_type.clone()).filter(|p| !p.is_empty());
        g.protocol = v.protocol.clone();
        g.leader = v.leader.clone();
        g.members.clear();
        g.pending.clear();
        g.rebalance_deadline = None;
        g.initial_delay_until = None;
        g.pending_sync.clear();
        g.sync_deadline = None;
        let now = Instant::now();
        // Members only with the rebalance's outcome (a record written
        // mid-rebalance by an older version has no protocol or leader).
        let members = if v.protocol.is_some() && v.leader.is_some() { &v.members[..] } else { &[] };
        for m in members {
            let session = Duration::from_millis(m.session_timeout.max(MIN_SESSION_TIMEOUT_MS) as u64);
            let member = Member {
                id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: session,
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout.max(0) as u64).max(session),
                // The record keeps the chosen protocol's subscription only
                // (Kafka's too); a rejoin brings the full list again.
                protocols: v.protocol.iter().map(|p| (p.clone(), m.subscription.clone())).collect(),
                assignment: m.assignment.clone(),
                last_seen: now,
                join_waiter: None,
                sync_waiter: None,
                joined_seq: self.next_seq(),
            };
            g.members.insert(member.id.clone(), member);
        }
        if g.members.is_empty() {
            g.protocol = None;
            g.leader = None;
        }
        g.set_state(if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable });
        g.completed = Some(v);
        g.store_due = false;
        g.store_retry_at = None;
    }

    /// Groups whose metadata record is due and not being written: a timer
    /// emptied them, or a write failed (retried from `now`, if given, on).
    pub fn stores_due(&self, now: Option<Instant>) -> Vec<String> {
        let storing = self.storing.borrow();
        let ready = |g: &Group| now.is_none_or(|now| g.store_retry_at.is_none_or(|t| now >= t));
        let groups = self.groups.borrow();
        groups
            .values()
            .filter(|g| g.store_due && !g.sync_storing && ready(g) && !storing.contains(&g.id))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Whether the group timer's store of some group is being written.
    pub fn stores_running(&self) -> bool {
        !self.storing.borrow().is_empty()
    }

    fn store_is_due(&self, group: &str) -> bool {
        self.groups.borrow().get(group).is_some_and(|g| g.store_due)
    }

    /// The group's record to write now: its last completed state if that
    /// is at least `generation` (`None`: only if due), which is then no
    /// longer due.
    fn take_store(&self, group: &str, generation: Option<i32>) -> Option<GroupValue> {
        let mut groups = self.groups.borrow_mut();
        let g = groups.get_mut(group).filter(|g| g.state != GroupState::Dead)?;
        let v = g.completed.as_ref()?;
        match generation {
            None if !g.store_due || g.sync_storing => return None,
            Some(at_least) if v.generation < at_least => return None,
            _ => {}
        }
        g.store_due = false;
        g.completed.clone()
    }

    fn store_failed(&self, group: &str) {
        if let Some(g) = self.groups.borrow_mut().get_mut(group) {
            g.store_due = g.completed.is_some() && g.state != GroupState::Dead;
            g.store_retry_at = Some(Instant::now() + STORE_RETRY_AFTER);
        }
    }

    /// Snapshot compaction of a partition that grew past the threshold.
    pub async fn maybe_compact(&self, shard: &Rc<Shard>, partition: i32) -> Result<bool, String> {
        // Cluster mode: the leader compacts; followers replicate the
        // snapshot and then follow the leader's log start.
        let replica = if shard.config.is_cluster() {
            match shard.replica(OFFSETS_TOPIC, partition).filter(|r| r.leading_epoch().is_some()) {
                Some(r) => Some(r),
                None => return Ok(false),
            }
        } else {
            None
        };
        let epoch = replica.as_ref().and_then(|r| r.leading_epoch()).unwrap_or(crate::ops::LEADER_EPOCH);
        let log = shard.partition(OFFSETS_TOPIC, partition).await.map_err(|e| format!("{e:?}"))?;
        let since = self.compacted_at.borrow().get(&partition).copied().unwrap_or(0);
        if log.size_bytes() < since + shard.config.offsets_compact_bytes {
            return Ok(false);
        }
        // Every append that started before is now in memory (its caller
        // applied it before yielding), and none starts until the snapshot
        // and the new log start are written.
        let gate = self.write_gate(partition);
        let _alone = gate.exclusive().await;
        let mut entries: Vec<(Key, Option<Bytes>)> = Vec::new();
        for g in self.groups.borrow().values() {
            if g.state == GroupState::Dead || schema::partition_for_group(&g.id, OFFSETS_TOPIC_PARTITIONS) != partition
            {
                continue;
            }
            entries.push((Key::Group { group: g.id.clone() }, Some(g.durable_value().encode())));
            for ((t, p), v) in &g.offsets {
                entries.push((Key::Offset { group: g.id.clone(), topic: t.clone(), partition: *p }, Some(v.encode())));
            }
        }
        let start = log.log_end_offset();
        let mut end = start;
        for chunk in entries.chunks(512) {
            end = append_records(&log, chunk.to_vec(), epoch).await.map_err(|e| e.to_string())?.last_offset + 1;
        }
        if let (Some(rep), Some(view)) = (&replica, shard.snapshot().cluster.clone()) {
            // The old records go only once the ISR has the snapshot: a
            // follower must never find the leader's log starting past what
            // it has fetched.
            rep.advance_local_end(&view, shard.config.acks_all_fsync);
            rep.wait_acked(end, COMMIT_REPLICATION_TIMEOUT)
                .await
                .map_err(|e| format!("snapshot not replicated: {e:?}"))?;
        }
        log.delete_records(start).await.map_err(|e| e.to_string())?;
        self.compacted_at.borrow_mut().insert(partition, log.size_bytes());
        tracing::info!(partition, keys = entries.len(), "compacted __consumer_offsets partition");
        Ok(true)
    }
}

/// A static member (known instance id) joined with no member id: a new
/// incarnation. It takes the old member's place under a new id, fencing
/// the old one. In a Stable group whose protocol stays the same, Kafka
/// keeps the generation and the assignment: the caller stores the record
/// with the new id ([`StaticRejoin`]) and then answers. Otherwise the
/// caller goes on to a rebalance (`None`); in CompletingRebalance too,
/// since the leader may be assigning to the old id.
fn replace_static_member(g: &mut Group, old: &str, new: &str, a: &JoinArgs) -> Option<StaticRejoin> {
    let leader_before = g.leader.clone();
    let mut m = g.members.remove(old).expect("a member of the group");
    if let Some(w) = m.join_waiter.take() {
        let _ = w.send(JoinOutcome::error(ResponseError::FencedInstanceId, old));
    }
    if let Some(w) = m.sync_waiter.take() {
        let _ = w.send(SyncOutcome::error(ResponseError::FencedInstanceId));
    }
    let rejoin = StaticRejoin {
        old_id: old.to_string(),
        new_id: new.to_string(),
        generation: g.generation,
        leader_before,
        protocols_before: std::mem::replace(&mut m.protocols, a.protocols.clone()),
        session_before: m.session_timeout,
        rebalance_before: m.rebalance_timeout,
    };
    m.id = new.to_string();
    m.session_timeout = Duration::from_millis(a.session_timeout_ms as u64);
    m.rebalance_timeout = Duration::from_millis(a.rebalance_timeout_ms.max(a.session_timeout_ms) as u64);
    m.last_seen = Instant::now();
    g.members.insert(new.to_string(), m);
    if g.leader.as_deref() == Some(old) {
        g.leader = Some(new.to_string());
    }
    if g.pending_sync.remove(old) {
        g.pending_sync.insert(new.to_string());
    }
    tracing::info!(group = %g.id, old, new, state = g.state.name(), "static member rejoined under a new id");
    if g.state == GroupState::Stable && g.select_protocol() == g.protocol {
        g.completed();
        return Some(rejoin);
    }
    None
}

/// The answer to a static member whose new id was written, or not.
fn static_rejoin_answer(
    g: &mut Group,
    a: &JoinArgs,
    r: StaticRejoin,
    stored: Result<(), ResponseError>,
) -> JoinOutcome {
    if let Err(e) = stored {
        tracing::warn!(group = %a.group, error = ?e, "static member's new id not stored; keeping the old one");
        // Unless the group moved on meanwhile (a rebalance started): then
        // the next rebalance's record supersedes both ids.
        let untouched = g.generation == r.generation && g.state == GroupState::Stable;
        if let Some(mut m) = untouched.then(|| g.members.remove(&r.new_id)).flatten() {
            m.id = r.old_id.clone();
            m.protocols = r.protocols_before;
            m.session_timeout = r.session_before;
            m.rebalance_timeout = r.rebalance_before;
            g.members.insert(r.old_id.clone(), m);
            if g.leader.as_deref() == Some(r.new_id.as_str()) {
                g.leader = Some(r.old_id.clone());
            }
            if g.pending_sync.remove(&r.new_id) {
                g.pending_sync.insert(r.old_id.clone());
            }
            // Memory and the record it falls back to agree again.
            g.completed();
        }
        return JoinOutcome { member_id: String::new(), ..g.current_join("", r.leader_before, false) }.with_error(e);
    }
    if a.supports_skip_assignment {
        let leader = g.leader.as_deref() == Some(r.new_id.as_str());
        JoinOutcome { skip_assignment: leader, ..g.current_join(&r.new_id, g.leader.clone(), leader) }
    } else {
        g.current_join(&r.new_id, r.leader_before, false)
    }
}

fn prepare_rebalance(g: &mut Group, initial_delay: Option<Duration>) {
    let now = Instant::now();
    let timeout = g.rebalance_timeout();
    g.rebalance_deadline = Some(now + timeout);
    g.initial_delay_until = initial_delay.map(|d| now + d);
    g.pending_sync.clear();
    g.sync_deadline = None;
    for m in g.members.values_mut() {
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
        }
    }
    g.set_state(GroupState::PreparingRebalance);
}

/// Kafka's `acceptJoiningMember` (KIP-389, `group.max.size`): an Empty
/// group takes anyone. While it rebalances, a member that has rejoined
/// already stays, and others get in while fewer than the maximum have
/// rejoined: so a group over the maximum (the setting was lowered) keeps
/// the first members to rejoin. Otherwise members of the group stay and new
/// ones get in while it is below the maximum. One departure from Kafka: a
/// static member coming back under a new id counts as the member it
/// replaces, since it takes that member's place instead of growing the
/// group (Kafka counts it as new, and refuses it in a full group).
fn accepts_joining_member(g: &Group, a: &JoinArgs) -> bool {
    let known = g
        .members
        .get(&a.member_id)
        .or_else(|| a.instance_id.as_deref().and_then(|i| g.static_member(i)).and_then(|id| g.members.get(id)));
    match g.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            known.is_some_and(|m| m.join_waiter.is_some())
                || g.members.values().filter(|m| m.join_waiter.is_some()).count() < a.max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => known.is_some() || g.members.len() < a.max_size,
    }
}

/// A joining member refused by [`accepts_joining_member`] leaves the group
/// (Kafka removes it too): a pending id is forgotten, a member that has not
/// rejoined this rebalance is dropped from it.
fn refuse_over_max_size(g: &mut Group, a: &JoinArgs) {
    g.pending.remove(&a.member_id);
    if let Some(m) = g.members.remove(&a.member_id) {
        // Only a member that has not rejoined a rebalance is refused, and
        // `prepare_rebalance` answered its SyncGroup.
        debug_assert!(m.join_waiter.is_none() && m.sync_waiter.is_none(), "refused member {} has a waiter", m.id);
        tracing::info!(group = %g.id, member = %m.id, max_size = a.max_size, "member refused: group at its max size");
        member_left(g);
    }
}

/// After members left or expired: rebalance the rest, or become Empty.
fn member_left(g: &mut Group) {
    if g.leader.as_ref().is_some_and(|l| !g.members.contains_key(l)) {
        g.leader = None;
    }
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            if g.members.is_empty() {
                g.generation += 1;
                g.protocol = None;
                g.set_state(GroupState::Empty);
                g.completed();
            } else {
                prepare_rebalance(g, None);
            }
        }
        GroupState::PreparingRebalance => try_complete_join(g, false),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Completes the join phase when every member has rejoined (and the initial
/// delay passed), or at the deadline (`force`). Then dynamic members that
/// did not rejoin are dropped; static ones stay, with their share of the
/// assignment, until their session expires or they miss the SyncGroup
/// deadline (Kafka's rule: a static member restarting is not rebalanced
/// away). The leader is a member that joined.
fn try_complete_join(g: &mut Group, force: bool) {
    if g.state != GroupState::PreparingRebalance {
        return;
    }
    let now = Instant::now();
    let all_joined = g.members.values().all(|m| m.join_waiter.is_some());
    let delay_over = g.initial_delay_until.is_none_or(|d| now >= d);
    if !force && !(all_joined && delay_over) {
        return;
    }
    g.members.retain(|_, m| m.join_waiter.is_some() || m.instance_id.is_some());
    let joined = |g: &Group, id: &String| g.members.get(id).is_some_and(|m| m.join_waiter.is_some());
    if g.leader.as_ref().is_none_or(|l| !joined(g, l)) {
        g.leader =
            g.members.values().filter(|m| m.join_waiter.is_some()).min_by_key(|m| m.joined_seq).map(|m| m.id.clone());
    }
    if g.leader.is_none() && !g.members.is_empty() {
        // Only static members that have not rejoined: wait another round
        // for one to come back, or for their sessions to expire.
        g.rebalance_deadline = Some(now + g.rebalance_timeout());
        return;
    }
    g.generation += 1;
    if g.members.is_empty() {
        g.protocol = None;
        g.set_state(GroupState::Empty);
        g.completed();
        return;
    }
    g.protocol = g.select_protocol();
    g.set_state(GroupState::CompletingRebalance);
    g.pending_sync = g.members.keys().cloned().collect();
    g.sync_deadline = Some(now + g.rebalance_timeout());
    let leader = g.leader.clone().unwrap_or_default();
    let all = g.member_metadata();
    let answer = g.current_join("", g.leader.clone(), false);
    for m in g.members.values_mut() {
        m.last_seen = now;
        if let Some(w) = m.join_waiter.take() {
            let members = if m.id == leader { all.clone() } else { Vec::new() };
            let _ = w.send(JoinOutcome { member_id: m.id.clone(), members, ..answer.clone() });
        }
    }
}

async fn append_records(
    log: &crate::shard::PartitionLog,
    entries: Vec<(Key, Option<Bytes>)>,
    leader_epoch: i32,
) -> Result<spindle_engine::AppendInfo, spindle_engine::AppendError> {
    let keys: Vec<Bytes> = entries.iter().map(|(k, _)| k.encode()).collect();
    let recs: Vec<NewRecord<'_>> =
        keys.iter().zip(&entries).map(|(k, (_, v))| NewRecord { key: Some(&k[..]), value: v.as_deref() }).collect();
    let batch = encode_batch(&recs, now_ms());
    log.append(batch, AppendOptions { leader_epoch, now_ms: now_ms(), durability: Durability::Durable }).await
}

/// Appends records for `group` to its `__consumer_offsets` partition, on
/// this core (the group's core), durably.
///
/// The caller applies the records to the coordinator's memory right after
/// this returns, before its next `.await`: snapshot compaction waits for
/// in-flight appends and then trusts memory.
pub async fn write_records(
    shard: &Rc<Shard>,
    group: &str,
    entries: Vec<(Key, Option<Bytes>)>,
) -> Result<(), ResponseError> {
    let r = write_records_with(shard, group, move || entries).await;
    r.map_err(|e| coordinator_error(e, ResponseError::InvalidCommitOffsetSize))
}

/// Kafka's translation of a failed `__consumer_offsets` write into the
/// codes group clients handle (its `GroupMetadataManager`): a write the
/// replicas did not take means "find the coordinator again" (retriable),
/// one this broker could not do means "not the coordinator", and a record
/// too large is `too_large`. Java's consumer treats anything else from
/// JoinGroup or SyncGroup as fatal.
pub(crate) fn coordinator_error(e: ResponseError, too_large: ResponseError) -> ResponseError {
    use ResponseError::*;
    match e {
        UnknownTopicOrPartition | NotEnoughReplicas | NotEnoughReplicasAfterAppend | RequestTimedOut => {
            CoordinatorNotAvailable
        }
        NotLeaderOrFollower | KafkaStorageError => NotCoordinator,
        MessageTooLarge | RecordListTooLarge | InvalidFetchSize => too_large,
        e => e,
    }
}

/// Writes the group's metadata record while one is due, with the value it
/// has at the append: the value is read with no wait before its append
/// joins the log's line, so the log's last record is the newest. One such
/// store per group runs at a time; a call while one runs leaves the due
/// record to it. A failed write leaves the record due for the group timer.
pub async fn store_group(shard: &Rc<Shard>, group: &str) {
    if !shard.groups.storing.borrow_mut().insert(group.to_string()) {
        return;
    }
    let _done = OnDrop(|| {
        shard.groups.storing.borrow_mut().remove(group);
    });
    while shard.groups.store_is_due(group) {
        if let Err(e) = store_at_least(shard, group, None).await {
            tracing::warn!(group, error = ?e, "could not store group metadata; the group timer retries");
            return;
        }
    }
}

/// Writes the group's record if it is at least `generation` (`None`: if
/// due), as it is at the append. SyncGroup's leader calls it for the
/// generation it completes: it returns once that record (or a newer one)
/// was written by this call.
async fn store_at_least(shard: &Rc<Shard>, group: &str, generation: Option<i32>) -> Result<(), ResponseError> {
    let take = || match shard.groups.take_store(group, generation) {
        Some(v) => vec![(Key::Group { group: group.to_string() }, Some(v.encode()))],
        None => Vec::new(),
    };
    let r = write_records_with(shard, group, take).await;
    if r.is_err() {
        shard.groups.store_failed(group);
    }
    r.map_err(|e| coordinator_error(e, ResponseError::UnknownServerError))
}

/// SyncGroup: the leader's sync, storing the generation it completes.
pub async fn sync_and_store(
    shard: &Rc<Shard>,
    group: &str,
    generation: i32,
    member: (&str, Option<&str>),
    assignments: Vec<(String, Bytes)>,
) -> SyncOutcome {
    let store = || store_at_least(shard, group, Some(generation));
    shard.groups.sync(group, generation, member, assignments, store).await
}

/// JoinGroup, storing the group's record when a static member rejoins a
/// Stable group under a new id.
pub async fn join_and_store(shard: &Rc<Shard>, initial_delay: Duration, args: JoinArgs) -> JoinOutcome {
    let group = args.group.clone();
    let store = |generation| async move { store_at_least(shard, &group, Some(generation)).await };
    shard.groups.join(initial_delay, args, store).await
}

/// How long the group timer waits before retrying a failed store.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs a closure when dropped: on completion and cancellation alike.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// [`write_records`] with the entries made after every wait but the
/// append's own; nothing is written if there are none.
pub async fn write_records_with(
    shard: &Rc<Shard>,
    group: &str,
    entries: impl FnOnce() -> Vec<(Key, Option<Bytes>)>,
) -> Result<(), ResponseError> {
    let p = schema::partition_for_group(group, OFFSETS_TOPIC_PARTITIONS);
    let log = shard.partition(OFFSETS_TOPIC, p).await.map_err(|e| crate::errors::partition_error(&e))?;
    let gate = shard.groups.write_gate(p);
    let _shared = gate.shared().await;
    // Cluster mode: the coordinator is the partition's leader, and a commit
    // is acknowledged as acks=all is: once the ISR has it.
    let replica = if shard.config.is_cluster() {
        let rep = shard.replica(OFFSETS_TOPIC, p).ok_or(ResponseError::NotCoordinator)?;
        let epoch = rep.leading_epoch().ok_or(ResponseError::NotCoordinator)?;
        Some((rep, epoch))
    } else {
        None
    };
    let entries = entries();
    if entries.is_empty() {
        return Ok(());
    }
    let Some((rep, epoch)) = replica else {
        return append_records(&log, entries, crate::ops::LEADER_EPOCH)
            .await
            .map(|_| ())
            .map_err(|e| crate::errors::append_error(&e));
    };
    let info = append_records(&log, entries, epoch).await.map_err(|e| match e {
        spindle_engine::AppendError::StaleEpoch { .. } => ResponseError::NotCoordinator,
        e => crate::errors::append_error(&e),
    })?;
    if let Some(view) = shard.snapshot().cluster.clone() {
        rep.advance_local_end(&view, shard.config.acks_all_fsync);
    }
    rep.wait_acked(info.last_offset + 1, COMMIT_REPLICATION_TIMEOUT).await.map_err(|e| match e {
        ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
        e => e,
    })
}

/// How long an offset commit waits for the ISR (Kafka's
/// `offsets.commit.timeout.ms` default).
const COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The core that coordinates `group`, or an error if `__consumer_offsets`
/// is missing.
pub fn coordinator_core(shard: &Shard, group: &str) -> Result<usize, ResponseError> {
    let p = schema::partition_for_group(group, OFFSETS_TOPIC_PARTITIONS);
    crate::ops::owner(shard, OFFSETS_TOPIC, p).map_err(|_| ResponseError::CoordinatorNotAvailable)
}

/// Runs `f` with the group's coordinator on its core, after its partition
/// was replayed.
///
/// `unavailable` answers when this broker cannot serve the group:
/// NOT_COORDINATOR when another broker leads the group's partition (cluster
/// mode; the client finds the coordinator again), else
/// COORDINATOR_LOAD_IN_PROGRESS while the partition is being replayed.
pub async fn on_coordinator<T, U, F, Fut>(shard: &Rc<Shard>, group: &str, unavailable: U, f: F) -> T
where
    T: Send + 'static,
    U: FnOnce(ResponseError) -> T + Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let core = match coordinator_core(shard, group) {
        Ok(c) => c,
        Err(_) => return unavailable(ResponseError::CoordinatorLoadInProgress),
    };
    let p = schema::partition_for_group(group, OFFSETS_TOPIC_PARTITIONS);
    shard
        .invoke_on(core, move |s| async move {
            if s.config.is_cluster() && s.replica(OFFSETS_TOPIC, p).and_then(|r| r.leading_epoch()).is_none() {
                return unavailable(ResponseError::NotCoordinator);
            }
            if !s.groups.is_loaded(p) {
                return unavailable(ResponseError::CoordinatorLoadInProgress);
            }
            f(s).await
        })
        .await
}

/// Partitions in a consumer-protocol assignment (the bytes a leader's
/// assignor produced); empty if they do not decode as one.
pub fn assigned_partitions(assignment: &Bytes) -> Vec<(String, i32)> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    if assignment.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([assignment[0], assignment[1]]).clamp(0, 3);
    let mut body = assignment.slice(2..);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ConsumerProtocolAssignment::decode(&mut body, version)
    }));
    match r {
        Ok(Ok(a)) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.0.to_string(), *p)))
            .collect(),
        _ => Vec::new(),
    }
}

/// One partition's lag as the admin API and `spindle groups describe` show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// -1: never committed.
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
    pub status: lag::LagStatus,
    pub member_id: Option<String>,
    pub client_id: Option<String>,
    pub host: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupLag {
    pub group: String,
    pub state: String,
    pub members: usize,
    pub status: lag::LagStatus,
    /// Largest partition lag: Kafka's `records-lag-max` figure.
    pub max_lag: i64,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

/// Computes a group's lag: committed offsets and commit windows from the
/// group's core, log ends from each partition's owner.
pub async fn lag_report(shard: &Rc<Shard>, group: &str) -> Option<GroupLag> {
    let g = group.to_string();
    let gathered = on_coordinator(
        shard,
        group,
        |_| None,
        move |s| async move {
            let info = s.groups.describe(&g)?;
            Some((info, s.groups.offsets(&g), s.groups.history(&g)))
        },
    )
    .await;
    let (info, offsets, history) = gathered?;
    let mut owner_of: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &info.members {
        for tp in assigned_partitions(&m.assignment) {
            owner_of.insert(tp, (m.member_id.clone(), m.client_id.clone(), m.client_host.clone()));
        }
    }
    let mut keys: BTreeSet<(String, i32)> = offsets.keys().cloned().collect();
    keys.extend(owner_of.keys().cloned());
    let has_members = !info.members.is_empty();
    let now = now_ms();
    let mut partitions = Vec::new();
    for (topic, p) in keys {
        let log_end = crate::ops::high_watermark(shard, &topic, p).await;
        let committed = offsets.get(&(topic.clone(), p)).map_or(-1, |v| v.offset);
        let lag = if log_end < 0 {
            0
        } else if committed < 0 {
            log_end
        } else {
            (log_end - committed).max(0)
        };
        let empty = VecDeque::new();
        let window = history.get(&(topic.clone(), p)).unwrap_or(&empty);
        let status = lag::evaluate(window, lag, has_members, now);
        let owner = owner_of.get(&(topic.clone(), p));
        partitions.push(PartitionLag {
            topic,
            partition: p,
            committed,
            log_end,
            lag,
            status,
            member_id: owner.map(|o| o.0.clone()),
            client_id: owner.map(|o| o.1.clone()),
            host: owner.map(|o| o.2.clone()),
        });
    }
    let status = if has_members {
        partitions.iter().map(|p| p.status).max().unwrap_or(lag::LagStatus::Ok)
    } else {
        lag::LagStatus::Stopped
    };
    Some(GroupLag {
        group: info.group,
        state: info.state.name().to_string(),
        members: info.members.len(),
        status,
        max_lag: partitions.iter().map(|p| p.lag).max().unwrap_or(0),
        total_lag: partitions.iter().map(|p| p.lag).sum(),
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    const RANGE: &str = "range";

    fn args(group: &str, member: &str, protocols: &[&str]) -> JoinArgs {
        JoinArgs {
            group: group.into(),
            member_id: member.into(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from_static(b"meta"))).collect(),
            require_known_member_id: true,
            supports_skip_assignment: false,
            max_size: usize::MAX,
        }
    }

    /// Dynamic members a (the leader, Stable at generation 1 first) and
    /// b, both given generation 2 and not yet synced. Returns their ids.
    fn dynamic_pair_joined(c: &Coordinator) -> (String, String) {
        let a = join_new(c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        let b = block_on(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        let (jb, ja) = block_on(async {
            futures::join!(
                c.join_ok(Duration::ZERO, args("g", &b, &[RANGE])),
                c.join_ok(Duration::ZERO, args("g", &a.member_id, &[RANGE]))
            )
        });
        assert_eq!((ja.generation, jb.generation, ja.leader.as_str()), (2, 2, a.member_id.as_str()));
        (a.member_id, b)
    }

    /// Joins a new dynamic member the v4+ way: learn the id, then join.
    fn join_new(c: &Coordinator, group: &str) -> JoinOutcome {
        let first = block_on(c.join_ok(Duration::ZERO, args(group, "", &[RANGE])));
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        assert!(!first.member_id.is_empty());
        block_on(c.join_ok(Duration::ZERO, args(group, &first.member_id, &[RANGE])))
    }

    impl Coordinator {
        /// JoinGroup whose store (a static member's new id) succeeds at once.
        async fn join_ok(&self, delay: Duration, a: JoinArgs) -> JoinOutcome {
            self.join(delay, a, |_| async { Ok(()) }).await
        }
        /// SyncGroup whose store succeeds at once.
        async fn sync_ok(&self, group: &str, generation: i32, member: &str, asg: Vec<(String, Bytes)>) -> SyncOutcome {
            self.sync(group, generation, (member, None), asg, || async { Ok(()) }).await
        }
        fn age_members(&self, group: &str, by: Duration) {
            for m in self.groups.borrow_mut().get_mut(group).unwrap().members.values_mut() {
                m.last_seen -= by;
            }
        }
        fn state(&self, group: &str) -> GroupState {
            self.groups.borrow()[group].state
        }
    }

    #[test]
    fn single_member_becomes_leader_of_generation_one_and_gets_its_assignment() {
        let c = Coordinator::default();
        let j = join_new(&c, "g");
        assert_eq!(j.error, 0);
        assert_eq!(j.generation, 1);
        assert_eq!(j.leader, j.member_id);
        assert_eq!(j.members.len(), 1);
        assert_eq!(j.protocol.as_deref(), Some(RANGE));
        let asg = Bytes::from_static(b"assignment");
        let s = block_on(c.sync_ok("g", 1, &j.member_id, vec![(j.member_id.clone(), asg.clone())]));
        assert_eq!((s.error, s.assignment), (0, asg));
        assert_eq!(c.take_store("g", None).unwrap().generation, 1);
        assert_eq!(c.state("g"), GroupState::Stable);
    }

    #[test]
    fn second_member_triggers_rebalance_and_follower_waits_for_leader_sync() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", a.generation, &a.member_id, vec![]));
        let b_id = block_on(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        assert_eq!(c.heartbeat("g", a.generation, &a.member_id, None), 0, "not rebalancing until b joins");
        let (ra, rb) = block_on(async {
            futures::join!(c.join_ok(Duration::ZERO, args("g", &b_id, &[RANGE])), async {
                // a learns of the rebalance through its heartbeat, then rejoins.
                assert_eq!(
                    c.heartbeat("g", a.generation, &a.member_id, None),
                    ResponseError::RebalanceInProgress.code()
                );
                c.join_ok(Duration::ZERO, args("g", &a.member_id, &[RANGE])).await
            })
        });
        let (rb, ra) = (ra, rb);
        assert_eq!((ra.error, rb.error), (0, 0));
        assert_eq!(ra.generation, 2);
        assert_eq!(rb.generation, 2);
        assert_eq!(ra.leader, a.member_id, "the old leader stays leader");
        assert_eq!(ra.members.len(), 2);
        assert!(rb.members.is_empty(), "only the leader sees the members");
        let asg_a = Bytes::from_static(b"A");
        let asg_b = Bytes::from_static(b"B");
        let (sb, sa) = block_on(async {
            futures::join!(
                c.sync_ok("g", 2, &b_id, vec![]),
                c.sync_ok(
                    "g",
                    2,
                    &a.member_id,
                    vec![(a.member_id.clone(), asg_a.clone()), (b_id.clone(), asg_b.clone())]
                )
            )
        });
        assert_eq!(sa.assignment, asg_a);
        assert_eq!(sb.assignment, asg_b);
    }

    #[test]
    fn bad_member_generation_and_protocol_get_kafkas_errors_and_change_nothing() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        let unknown = block_on(c.join_ok(Duration::ZERO, args("g", "nobody", &[RANGE])));
        assert_eq!(unknown.error, ResponseError::UnknownMemberId.code());
        let mut other_type = args("g", "", &[RANGE]);
        other_type.protocol_type = "connect".into();
        assert_eq!(
            block_on(c.join_ok(Duration::ZERO, other_type)).error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        let no_common = block_on(c.join_ok(Duration::ZERO, args("g", "", &["roundrobin"])));
        assert_eq!(no_common.error, ResponseError::InconsistentGroupProtocol.code());
        assert_eq!(c.heartbeat("g", 7, &a.member_id, None), ResponseError::IllegalGeneration.code());
        assert_eq!(c.heartbeat("g", 1, "nobody", None), ResponseError::UnknownMemberId.code());
        assert_eq!(block_on(c.sync_ok("g", 9, &a.member_id, vec![])).error, ResponseError::IllegalGeneration.code());
        assert_eq!(c.check_commit("g", 1, "nobody", None), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.check_commit("g", 0, &a.member_id, None), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.check_commit("g", -1, "", None), Err(ResponseError::UnknownMemberId), "group has members");
        assert_eq!(c.check_commit("g", 1, &a.member_id, None), Ok(()));
        assert_eq!(c.state("g"), GroupState::Stable, "errors left the group as it was");
        let mut bad_timeout = args("g", "", &[RANGE]);
        bad_timeout.session_timeout_ms = 10;
        assert_eq!(block_on(c.join_ok(Duration::ZERO, bad_timeout)).error, ResponseError::InvalidSessionTimeout.code());
    }

    #[test]
    fn member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        c.sweep();
        assert_eq!(c.state("g"), GroupState::Stable);
        c.age_members("g", Duration::from_secs(11));
        c.sweep();
        assert_eq!(c.state("g"), GroupState::Empty);
        assert_eq!(c.heartbeat("g", 1, &a.member_id, None), ResponseError::UnknownMemberId.code());
        assert_eq!(c.check_commit("g", -1, "", None), Ok(()), "an empty group accepts commits from outside");
        assert_eq!(
            c.check_commit("g", -1, "", Some("i-a")),
            Err(ResponseError::UnknownMemberId),
            "but not from a static member it does not know"
        );
    }

    #[test]
    fn leave_group_empties_the_group_and_bumps_the_generation() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        let (top, codes) = c.leave("g", &[(a.member_id.clone(), None), ("ghost".into(), None)]);
        assert_eq!(top, 0);
        assert_eq!(codes, vec![0, ResponseError::UnknownMemberId.code()]);
        assert_eq!(c.state("g"), GroupState::Empty);
        let again = join_new(&c, "g");
        assert_eq!(again.generation, 3, "generations never repeat");
    }

    /// The answer of a call that must not wait (for a rebalance): a
    /// test fails rather than hangs.
    fn at_once<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::FutureExt::now_or_never(f).expect("answered at once")
    }

    fn static_args(member: &str, instance: &str) -> JoinArgs {
        JoinArgs { instance_id: Some(instance.into()), ..args("g", member, &[RANGE]) }
    }

    /// Static members a (instance "i-a", the leader) and b ("i-b"), Stable
    /// at generation 2 with assignments "A" and "B". Returns their ids.
    fn stable_static_pair(c: &Coordinator) -> (String, String) {
        let a = block_on(c.join_ok(Duration::ZERO, static_args("", "i-a")));
        assert_eq!(a.error, 0, "static members need no MEMBER_ID_REQUIRED round");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        let (jb, ja) = block_on(async {
            futures::join!(
                c.join_ok(Duration::ZERO, static_args("", "i-b")),
                c.join_ok(Duration::ZERO, static_args(&a.member_id, "i-a"))
            )
        });
        assert_eq!((ja.generation, jb.generation, ja.leader.as_str()), (2, 2, a.member_id.as_str()));
        let asg =
            vec![(ja.member_id.clone(), Bytes::from_static(b"A")), (jb.member_id.clone(), Bytes::from_static(b"B"))];
        let (sa, sb) = block_on(async {
            futures::join!(c.sync_ok("g", 2, &ja.member_id, asg), c.sync_ok("g", 2, &jb.member_id, vec![]))
        });
        assert_eq!((sa.error, sb.error), (0, 0));
        (ja.member_id, jb.member_id)
    }

    fn capped(a: JoinArgs, max_size: usize) -> JoinArgs {
        JoinArgs { max_size, ..a }
    }

    /// Dynamic members a (the leader) and b, Stable at generation 2.
    fn stable_dynamic_pair(c: &Coordinator) -> (String, String) {
        let (a, b) = dynamic_pair_joined(c);
        let asg = vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
        let (sa, sb) = block_on(async { futures::join!(c.sync_ok("g", 2, &a, asg), c.sync_ok("g", 2, &b, vec![])) });
        assert_eq!((sa.error, sb.error), (0, 0));
        (a, b)
    }

    #[test]
    fn group_max_size_refuses_a_new_member_and_leaves_the_group_as_it_was() {
        let c = Coordinator::default();
        let (_a, b) = stable_dynamic_pair(&c);
        let refused = block_on(c.join_ok(Duration::ZERO, capped(args("g", "", &[RANGE]), 2)));
        assert_eq!((refused.error, refused.member_id.as_str()), (ResponseError::GroupMaxSizeReached.code(), ""));
        let info = c.describe("g").unwrap();
        assert_eq!((info.state, info.generation, info.members.len()), (GroupState::Stable, 2, 2), "no rebalance");
        // A member of the group is not new: b's rejoin gets the current generation.
        let again = block_on(c.join_ok(Duration::ZERO, capped(args("g", &b, &[RANGE]), 2)));
        assert_eq!((again.error, again.generation), (0, 2));
        // Below the maximum a new member gets in (its id first, v4+).
        let third = block_on(c.join_ok(Duration::ZERO, capped(args("g", "", &[RANGE]), 3)));
        assert_eq!(third.error, ResponseError::MemberIdRequired.code());
    }

    #[test]
    fn a_rebalance_over_group_max_size_keeps_the_first_members_to_rejoin() {
        let c = Coordinator::default();
        let (a, b) = stable_dynamic_pair(&c);
        // The maximum is now one. The leader's rejoin starts a rebalance; b, a member that has not
        // rejoined it, comes second and is refused and dropped, so the join completes with a alone.
        let (ja, jb) = block_on(async {
            futures::join!(
                c.join_ok(Duration::ZERO, capped(args("g", &a, &[RANGE]), 1)),
                c.join_ok(Duration::ZERO, capped(args("g", &b, &[RANGE]), 1))
            )
        });
        assert_eq!((jb.error, jb.member_id.as_str()), (ResponseError::GroupMaxSizeReached.code(), ""));
        assert_eq!((ja.error, ja.generation, ja.members.len()), (0, 3, 1));
        assert_eq!(c.heartbeat("g", 3, &b, None), ResponseError::UnknownMemberId.code(), "b left the group");
    }

    #[test]
    fn while_rebalancing_a_new_member_counts_against_the_members_rejoined_so_far() {
        let c = Coordinator::default();
        let (a, b) = stable_dynamic_pair(&c);
        let (ja, new1, new3, jb) = block_on(async {
            futures::join!(
                // The leader's rejoin starts a rebalance: one member rejoined so far.
                c.join_ok(Duration::ZERO, capped(args("g", &a, &[RANGE]), 2)),
                c.join_ok(Duration::ZERO, capped(args("g", "", &[RANGE]), 1)),
                c.join_ok(Duration::ZERO, capped(args("g", "", &[RANGE]), 3)),
                c.join_ok(Duration::ZERO, capped(args("g", &b, &[RANGE]), 2))
            )
        });
        assert_eq!(new1.error, ResponseError::GroupMaxSizeReached.code(), "one rejoined, maximum one");
        assert_eq!(new3.error, ResponseError::MemberIdRequired.code(), "one rejoined, maximum three");
        assert_eq!((ja.error, jb.error, ja.generation, jb.generation), (0, 0, 3, 3));
    }

    #[test]
    fn a_group_loaded_over_group_max_size_rebalances_down_to_it() {
        let c = Coordinator::default();
        let (a, b) = stable_dynamic_pair(&c);
        let p = schema::partition_for_group("g", OFFSETS_TOPIC_PARTITIONS);
        c.rebalance_over_capacity(p + 1, 1);
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable, "another partition's load leaves it");
        c.rebalance_over_capacity(p, 2);
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable, "at the maximum, not over it");
        c.rebalance_over_capacity(p, 1);
        assert_eq!(c.describe("g").unwrap().state, GroupState::PreparingRebalance);
        assert_eq!(c.heartbeat("g", 2, &b, None), ResponseError::RebalanceInProgress.code());
        let (jb, ja) = block_on(async {
            futures::join!(
                c.join_ok(Duration::ZERO, capped(args("g", &b, &[RANGE]), 1)),
                c.join_ok(Duration::ZERO, capped(args("g", &a, &[RANGE]), 1))
            )
        });
        assert_eq!((jb.error, jb.generation, jb.leader.as_str()), (0, 3, b.as_str()), "b rejoined first");
        assert_eq!(ja.error, ResponseError::GroupMaxSizeReached.code());
        assert_eq!(c.describe("g").unwrap().members.len(), 1);
    }

    #[test]
    fn a_static_member_coming_back_takes_its_own_place_in_a_full_group() {
        let c = Coordinator::default();
        let (_a, _b) = stable_static_pair(&c);
        let back = block_on(c.join_ok(Duration::ZERO, capped(static_args("", "i-b"), 2)));
        assert_eq!((back.error, back.generation), (0, 2));
        let other = block_on(c.join_ok(Duration::ZERO, capped(static_args("", "i-c"), 2)));
        assert_eq!(other.error, ResponseError::GroupMaxSizeReached.code());
        assert_eq!(c.describe("g").unwrap().members.len(), 2);
    }

    #[test]
    fn a_static_member_restarting_keeps_the_generation_and_its_assignment_and_fences_the_old_id() {
        let c = Coordinator::default();
        let (a, b) = stable_static_pair(&c);
        // b restarts: a new incarnation joins with no member id.
        let nb = at_once(c.join_ok(Duration::ZERO, static_args("", "i-b")));
        assert_eq!((nb.error, nb.generation, nb.leader.as_str()), (0, 2, a.as_str()), "no rebalance");
        assert_ne!(nb.member_id, b);
        assert!(nb.members.is_empty() && !nb.skip_assignment);
        assert_eq!(c.state("g"), GroupState::Stable);
        assert_eq!(c.heartbeat("g", 2, &a, Some("i-a")), 0, "the other member is not told to rejoin");
        let s = at_once(c.sync_ok("g", 2, &nb.member_id, vec![]));
        assert_eq!((s.error, &s.assignment[..]), (0, &b"B"[..]), "the new id gets the old one's assignment");
        // The old incarnation is fenced wherever it names its instance.
        let fenced = ResponseError::FencedInstanceId;
        assert_eq!(c.heartbeat("g", 2, &b, Some("i-b")), fenced.code());
        assert_eq!(c.heartbeat("g", 2, &b, None), ResponseError::UnknownMemberId.code());
        let sync = |m: &str, i| at_once(c.sync("g", 2, (m, i), vec![], || async { Ok(()) })).error;
        assert_eq!(sync(&b, Some("i-b")), fenced.code());
        assert_eq!(sync(&nb.member_id, Some("i-a")), fenced.code(), "an instance id that is not the member's");
        assert_eq!(c.check_commit("g", 2, &b, Some("i-b")), Err(fenced));
        assert_eq!(c.check_commit("g", 2, &nb.member_id, Some("i-b")), Ok(()));
        let old_join = at_once(c.join_ok(Duration::ZERO, static_args(&b, "i-b")));
        assert_eq!(old_join.error, fenced.code());
        assert_eq!(c.leave("g", &[(b.clone(), Some("i-b".into()))]).1, vec![fenced.code()]);
        let unknown = ResponseError::UnknownMemberId.code();
        assert_eq!(
            c.leave("g", &[(a.clone(), Some("i-z".into())), ("".into(), Some("i-z".into()))]).1,
            vec![unknown, unknown]
        );
        let pending = at_once(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        assert_eq!(c.leave("g", &[(pending.clone(), None)]).1, vec![0], "a pending member may leave");
        assert_eq!(at_once(c.join_ok(Duration::ZERO, args("g", &pending, &[RANGE]))).error, unknown);
        assert_eq!(c.state("g"), GroupState::Stable, "none of that disturbed the group");
        // The stored record has the new id: a restarted coordinator knows it.
        let r = replayed(&c, "g");
        assert_eq!(r.heartbeat("g", 2, &nb.member_id, Some("i-b")), 0);
        assert_eq!(r.heartbeat("g", 2, &b, Some("i-b")), fenced.code());
    }

    #[test]
    fn a_restarting_static_leader_is_not_told_to_assign_below_v9_and_told_to_skip_at_v9() {
        let c = Coordinator::default();
        let (a, _) = stable_static_pair(&c);
        let na = at_once(c.join_ok(Duration::ZERO, static_args("", "i-a")));
        assert_eq!((na.error, na.generation), (0, 2));
        assert_eq!(na.leader, a, "the old leader id: the new incarnation takes itself for a follower");
        assert!(na.members.is_empty());
        let v9 = JoinArgs { supports_skip_assignment: true, ..static_args("", "i-a") };
        let na9 = at_once(c.join_ok(Duration::ZERO, v9));
        assert_eq!((na9.error, na9.generation), (0, 2));
        assert_eq!(na9.leader, na9.member_id, "the leader, told to skip its assignor");
        assert!(na9.skip_assignment);
        assert_eq!(na9.members.len(), 2);
        assert_eq!(c.state("g"), GroupState::Stable);
        assert_eq!(at_once(c.sync_ok("g", 2, &na9.member_id, vec![])).assignment, Bytes::from_static(b"A"));
    }

    #[test]
    fn a_static_member_s_new_id_that_could_not_be_stored_is_undone() {
        let c = Coordinator::default();
        let (a, b) = stable_static_pair(&c);
        let failed =
            at_once(c.join(Duration::ZERO, static_args("", "i-b"), |_| async { Err(ResponseError::NotCoordinator) }));
        assert_eq!((failed.error, failed.member_id.as_str()), (ResponseError::NotCoordinator.code(), ""));
        assert_eq!(c.heartbeat("g", 2, &b, Some("i-b")), 0, "the old id stands");
        assert_eq!(c.heartbeat("g", 2, &a, Some("i-a")), 0);
        assert_eq!(c.state("g"), GroupState::Stable);
        assert_eq!(replayed(&c, "g").heartbeat("g", 2, &b, Some("i-b")), 0, "and is what the record holds");
    }

    #[test]
    fn a_static_member_changing_the_protocol_or_joining_mid_rebalance_rebalances() {
        let c = Coordinator::default();
        let with = |protocols: &[&str]| JoinArgs {
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::new())).collect(),
            ..static_args("", "i-a")
        };
        let a = at_once(c.join_ok(Duration::ZERO, with(&[RANGE, "roundrobin"])));
        at_once(c.sync_ok("g", 1, &a.member_id, vec![]));
        let b = at_once(c.join_ok(Duration::ZERO, with(&["roundrobin", RANGE])));
        assert_eq!((b.generation, b.protocol.as_deref()), (2, Some("roundrobin")), "the group's protocol changes");
        assert_eq!(c.state("g"), GroupState::CompletingRebalance);
        // Restarting before the leader's SyncGroup: the leader may be
        // assigning to the id just replaced, so Kafka rebalances again.
        let c2 = at_once(c.join_ok(Duration::ZERO, with(&["roundrobin", RANGE])));
        assert_eq!((c2.error, c2.generation), (0, 3));
        assert_eq!(at_once(c.sync_ok("g", 2, &b.member_id, vec![])).error, ResponseError::UnknownMemberId.code());
    }

    /// Ends the join phase now, as the group timer does at its deadline.
    fn force_join_deadline(c: &Coordinator) {
        c.groups.borrow_mut().get_mut("g").unwrap().rebalance_deadline = Some(Instant::now());
        c.sweep();
    }

    #[test]
    fn at_the_deadline_static_members_that_did_not_rejoin_stay_and_dynamic_ones_go() {
        let c = Coordinator::default();
        // a: static, the leader; d: dynamic. Both Stable at generation 2.
        let a = at_once(c.join_ok(Duration::ZERO, static_args("", "i-a")));
        at_once(c.sync_ok("g", 1, &a.member_id, vec![]));
        let d = at_once(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        let (jd, ja) = block_on(async {
            futures::join!(
                c.join_ok(Duration::ZERO, args("g", &d, &[RANGE])),
                c.join_ok(Duration::ZERO, static_args(&a.member_id, "i-a"))
            )
        });
        assert_eq!((jd.generation, ja.generation), (2, 2));
        block_on(async { futures::join!(c.sync_ok("g", 2, &d, vec![]), c.sync_ok("g", 2, &a.member_id, vec![])) });
        // A new member e starts a rebalance; neither a nor d rejoins.
        let e = at_once(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        let je = block_on(async {
            let je = c.join_ok(Duration::ZERO, args("g", &e, &[RANGE]));
            futures::pin_mut!(je);
            assert!(futures::poll!(je.as_mut()).is_pending(), "waits for a and d");
            force_join_deadline(&c);
            je.await
        });
        assert_eq!((je.error, je.generation), (0, 3));
        assert_eq!(je.leader, e, "the old leader did not rejoin: a member that did leads");
        let listed: BTreeSet<String> = je.members.iter().map(|m| m.0.clone()).collect();
        assert_eq!(listed, [a.member_id.clone(), e.clone()].into(), "a stays for the leader to assign to; d is gone");
        assert_eq!(c.heartbeat("g", 3, &a.member_id, Some("i-a")), 0);
        assert_eq!(c.heartbeat("g", 3, &d, None), ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn a_join_phase_where_only_absent_static_members_are_left_waits_for_one_of_them() {
        let c = Coordinator::default();
        let (a, b) = stable_static_pair(&c);
        // A third static member starts a rebalance and leaves again.
        assert!(futures::FutureExt::now_or_never(c.join_ok(Duration::ZERO, static_args("", "i-c"))).is_none());
        let cid = c.groups.borrow()["g"].static_member("i-c").unwrap().to_string();
        assert_eq!(c.leave("g", &[(cid, Some("i-c".into()))]).1, vec![0]);
        force_join_deadline(&c);
        assert_eq!(c.state("g"), GroupState::PreparingRebalance, "no member to lead: another round");
        assert!(c.groups.borrow()["g"].rebalance_deadline.unwrap() > Instant::now());
        let ja = block_on(async {
            let ja = c.join_ok(Duration::ZERO, static_args(&a, "i-a"));
            futures::pin_mut!(ja);
            assert!(futures::poll!(ja.as_mut()).is_pending(), "b has not rejoined");
            force_join_deadline(&c);
            ja.await
        });
        assert_eq!((ja.error, ja.generation, ja.leader.as_str(), ja.members.len()), (0, 3, a.as_str(), 2));
        assert_eq!(c.heartbeat("g", 3, &b, Some("i-b")), 0, "b kept its place");
    }

    #[test]
    fn a_static_member_whose_new_id_is_being_stored_counts_as_joined_and_does_not_expire() {
        use futures::task::LocalSpawnExt;
        let c = Rc::new(Coordinator::default());
        let (a, b) = stable_static_pair(&c);
        let mut pool = futures::executor::LocalPool::new();
        let (release, stored) = oneshot::channel::<Result<(), ResponseError>>();
        let answer = Rc::new(RefCell::new(None));
        let (c2, out) = (c.clone(), answer.clone());
        pool.spawner()
            .spawn_local(async move {
                let store = |_| async move { stored.await.unwrap_or(Err(ResponseError::UnknownServerError)) };
                *out.borrow_mut() = Some(c2.join(Duration::ZERO, static_args("", "i-b"), store).await);
            })
            .unwrap();
        pool.run_until_stalled();
        assert!(answer.borrow().is_none(), "waits for the store");
        let nb = c.groups.borrow()["g"].static_member("i-b").unwrap().to_string();
        assert_ne!(nb, b);
        // Longer than its session: the store holds it in the group.
        for m in c.groups.borrow_mut().get_mut("g").unwrap().members.values_mut() {
            m.last_seen -= Duration::from_secs(20);
        }
        assert_eq!(c.heartbeat("g", 2, &a, Some("i-a")), 0);
        c.sweep();
        assert!(c.groups.borrow()["g"].members.contains_key(&nb), "not expired while its record is written");
        // The leader rejoins: a rebalance, which the storing member counts
        // in, so it completes at once and that is the member's answer.
        let ja = at_once(c.join_ok(Duration::ZERO, static_args(&a, "i-a")));
        assert_eq!((ja.error, ja.generation), (0, 3));
        release.send(Ok(())).unwrap();
        pool.run_until_stalled();
        let got = answer.borrow_mut().take().expect("answered");
        assert_eq!((got.error, got.generation, got.member_id), (0, 3, nb));
    }

    #[test]
    fn a_member_that_does_not_sync_within_the_rebalance_timeout_is_removed() {
        let c = Coordinator::default();
        let (a, b) = dynamic_pair_joined(&c);
        // The leader syncs; b keeps heartbeating but never syncs.
        assert_eq!(at_once(c.sync_ok("g", 2, &a, vec![])).error, 0);
        let out_of_time = |c: &Coordinator| {
            c.groups.borrow_mut().get_mut("g").unwrap().sync_deadline = Some(Instant::now());
            c.sweep();
        };
        assert_eq!(c.heartbeat("g", 2, &b, None), 0);
        out_of_time(&c);
        assert_eq!(c.heartbeat("g", 2, &b, None), ResponseError::UnknownMemberId.code());
        assert_eq!(c.state("g"), GroupState::PreparingRebalance, "a is told to rejoin");
        // A generation everyone synced is left alone.
        let ja = at_once(c.join_ok(Duration::ZERO, args("g", &a, &[RANGE])));
        assert_eq!(ja.generation, 3);
        at_once(c.sync_ok("g", 3, &a, vec![]));
        out_of_time(&c);
        assert_eq!((c.state("g"), c.heartbeat("g", 3, &a, None)), (GroupState::Stable, 0));
    }

    fn unload(c: &Coordinator) {
        let p = schema::partition_for_group("g", OFFSETS_TOPIC_PARTITIONS);
        c.loaded.borrow_mut().insert(p);
        c.unload_partition(p);
    }

    #[test]
    fn a_join_waiting_when_the_group_is_unloaded_is_told_not_coordinator() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        at_once(c.sync_ok("g", 1, &a.member_id, vec![]));
        let b = at_once(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        let jb = block_on(async {
            let jb = c.join_ok(Duration::ZERO, args("g", &b, &[RANGE]));
            futures::pin_mut!(jb);
            assert!(futures::poll!(jb.as_mut()).is_pending(), "b waits for a to rejoin");
            unload(&c);
            jb.await
        });
        assert_eq!(jb.error, ResponseError::NotCoordinator.code());
    }

    #[test]
    fn a_follower_joining_again_with_the_same_metadata_gets_the_current_generation() {
        let c = Coordinator::default();
        let (a, b) = stable_static_pair(&c);
        let again = at_once(c.join_ok(Duration::ZERO, static_args(&b, "i-b")));
        assert_eq!((again.error, again.generation, again.leader.as_str()), (0, 2, a.as_str()));
        assert_eq!(c.state("g"), GroupState::Stable, "Kafka does not rebalance for it");
        // The leader's join does start one (it may have seen new topics).
        assert!(futures::FutureExt::now_or_never(c.join_ok(Duration::ZERO, static_args(&a, "i-a"))).is_none());
        assert_eq!(c.state("g"), GroupState::PreparingRebalance);
    }

    #[test]
    fn replayed_records_restore_offsets_and_a_higher_generation() {
        let c = Coordinator::default();
        let key = Key::Offset { group: "g".into(), topic: "t".into(), partition: 1 };
        let val = OffsetValue { offset: 42, leader_epoch: 0, metadata: "m".into(), commit_timestamp: 1 };
        c.apply_record(key.clone(), Some(val.encode()));
        let gv = GroupValue { protocol_type: "consumer".into(), generation: 9, ..Default::default() };
        c.apply_record(Key::Group { group: "g".into() }, Some(gv.encode()));
        assert_eq!(c.offsets("g")[&("t".to_string(), 1)].offset, 42);
        let j = join_new(&c, "g");
        assert_eq!(j.generation, 10, "a restarted coordinator never reuses a generation");
        c.apply_record(key, None);
        assert!(c.offsets("g").is_empty(), "a tombstone deletes the commit");
    }

    /// The record a group stores, replayed into a new coordinator (a
    /// restart, or another broker taking the group's partition over).
    fn replayed(c: &Coordinator, group: &str) -> Coordinator {
        let value = c.groups.borrow()[group].durable_value();
        let fresh = Coordinator::default();
        fresh.apply_record(Key::Group { group: group.into() }, Some(value.encode()));
        fresh
    }

    #[test]
    fn a_replayed_group_keeps_its_members_generation_and_assignments() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        let b_id = block_on(c.join_ok(Duration::ZERO, args("g", "", &[RANGE, "roundrobin"]))).member_id;
        // b's join starts the rebalance; a rejoins to it.
        let (jb, ja) = block_on(async {
            futures::join!(
                c.join_ok(Duration::ZERO, args("g", &b_id, &[RANGE, "roundrobin"])),
                c.join_ok(Duration::ZERO, args("g", &a.member_id, &[RANGE]))
            )
        });
        assert_eq!((ja.generation, jb.generation), (2, 2));
        let (asg_a, asg_b) = (Bytes::from_static(b"A"), Bytes::from_static(b"B"));
        let both = vec![(a.member_id.clone(), asg_a.clone()), (b_id.clone(), asg_b.clone())];
        let (sb, sa) =
            block_on(async { futures::join!(c.sync_ok("g", 2, &b_id, vec![]), c.sync_ok("g", 2, &a.member_id, both)) });
        assert_eq!((sa.error, sb.error), (0, 0));
        assert_eq!(c.stores_due(None), vec!["g".to_string()], "the leader's sync completes the rebalance");

        let r = replayed(&c, "g");
        assert_eq!(r.state("g"), GroupState::Stable);
        let info = r.describe("g").unwrap();
        assert_eq!(info.generation, 2);
        assert_eq!(info.protocol, RANGE);
        let mut members: Vec<_> = info.members.iter().map(|m| (m.member_id.clone(), m.assignment.clone())).collect();
        members.sort();
        let mut want = vec![(a.member_id.clone(), asg_a.clone()), (b_id.clone(), asg_b.clone())];
        want.sort();
        assert_eq!(members, want);
        // The members go on where they were, without a rebalance.
        assert_eq!(r.heartbeat("g", 2, &a.member_id, None), 0);
        assert_eq!(r.heartbeat("g", 2, &b_id, None), 0);
        assert_eq!(r.check_commit("g", 2, &b_id, None), Ok(()));
        assert_eq!(r.heartbeat("g", 1, &a.member_id, None), ResponseError::IllegalGeneration.code());
        let s = block_on(r.sync_ok("g", 2, &b_id, vec![]));
        assert_eq!((s.error, s.assignment), (0, asg_b), "a repeated sync gets the stored assignment");
        assert_eq!(r.state("g"), GroupState::Stable);
        assert!(r.stores_due(None).is_empty(), "a replay writes nothing back");
        // Each member's session starts at the replay: one that does not
        // come back expires as any other.
        r.age_members("g", Duration::from_secs(11));
        assert_eq!(r.heartbeat("g", 2, &a.member_id, None), 0);
        r.sweep();
        assert_eq!(r.describe("g").unwrap().members.len(), 1);
        assert_eq!(r.state("g"), GroupState::PreparingRebalance);
    }

    #[test]
    fn a_rebalance_in_progress_is_not_stored_and_an_emptied_group_is() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![(a.member_id.clone(), Bytes::from_static(b"A"))]));
        c.take_store("g", None);
        // A second member starts a rebalance: the stored record stays the
        // generation-1 group.
        let b_id = block_on(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        let rebalancing = futures::FutureExt::now_or_never(c.join_ok(Duration::ZERO, args("g", &b_id, &[RANGE])));
        assert!(rebalancing.is_none(), "b's join waits for a");
        assert_eq!(c.state("g"), GroupState::PreparingRebalance);
        assert!(c.stores_due(None).is_empty());
        let r = replayed(&c, "g");
        let info = r.describe("g").unwrap();
        assert_eq!((info.state, info.generation, info.members.len()), (GroupState::Stable, 1, 1));
        assert_eq!(r.heartbeat("g", 1, &b_id, None), ResponseError::UnknownMemberId.code(), "b must join again");

        // Every member leaves: the empty group, one generation on, is due.
        let (_, codes) = c.leave("g", &[(a.member_id.clone(), None), (b_id.clone(), None)]);
        assert_eq!(codes, vec![0, 0]);
        assert_eq!(c.state("g"), GroupState::Empty);
        assert_eq!(c.stores_due(None), vec!["g".to_string()]);
        let stored = c.take_store("g", None).unwrap();
        assert!(stored.members.is_empty());
        assert!(stored.generation > 1);
        let r = replayed(&c, "g");
        assert_eq!(r.state("g"), GroupState::Empty);
        assert_eq!(r.heartbeat("g", 1, &a.member_id, None), ResponseError::UnknownMemberId.code());
        assert_eq!(join_new(&r, "g").generation, stored.generation + 1);

        // So is one whose last member's session ran out.
        let c = Coordinator::default();
        let a = join_new(&c, "h");
        block_on(c.sync_ok("h", 1, &a.member_id, vec![]));
        c.take_store("h", None);
        c.age_members("h", Duration::from_secs(11));
        c.sweep();
        assert_eq!(c.stores_due(None), vec!["h".to_string()]);
        assert!(c.take_store("h", None).unwrap().members.is_empty());
    }

    #[test]
    fn a_deletion_whose_tombstones_failed_is_undone_unless_the_group_came_back() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        c.leave("g", &[(a.member_id.clone(), None)]);
        let before = c.groups.borrow()["g"].durable_value();
        let (_, deleted) = c.delete("g").unwrap();
        assert!(!c.group_exists("g"));
        c.undelete(deleted);
        assert!(c.group_exists("g"), "a retried DeleteGroups finds it");
        assert_eq!(c.groups.borrow()["g"].durable_value().generation, before.generation);
        let (_, deleted) = c.delete("g").expect("deletable again");
        // Re-created before the undo: the new group stands.
        let again = join_new(&c, "g");
        c.undelete(deleted);
        assert_eq!(c.describe("g").unwrap().members.len(), 1);
        assert_eq!(c.heartbeat("g", 1, &again.member_id, None), 0);
    }

    #[test]
    fn a_deleted_group_takes_no_record_and_one_created_again_replays_after_it() {
        let c = Coordinator::default();
        let a = join_new(&c, "g");
        block_on(c.sync_ok("g", 1, &a.member_id, vec![]));
        c.take_store("g", None);
        c.leave("g", &[(a.member_id.clone(), None)]);
        assert_eq!(c.stores_due(None), vec!["g".to_string()]);
        let stored_before_delete = c.groups.borrow()["g"].durable_value();
        assert!(stored_before_delete.generation >= 2);
        // The tombstones join the log's line with this call: a record
        // taken later would land after them and bring the group back.
        let (keys, _deleted) = c.delete("g").unwrap();
        assert!(keys.contains(&Key::Group { group: "g".into() }));
        assert!(c.stores_due(None).is_empty());
        assert!(c.take_store("g", None).is_none());
        assert!(c.take_store("g", Some(0)).is_none());
        assert!(!c.group_exists("g"));
        assert!(matches!(c.delete("g"), Err(ResponseError::GroupIdNotFound)), "a second delete finds nothing");

        // A group created again under that name starts at generation 1,
        // and a replay of the tombstone and its records restores it.
        let again = join_new(&c, "g");
        assert_eq!(again.generation, 1);
        block_on(c.sync_ok("g", 1, &again.member_id, vec![]));
        let r = Coordinator::default();
        r.apply_record(Key::Group { group: "g".into() }, Some(stored_before_delete.encode()));
        r.apply_record(Key::Group { group: "g".into() }, None);
        r.apply_record(Key::Group { group: "g".into() }, Some(c.take_store("g", None).unwrap().encode()));
        assert_eq!(r.state("g"), GroupState::Stable);
        assert_eq!(r.heartbeat("g", 1, &again.member_id, None), 0);
    }

    /// Two members' SyncGroups, run on a local pool; the leader's store
    /// waits for `release` and returns what it is sent.
    type SyncPair = (
        futures::executor::LocalPool,
        oneshot::Sender<Result<(), ResponseError>>,
        Rc<RefCell<Vec<SyncOutcome>>>,
        String,
    );

    fn sync_pair_with_store(c: &Rc<Coordinator>) -> SyncPair {
        use futures::task::LocalSpawnExt;
        let (a, b_id) = dynamic_pair_joined(c);
        let pool = futures::executor::LocalPool::new();
        let (release, stored) = oneshot::channel::<Result<(), ResponseError>>();
        let answers = Rc::new(RefCell::new(Vec::new()));
        let (c2, out) = (c.clone(), answers.clone());
        let follower = b_id.clone();
        pool.spawner()
            .spawn_local(async move {
                let answer = c2.sync_ok("g", 2, &follower, vec![]).await;
                out.borrow_mut().push(answer);
            })
            .unwrap();
        let (c2, out, leader) = (c.clone(), answers.clone(), a.clone());
        let asg = vec![(a.clone(), Bytes::from_static(b"A")), (b_id.clone(), Bytes::from_static(b"B"))];
        pool.spawner()
            .spawn_local(async move {
                let store = || async move { stored.await.unwrap_or(Err(ResponseError::UnknownServerError)) };
                let answer = c2.sync("g", 2, (&leader, None), asg, store).await;
                out.borrow_mut().push(answer);
            })
            .unwrap();
        (pool, release, answers, b_id)
    }

    #[test]
    fn no_member_gets_its_assignment_before_the_rebalance_is_stored() {
        let c = Rc::new(Coordinator::default());
        let (mut pool, release, answers, b_id) = sync_pair_with_store(&c);
        pool.run_until_stalled();
        assert!(answers.borrow().is_empty(), "answered before the store");
        assert_eq!(c.state("g"), GroupState::CompletingRebalance);
        assert_eq!(c.heartbeat("g", 2, &b_id, None), 0);
        release.send(Ok(())).unwrap();
        pool.run_until_stalled();
        let mut got: Vec<_> = answers.borrow().iter().map(|o| (o.error, o.assignment.clone())).collect();
        got.sort();
        assert_eq!(got, vec![(0, Bytes::from_static(b"A")), (0, Bytes::from_static(b"B"))]);
        assert_eq!(c.state("g"), GroupState::Stable);
    }

    #[test]
    fn a_rebalance_whose_store_failed_answers_the_error_and_rebalances() {
        let c = Rc::new(Coordinator::default());
        let (mut pool, release, answers, b_id) = sync_pair_with_store(&c);
        pool.run_until_stalled();
        release.send(Err(ResponseError::NotCoordinator)).unwrap();
        pool.run_until_stalled();
        let codes: Vec<_> = answers.borrow().iter().map(|o| (o.error, o.assignment.is_empty())).collect();
        assert_eq!(codes, vec![(ResponseError::NotCoordinator.code(), true); 2]);
        assert_eq!(c.state("g"), GroupState::PreparingRebalance);
        assert_eq!(c.heartbeat("g", 2, &b_id, None), ResponseError::RebalanceInProgress.code());
        // Generation 2 never went Stable: nothing may write it later (the
        // test's stores write nothing, so generation 1 is still due), and a
        // compaction snapshot keeps generation 1.
        assert_eq!(c.take_store("g", None).map(|v| v.generation), Some(1));
        assert_eq!(c.groups.borrow()["g"].durable_value().generation, 1);
    }

    #[test]
    fn a_sync_store_that_fails_after_the_group_moved_on_still_gives_its_generation_up() {
        let c = Rc::new(Coordinator::default());
        let (mut pool, release, _answers, _) = sync_pair_with_store(&c);
        pool.run_until_stalled();
        assert!(c.stores_due(None).is_empty(), "the timer leaves generation 2 to the leader's store");
        assert_eq!(c.take_store("g", None).map(|v| v.generation), None);
        // A third member starts a rebalance before the store ends.
        let d = at_once(c.join_ok(Duration::ZERO, args("g", "", &[RANGE]))).member_id;
        assert!(futures::FutureExt::now_or_never(c.join_ok(Duration::ZERO, args("g", &d, &[RANGE]))).is_none());
        assert_eq!(c.state("g"), GroupState::PreparingRebalance);
        release.send(Err(ResponseError::NotCoordinator)).unwrap();
        pool.run_until_stalled();
        assert_eq!(c.take_store("g", None).map(|v| v.generation), Some(1), "generation 2 is not written");
        assert_eq!(c.groups.borrow()["g"].durable_value().generation, 1);
    }

    #[test]
    fn syncs_waiting_when_the_group_is_unloaded_are_told_not_coordinator() {
        let c = Rc::new(Coordinator::default());
        let (mut pool, release, answers, _) = sync_pair_with_store(&c);
        pool.run_until_stalled();
        unload(&c);
        pool.run_until_stalled();
        let _ = release.send(Ok(()));
        pool.run_until_stalled();
        let codes: Vec<_> = answers.borrow().iter().map(|o| o.error).collect();
        assert_eq!(codes, vec![ResponseError::NotCoordinator.code(); 2], "the follower's, then the leader's");
    }

    /// Runs `f` on a test shard (a real log on disk) with the
    /// `__consumer_offsets` partition of group "g" loaded.
    fn with_group_log<F, Fut>(f: F)
    where
        F: FnOnce(Rc<Shard>, i32) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
        crate::shard::run_with_test_shard(cfg, |shard| async move {
            let p = schema::partition_for_group("g", OFFSETS_TOPIC_PARTITIONS);
            shard.groups.load_partition(&shard, p).await.unwrap();
            f(shard, p).await
        });
    }

    #[test]
    fn members_restored_from_the_log_after_a_stored_rebalance_and_empty_after_a_stored_fall() {
        with_group_log(|shard, p| async move {
            let c = &shard.groups;
            let first = c.join_ok(Duration::ZERO, args("g", "", &[RANGE])).await;
            let a = c.join_ok(Duration::ZERO, args("g", &first.member_id, &[RANGE])).await;
            let asg = vec![(a.member_id.clone(), Bytes::from_static(b"A"))];
            let s = sync_and_store(&shard, "g", a.generation, (&a.member_id, None), asg).await;
            assert_eq!(s.error, 0);
            assert!(c.stores_due(None).is_empty(), "SyncGroup stored its rebalance");
            let replay = |s: Rc<Shard>| async move {
                let r = Coordinator::default();
                r.load_partition(&s, p).await.unwrap();
                r.describe("g").map(|d| {
                    (d.state, d.generation, d.members.iter().map(|m| m.assignment.clone()).collect::<Vec<_>>())
                })
            };
            let restored = replay(shard.clone()).await;
            assert_eq!(restored, Some((GroupState::Stable, 1, vec![Bytes::from_static(b"A")])));

            // Its member leaves; the timer's store (group_maintenance)
            // writes the empty group.
            c.leave("g", &[(a.member_id.clone(), None)]);
            shard.group_maintenance(false).await;
            while !c.stores_due(None).is_empty() || c.stores_running() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(replay(shard.clone()).await, Some((GroupState::Empty, 2, vec![])));
        });
    }

    #[test]
    fn a_static_member_s_new_id_is_in_the_log_when_it_is_answered() {
        with_group_log(|shard, p| async move {
            let first = join_and_store(&shard, Duration::ZERO, static_args("", "i-a")).await;
            let asg = vec![(first.member_id.clone(), Bytes::from_static(b"A"))];
            let s = sync_and_store(&shard, "g", first.generation, (&first.member_id, Some("i-a")), asg).await;
            assert_eq!(s.error, 0);
            let again = join_and_store(&shard, Duration::ZERO, static_args("", "i-a")).await;
            assert_eq!((again.error, again.generation), (0, first.generation), "no rebalance");
            // A new leader epoch naming this broker again loads nothing:
            // memory is newer than the log (a rebalance in progress here).
            let b = shard.groups.join_ok(Duration::ZERO, static_args("", "i-b"));
            assert!(futures::FutureExt::now_or_never(b).is_none());
            shard.groups.load_partition(&shard, p).await.unwrap();
            assert_eq!(shard.groups.state("g"), GroupState::PreparingRebalance);
            let r = Coordinator::default();
            r.load_partition(&shard, p).await.unwrap();
            assert_eq!(r.heartbeat("g", first.generation, &again.member_id, Some("i-a")), 0);
            assert_eq!(
                r.heartbeat("g", first.generation, &first.member_id, Some("i-a")),
                ResponseError::FencedInstanceId.code()
            );
            let s = r.sync("g", first.generation, (&again.member_id, Some("i-a")), vec![], || async { Ok(()) }).await;
            assert_eq!(s.assignment, Bytes::from_static(b"A"));
        });
    }

    #[test]
    fn failed_coordinator_writes_get_the_codes_kafka_clients_handle() {
        use ResponseError::*;
        for (raw, want) in [
            (NotEnoughReplicas, CoordinatorNotAvailable),
            (NotEnoughReplicasAfterAppend, CoordinatorNotAvailable),
            (RequestTimedOut, CoordinatorNotAvailable),
            (UnknownTopicOrPartition, CoordinatorNotAvailable),
            (NotLeaderOrFollower, NotCoordinator),
            (KafkaStorageError, NotCoordinator),
            (MessageTooLarge, UnknownServerError),
            (NotCoordinator, NotCoordinator),
        ] {
            assert_eq!(coordinator_error(raw, UnknownServerError), want, "{raw:?}");
        }
    }

    #[test]
    fn consumer_assignment_bytes_decode_to_partitions() {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![TopicPartition::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![0, 3])]);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        a.encode(&mut buf, 1).unwrap();
        assert_eq!(assigned_partitions(&buf.freeze()), vec![("t".to_string(), 0), ("t".to_string(), 3)]);
        assert!(assigned_partitions(&Bytes::from_static(b"\x00\x01garbage")).is_empty());
    }

    // Regression (seen in CI): a snapshot taken while a commit's append was
    // in flight carried the older value after it in the log, so a replay
    // after kill -9 went back one commit. Consumers commit in sequence, one
    // partition each, while compaction runs as often as it can; a replay
    // must then match memory exactly.
    #[test]
    fn replay_after_compaction_racing_commits_matches_memory() {
        use crate::config::BrokerConfig;

        let dir = tempfile::tempdir().unwrap();
        let cfg =
            BrokerConfig { data_dir: dir.path().to_path_buf(), offsets_compact_bytes: 4096, ..BrokerConfig::default() };
        crate::shard::run_with_test_shard(cfg, |shard| async move {
            let group = "racing";
            let p = schema::partition_for_group(group, OFFSETS_TOPIC_PARTITIONS);
            shard.groups.load_partition(&shard, p).await.unwrap();

            let done = Rc::new(Cell::new(0usize));
            let consumers = 8;
            const COMMITS: i64 = 300;
            for c in 0..consumers {
                let (s, done) = (shard.clone(), done.clone());
                glommio::spawn_local(async move {
                    for i in 1..=COMMITS {
                        let v = OffsetValue {
                            offset: i,
                            leader_epoch: -1,
                            metadata: "x".repeat(64),
                            commit_timestamp: now_ms(),
                        };
                        let commits = vec![(("t".to_string(), c), v)];
                        let key = Key::Offset { group: group.into(), topic: "t".into(), partition: c };
                        write_records(&s, group, vec![(key, Some(commits[0].1.encode()))]).await.unwrap();
                        s.groups.apply_commits(group, &commits);
                    }
                    done.set(done.get() + 1);
                })
                .detach();
            }
            let replay = |s: Rc<Shard>| async move {
                let c = Coordinator::default();
                c.load_partition(&s, p).await.unwrap();
                c.offsets(group).into_iter().map(|(k, v)| (k, v.offset)).collect::<BTreeMap<_, _>>()
            };
            // After every compaction, the log must replay to at least
            // what memory holds (commits landing meanwhile only raise it).
            let mut compactions = 0;
            while done.get() < consumers as usize {
                if shard.groups.maybe_compact(&shard, p).await.unwrap() {
                    compactions += 1;
                    let memory = shard.groups.offsets(group);
                    let replayed = replay(shard.clone()).await;
                    for (k, v) in memory {
                        assert!(replayed[&k] >= v.offset, "{k:?}: replay {} < memory {}", replayed[&k], v.offset);
                    }
                }
                glommio::timer::sleep(Duration::from_micros(200)).await;
            }
            assert!(compactions >= 5, "only {compactions} compactions raced the commits");
            let in_memory = shard.groups.offsets(group);
            assert_eq!(in_memory.len(), consumers as usize);
            assert!(in_memory.values().all(|v| v.offset == COMMITS));

            let expected: BTreeMap<_, _> = in_memory.into_iter().map(|(k, v)| (k, v.offset)).collect();
            assert_eq!(replay(shard.clone()).await, expected);
        });
    }
}
