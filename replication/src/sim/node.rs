//! One simulated broker: the driver of design sections 7 and 9 in miniature. It applies metadata in
//! order, turns registration changes into roles with [`role_change`], and runs the real
//! [`LeaderState`] and [`FollowerState`] against its [`Disk`]s, the network and timers. Everything
//! the rules decide is executed here the way `net/src/cluster/` is to execute it; everything they
//! leave to the driver (request matching, long polls, the fetch handler's checks, acks waiters,
//! AlterPartition timeouts) is decided here, and is as much under test as the rules.
//!
//! Durability (design 7.2, `acks.all.fsync` on): an acks=all produce is answered once the HW
//! covers it *and* the leader's fsync does; a follower acknowledges an append (`on_appended`,
//! hence its next fetch offset) only once it is durable, and asks the rules for a request only
//! while nothing is unsynced — so its `LogView::log_end` (the written end) is then also its durable
//! end. The leader counts its **durable** end for the HW, not its written end as design 7.2 says:
//! see [`LeaderEnd`] for why. A process crash keeps written data, a power loss keeps durable data;
//! a restarted process syncs what it finds before fetching.
//!
//! A restarted broker comes back empty but for its disks: it registers a new incarnation and acts
//! on no partition until its own image shows that registration (by then the controller has fenced
//! its previous incarnation and moved its leaderships, design 5.2), then takes every role from
//! scratch, as `role_change(None, current)`.

use rand::rngs::SmallRng;
use rand::Rng;

use super::controller::assignment_in;
use super::disk::{Batch, Disk, ReplicatedAppendError};
use super::net::{Addr, Msg, Part};
use crate::metadata::{MetadataImage, MetadataRecord};
use crate::partition_replica::{
    answer_epoch_query, check_fetch_position, error_code, role_change, AckStatus, AlterFailed, AppendRefused,
    AppendRejection, BrokerLiveness, BrokerStatus, FetchPhase, FetchPosition, FetchQuery, FetchResponse,
    FollowerAction, FollowerFetch, FollowerFetchError, FollowerRequest, FollowerState, IsrChange, LeaderConfig,
    LeaderOffsets, LeaderStart, LeaderState, LogView, PartitionAssignment, RoleChange, TruncatingStep,
    ISR_CHECK_INTERVAL_MS,
};
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, Offset, TopicId, TopicIdPartition};

use super::controller::HEARTBEAT_INTERVAL_MS;

/// Kafka's `replica.fetch.wait.max.ms`: how long a leader parks a follower fetch with no new data.
pub const FETCH_MAX_WAIT_MS: u64 = 500;
/// A follower gives up on a request after this long and backs off (Kafka's
/// `replica.socket.timeout.ms`, scaled down with the session). Must outlast a parked fetch.
pub const REPLICA_REQUEST_TIMEOUT_MS: u64 = 2000;
/// An acks=all produce waits this long for the HW (the produce request's `timeout_ms`).
pub const PRODUCE_TIMEOUT_MS: u64 = 3000;
/// A leader treats an unanswered AlterPartition as failed after this long, and the rules retry.
pub const ALTER_PARTITION_TIMEOUT_MS: u64 = 1000;
/// A broker resends its registration this often while its image does not show it.
pub const REGISTER_RETRY_MS: u64 = 300;
/// Records per fetch response (`replica.fetch.max.bytes` in one-record batches).
pub const FETCH_MAX_BATCHES: usize = 16;
/// `replica.lag.time.max.ms` in the simulator: 30 s scaled down like the session timeout.
pub const REPLICA_LAG_TIME_MAX_MS: u64 = 4000;
/// Design 5.4's min ISR for the tests: with 1 the safety argument degenerates (design 10.3).
pub const MIN_INSYNC_REPLICAS: usize = 2;

// Design 13's checked relations.
const _: () = assert!(FETCH_MAX_WAIT_MS < REPLICA_LAG_TIME_MAX_MS);
const _: () = assert!(ISR_CHECK_INTERVAL_MS * 2 <= REPLICA_LAG_TIME_MAX_MS);
const _: () = assert!(REPLICA_REQUEST_TIMEOUT_MS > FETCH_MAX_WAIT_MS);

/// Error codes the driver produces that the rules do not name.
pub mod codes {
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
}

/// Per-seed disk behaviour.
#[derive(Clone, Copy, Debug)]
pub struct DiskConfig {
    pub sync_ms_max: u64,
    pub sync_tail_probability: f64,
    pub sync_tail_ms_max: u64,
}

/// What a leader reports to [`LeaderState::on_local_end`]: the end its own log counts for the HW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderEnd {
    /// Design 7.2 as written: the written end. A record can then be exposed below the HW while
    /// only the leader's page cache holds it; a power outage of the whole ISR, followed by the
    /// re-registrations that drop the followers from the ISR, leaves the leader as its last member
    /// without the record (`sim_written_end_hw_loses_visible_records_in_a_power_outage`).
    Written,
    /// The durable end: what every maximal-ISR member holds below the HW is on its disk, so a
    /// record a consumer saw survives any power outage. Costs acks=all nothing (its answer waits
    /// for the leader's fsync anyway); acks=1 records become visible one leader fsync later.
    Durable,
}

/// A node's timers. Each carries what it needs to tell whether it is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Heartbeat,
    IsrCheck,
    Register,
    /// A follower's backoff ended.
    Pump(Part),
    RequestTimeout(Part, u64),
    FetchExpire(Part, u64),
    ProduceTimeout(Part, u64),
    AlterTimeout(Part, u64),
    AlterRetry(Part),
    SyncDone(Part, u64),
}

/// What a node's handler asks of the world.
pub struct Ctx<'a> {
    pub now: u64,
    pub rng: &'a mut SmallRng,
    /// The controller's committed metadata log (entry `i` has index `i + 1`).
    pub metadata: &'a [Vec<MetadataRecord>],
    pub topic_id: TopicId,
    pub disk: DiskConfig,
    pub leader_end: LeaderEnd,
    pub out: Vec<(Addr, Msg)>,
    pub timers: Vec<(u64, Timer)>,
    /// Records of acks=all produces answered with success just now.
    pub acked: Vec<(Part, Batch)>,
}

impl Ctx<'_> {
    fn send(&mut self, to: Addr, msg: Msg) {
        self.out.push((to, msg));
    }

    fn after(&mut self, delay_ms: u64, timer: Timer) {
        self.timers.push((self.now + delay_ms, timer));
    }

    /// A periodic timer, its period off by up to 10 % either way: clocks of different brokers
    /// drift (design 14.2), and periodic work must not stay in lockstep across brokers.
    fn after_jittered(&mut self, period_ms: u64, timer: Timer) {
        let spread = period_ms / 10;
        let delay = self.rng.random_range(period_ms - spread..=period_ms + spread);
        self.after(delay, timer);
    }

    fn sync_latency(&mut self) -> u64 {
        let mut ms = self.rng.random_range(1..=self.disk.sync_ms_max);
        if self.disk.sync_tail_probability > 0.0 && self.rng.random_bool(self.disk.sync_tail_probability) {
            ms += self.rng.random_range(1..=self.disk.sync_tail_ms_max);
        }
        ms
    }
}

/// The image's brokers as the leader rules read them.
pub struct ImageLiveness<'a>(pub &'a MetadataImage);

impl BrokerLiveness for ImageLiveness<'_> {
    fn broker_status(&self, broker: BrokerId) -> Option<BrokerStatus> {
        self.0.broker(broker).map(|b| BrokerStatus {
            epoch: b.epoch,
            fenced: b.fenced,
            shutting_down: b.in_controlled_shutdown,
        })
    }
}

struct AckWaiter {
    /// For its timeout timer: request ids are per client, so they alone can collide.
    id: u64,
    client: Addr,
    req: u64,
    base: Offset,
    required_end: Offset,
}

struct ParkedFetch {
    id: u64,
    replica: BrokerId,
    req: u64,
    fetch_offset: Offset,
}

pub struct LeaderReplica {
    pub state: LeaderState,
    waiters: Vec<AckWaiter>,
    parked: Vec<ParkedFetch>,
    /// The AlterPartition in flight: request id and the change it carries.
    alter: Option<(u64, IsrChange)>,
}

impl LeaderReplica {
    pub fn waiting_acks(&self) -> usize {
        self.waiters.len()
    }
}

struct AppendInFlight {
    ticket: u64,
    end: Offset,
    last_epoch: LeaderEpoch,
}

pub struct FollowerReplica {
    pub state: FollowerState,
    /// The request in flight and the id its answer must carry.
    outstanding: Option<(u64, FollowerRequest)>,
    append: Option<AppendInFlight>,
}

pub enum Replica {
    None,
    Leader(LeaderReplica),
    Follower(FollowerReplica),
}

pub struct Node {
    pub id: BrokerId,
    pub up: bool,
    /// Bumped by every restart: stale timers and messages to a previous process are dropped.
    pub incarnation: u64,
    /// The registration identity of the current process.
    pub incarnation_id: uuid::Uuid,
    /// One per partition of the topic, whether or not this broker is a replica; they survive
    /// crashes (with the losses `Disk` models).
    pub disks: Vec<Disk>,
    // Everything below is process memory, lost on a crash.
    pub image: MetadataImage,
    /// Its own registration is in the image: roles are being taken.
    pub published: bool,
    /// The registration each role was taken from.
    pub assignments: Vec<Option<PartitionAssignment>>,
    pub replicas: Vec<Replica>,
    next_id: u64,
}

impl Node {
    pub fn new(id: BrokerId, partitions: usize, incarnation_id: uuid::Uuid) -> Node {
        Node {
            id,
            up: false,
            incarnation: 0,
            incarnation_id,
            disks: vec![Disk::default(); partitions],
            image: MetadataImage::new(),
            published: false,
            assignments: vec![None; partitions],
            replicas: (0..partitions).map(|_| Replica::None).collect(),
            next_id: 0,
        }
    }

    /// One line per partition for failure reports: role, epochs, HW, log shape.
    pub fn describe(&self) -> String {
        let mut out =
            format!("B{} up={} incarnation={} published={}", self.id, self.up, self.incarnation, self.published);
        for (part, disk) in self.disks.iter().enumerate() {
            let role = match &self.replicas[part] {
                Replica::None => "none".to_string(),
                Replica::Leader(l) => format!(
                    "leader e={} pe={} hw={} isr={:?} pending={:?}",
                    l.state.leader_epoch(),
                    l.state.partition_epoch(),
                    l.state.hw(),
                    l.state.committed_isr(),
                    l.state.pending().map(|p| p.request().new_isr.iter().map(|m| m.broker).collect::<Vec<_>>())
                ),
                Replica::Follower(f) => format!(
                    "follower of {:?} e={} hw={} {:?} in_flight={:?}",
                    f.state.leader(),
                    f.state.leader_epoch(),
                    f.state.hw(),
                    f.state.phase(),
                    f.state.in_flight()
                ),
            };
            out += &format!(
                "\n    p{part}: {role}; log end={} durable={} epochs={:?}",
                disk.written_end(),
                disk.durable_end(),
                disk.epochs()
            );
        }
        out
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The current incarnation's broker epoch, once its registration is applied.
    pub fn broker_epoch(&self) -> Option<BrokerEpoch> {
        self.image.broker(self.id).filter(|b| b.incarnation_id == self.incarnation_id).map(|b| b.epoch)
    }

    fn tp(ctx: &Ctx, part: Part) -> TopicIdPartition {
        TopicIdPartition { topic_id: ctx.topic_id, partition: part as i32 }
    }

    /// Process start (first boot or restart): register, heartbeat, and sync whatever a process
    /// crash left unsynced.
    pub fn start(&mut self, incarnation_id: uuid::Uuid, ctx: &mut Ctx) {
        assert!(!self.up, "broker {} started twice", self.id);
        self.up = true;
        self.incarnation += 1;
        self.incarnation_id = incarnation_id;
        ctx.send(Addr::Controller, Msg::Register { incarnation: incarnation_id.as_u128() });
        ctx.after_jittered(REGISTER_RETRY_MS, Timer::Register);
        ctx.after_jittered(HEARTBEAT_INTERVAL_MS, Timer::Heartbeat);
        ctx.after_jittered(ISR_CHECK_INTERVAL_MS, Timer::IsrCheck);
        for part in 0..self.disks.len() {
            if self.disks[part].written_end() > self.disks[part].durable_end() {
                self.start_sync(part, ctx);
            }
        }
    }

    /// Process or power failure: memory is gone, disks keep what the failure leaves.
    pub fn crash(&mut self, power: bool) {
        assert!(self.up, "broker {} crashed while down", self.id);
        self.up = false;
        for disk in &mut self.disks {
            if power {
                disk.crash_power();
            } else {
                disk.crash_process();
            }
        }
        self.image = MetadataImage::new();
        self.published = false;
        self.assignments.iter_mut().for_each(|a| *a = None);
        self.replicas.iter_mut().for_each(|r| *r = Replica::None);
    }

    fn start_sync(&mut self, part: Part, ctx: &mut Ctx) {
        let ticket = self.disks[part].start_sync();
        let latency = ctx.sync_latency();
        ctx.after(latency, Timer::SyncDone(part, ticket));
    }

    // ---------------------------------------------------------------------------------------
    // Metadata and roles
    // ---------------------------------------------------------------------------------------

    fn apply_metadata(&mut self, end: u64, ctx: &mut Ctx) {
        let end = end.min(ctx.metadata.len() as u64);
        if end <= self.image.applied_index {
            return;
        }
        for index in self.image.applied_index + 1..=end {
            let delta = self.image.apply(index, &ctx.metadata[index as usize - 1]);
            assert!(delta.rejected.is_empty(), "broker {} refused committed records: {:?}", self.id, delta.rejected);
        }
        if !self.published {
            if self.broker_epoch().is_none() {
                return;
            }
            self.published = true;
        }
        for part in 0..self.replicas.len() {
            let new = assignment_in(&self.image, Self::tp(ctx, part));
            let change = role_change(self.id, self.assignments[part].as_ref(), new.as_ref());
            if let Some(new) = &new {
                self.take_role(part, change, new, ctx);
            }
            self.assignments[part] = new;
        }
        // A follower that stopped for want of a registration of its own resumes here.
        for part in 0..self.replicas.len() {
            self.pump(part, ctx);
        }
    }

    fn take_role(&mut self, part: Part, change: RoleChange, new: &PartitionAssignment, ctx: &mut Ctx) {
        match change {
            RoleChange::NoChange => {}
            RoleChange::Stop => unreachable!("the simulator never removes replicas"),
            RoleChange::IsrChanged => {
                let Replica::Leader(leader) = &mut self.replicas[part] else {
                    panic!("broker {} got an ISR change for partition {part} it does not lead", self.id)
                };
                leader.state.on_partition_change(new, ctx.now, &ImageLiveness(&self.image));
                self.complete_waiters(part, ctx);
            }
            RoleChange::BecomeLeader => {
                let known_hw = self.resign(part, ctx);
                let disk = &mut self.disks[part];
                if ctx.leader_end == LeaderEnd::Durable {
                    // The new epoch starts at the written end and `LeaderState` counts its start
                    // as the leader's end: sync first, as the driver's applier would.
                    disk.sync_now();
                }
                disk.assign_epoch(new.leader_epoch);
                let start = LeaderStart {
                    log_start: disk.log_start(),
                    local_end: disk.written_end(),
                    follower_hw: known_hw,
                    local_broker_epoch: self.broker_epoch().expect("published brokers are registered"),
                    now_ms: ctx.now,
                };
                let config = LeaderConfig {
                    min_insync_replicas: MIN_INSYNC_REPLICAS,
                    replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS,
                };
                let state = LeaderState::new(self.id, new, config, start, &ImageLiveness(&self.image));
                self.replicas[part] =
                    Replica::Leader(LeaderReplica { state, waiters: Vec::new(), parked: Vec::new(), alter: None });
            }
            RoleChange::BecomeFollower { leader } => {
                let known_hw = self.resign(part, ctx).min(self.disks[part].written_end());
                let state = FollowerState::new(leader, new.leader_epoch, known_hw);
                self.replicas[part] = Replica::Follower(FollowerReplica { state, outstanding: None, append: None });
                self.pump(part, ctx);
            }
        }
    }

    /// Leaves the current role: a leader fails its waiters and parked fetches. Returns the HW
    /// this replica knew (its log start if none).
    fn resign(&mut self, part: Part, ctx: &mut Ctx) -> Offset {
        let log_start = self.disks[part].log_start();
        match std::mem::replace(&mut self.replicas[part], Replica::None) {
            Replica::None => log_start,
            Replica::Follower(f) => f.state.hw(),
            Replica::Leader(mut l) => {
                l.state.resign();
                for w in l.waiters.drain(..) {
                    ctx.send(
                        w.client,
                        Msg::ProduceResponse { part, req: w.req, result: Err(error_code::NOT_LEADER_OR_FOLLOWER) },
                    );
                }
                for p in l.parked.drain(..) {
                    let to = Addr::Broker(p.replica);
                    ctx.send(to, fetch_error(part, p.req, error_code::NOT_LEADER_OR_FOLLOWER));
                }
                l.state.hw()
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Follower side
    // ---------------------------------------------------------------------------------------

    /// Sends the next request of a follower partition, or executes the local step the rules ask
    /// for, until it waits for something.
    fn pump(&mut self, part: Part, ctx: &mut Ctx) {
        loop {
            // Our registration was replaced (see `Timer::Register`): fetch again once the new one
            // is applied, with its broker epoch.
            let Some(broker_epoch) = self.broker_epoch() else { return };
            let Replica::Follower(f) = &mut self.replicas[part] else { return };
            if f.append.is_some() || f.outstanding.is_some() {
                return;
            }
            let disk = &mut self.disks[part];
            if disk.written_end() != disk.durable_end() {
                // Data from a previous role or process: acknowledge nothing until it is durable.
                if !disk.has_sync_pending() {
                    self.start_sync(part, ctx);
                }
                return;
            }
            let Some(leader) = f.state.leader() else { return };
            let to = Addr::Broker(leader);
            // Taken from `next_id` below, once `f` and `disk` are no longer borrowed.
            let req = self.next_id + 1;
            let (request, msg) = match f.state.phase() {
                FetchPhase::AwaitingMetadata => return,
                FetchPhase::Truncating => match f.state.epoch_query(disk, ctx.now) {
                    None => return,
                    Some(TruncatingStep::Act(action)) => {
                        self.execute(part, action, Vec::new(), ctx);
                        continue;
                    }
                    Some(TruncatingStep::Ask(query)) => {
                        (FollowerRequest::Epoch(query), Msg::EpochRequest { part, req, query })
                    }
                },
                FetchPhase::Fetching { .. } => {
                    let Some(query) = f.state.fetch_query(disk, ctx.now) else { return };
                    (FollowerRequest::Fetch(query), Msg::FetchRequest { part, req, broker_epoch, query })
                }
                FetchPhase::OutOfRange { .. } => {
                    let Some(query) = f.state.leader_offsets_query(ctx.now) else { return };
                    (FollowerRequest::LeaderOffsets(query), Msg::OffsetsRequest { part, req, query })
                }
            };
            let Replica::Follower(f) = &mut self.replicas[part] else { unreachable!() };
            f.outstanding = Some((req, request));
            self.next_id = req;
            ctx.send(to, msg);
            ctx.after(REPLICA_REQUEST_TIMEOUT_MS, Timer::RequestTimeout(part, req));
            return;
        }
    }

    /// Executes what the follower rules returned. `records` are the fetch response's, for `Append`.
    fn execute(&mut self, part: Part, action: FollowerAction, records: Vec<Batch>, ctx: &mut Ctx) {
        let Replica::Follower(f) = &mut self.replicas[part] else { return };
        let disk = &mut self.disks[part];
        match action {
            FollowerAction::Continue | FollowerAction::Ignored => self.pump(part, ctx),
            FollowerAction::AwaitMetadata => {}
            FollowerAction::Backoff { until_ms } => ctx.after(until_ms - ctx.now, Timer::Pump(part)),
            FollowerAction::Truncate { to } => {
                disk.truncate_to(to);
                f.state.on_truncated(disk);
                self.pump(part, ctx);
            }
            FollowerAction::TruncateFullyAndStartAt { offset } => {
                disk.truncate_fully_and_start_at(offset);
                f.state.on_truncated(disk);
                self.pump(part, ctx);
            }
            FollowerAction::Append { expected_base } => {
                assert_eq!(
                    records.first().map(|b| b.offset),
                    Some(expected_base),
                    "append of a response not at its offset"
                );
                let rejection = match disk.append_replicated(&records) {
                    Ok(()) => {
                        // Acknowledged (`on_appended`) only when this fsync completes.
                        let last = records.last().expect("an append has records");
                        let ticket = disk.start_sync();
                        f.append = Some(AppendInFlight { ticket, end: last.offset + 1, last_epoch: last.epoch });
                        let latency = ctx.sync_latency();
                        ctx.after(latency, Timer::SyncDone(part, ticket));
                        return;
                    }
                    Err(ReplicatedAppendError::NotContiguous) => AppendRejection::NotContiguous,
                    Err(ReplicatedAppendError::EpochRegression) => AppendRejection::Invalid,
                };
                let next = f.state.on_append_rejected(rejection, disk, ctx.now);
                self.execute(part, next, Vec::new(), ctx);
            }
        }
    }

    /// Takes the answer to a follower request if it is the one outstanding.
    fn answered(&mut self, part: Part, req: u64) -> Option<FollowerRequest> {
        let Replica::Follower(f) = &mut self.replicas[part] else { return None };
        match f.outstanding {
            Some((id, request)) if id == req => {
                f.outstanding = None;
                Some(request)
            }
            _ => None,
        }
    }

    fn on_follower_response(&mut self, part: Part, req: u64, msg: Msg, ctx: &mut Ctx) {
        let Some(request) = self.answered(part, req) else { return };
        let Replica::Follower(f) = &mut self.replicas[part] else { unreachable!() };
        let disk = &self.disks[part];
        let (action, records) = match (request, msg) {
            (FollowerRequest::Epoch(query), Msg::EpochResponse { result, .. }) => {
                (f.state.on_epoch_response(&query, result, disk, ctx.now), Vec::new())
            }
            (FollowerRequest::Fetch(query), Msg::FetchResponse { response, records, .. }) => {
                (f.state.on_fetch_response(&query, &response, disk, ctx.now), records)
            }
            (FollowerRequest::LeaderOffsets(query), Msg::OffsetsResponse { result, .. }) => {
                (f.state.on_leader_offsets(&query, result, disk, ctx.now), Vec::new())
            }
            (request, msg) => panic!("answer {} to {request:?}", msg.summary()),
        };
        self.execute(part, action, records, ctx);
    }

    fn on_sync_done(&mut self, part: Part, ticket: u64, ctx: &mut Ctx) {
        self.disks[part].complete_sync(ticket);
        match &mut self.replicas[part] {
            Replica::Leader(l) => {
                let durable = self.disks[part].durable_end();
                if ctx.leader_end == LeaderEnd::Durable && durable > l.state.local_end() {
                    l.state.on_local_end(durable, ctx.now, &ImageLiveness(&self.image));
                }
                self.complete_waiters(part, ctx);
            }
            Replica::Follower(f) => {
                if let Some(append) = f.append.as_ref().filter(|a| a.ticket == ticket) {
                    assert!(self.disks[part].durable_end() >= append.end, "an append's fsync left it unsynced");
                    f.state.on_appended(append.end, append.last_epoch);
                    f.append = None;
                }
                self.pump(part, ctx);
            }
            Replica::None => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // Leader side
    // ---------------------------------------------------------------------------------------

    /// The fetch handler's role and epoch checks (Kafka's `localLogWithEpochOrThrow`): `Err` is the
    /// error code to answer with.
    fn check_leader(&self, part: Part, current_leader_epoch: LeaderEpoch) -> Result<(), i16> {
        let epoch = match &self.replicas[part] {
            Replica::None => return Err(error_code::UNKNOWN_TOPIC_OR_PARTITION),
            Replica::Leader(l) => l.state.leader_epoch(),
            Replica::Follower(f) => f.state.leader_epoch(),
        };
        if current_leader_epoch < epoch {
            Err(error_code::FENCED_LEADER_EPOCH)
        } else if current_leader_epoch > epoch {
            Err(error_code::UNKNOWN_LEADER_EPOCH)
        } else if matches!(self.replicas[part], Replica::Leader(_)) {
            Ok(())
        } else {
            Err(error_code::NOT_LEADER_OR_FOLLOWER)
        }
    }

    fn on_fetch(
        &mut self,
        replica: BrokerId,
        part: Part,
        req: u64,
        broker_epoch: BrokerEpoch,
        query: FetchQuery,
        ctx: &mut Ctx,
    ) {
        let to = Addr::Broker(replica);
        if let Err(code) = self.check_leader(part, query.current_leader_epoch) {
            return ctx.send(to, fetch_error(part, req, code));
        }
        let Replica::Leader(l) = &mut self.replicas[part] else { unreachable!() };
        let disk = &self.disks[part];
        match check_fetch_position(disk, query.fetch_offset, query.last_fetched_epoch) {
            FetchPosition::OutOfRange => ctx.send(to, fetch_error(part, req, error_code::OFFSET_OUT_OF_RANGE)),
            FetchPosition::Diverging(diverging) => {
                let response = FetchResponse {
                    error: error_code::NONE,
                    high_watermark: l.state.hw(),
                    diverging_epoch: Some(diverging),
                    has_records: false,
                };
                ctx.send(to, Msg::FetchResponse { part, req, response, records: Vec::new() });
            }
            FetchPosition::Read => {
                let fetch = FollowerFetch {
                    replica,
                    fetch_offset: query.fetch_offset,
                    log_start: query.log_start,
                    broker_epoch,
                    leader_end: disk.written_end(),
                    now_ms: ctx.now,
                };
                let outcome = match l.state.on_follower_fetch(fetch, &ImageLiveness(&self.image)) {
                    Ok(outcome) => outcome,
                    Err(FollowerFetchError::UnknownReplica(_)) => {
                        return ctx.send(to, fetch_error(part, req, error_code::UNKNOWN_LEADER_EPOCH))
                    }
                    Err(FollowerFetchError::StaleBrokerEpoch { .. } | FollowerFetchError::NotLeader) => {
                        return ctx.send(to, fetch_error(part, req, error_code::NOT_LEADER_OR_FOLLOWER))
                    }
                };
                if query.fetch_offset < disk.written_end() {
                    ctx.send(to, read_for_follower(part, req, query.fetch_offset, l.state.hw(), disk));
                } else {
                    let id = self.next_id + 1;
                    self.next_id = id;
                    l.parked.push(ParkedFetch { id, replica, req, fetch_offset: query.fetch_offset });
                    ctx.after(FETCH_MAX_WAIT_MS, Timer::FetchExpire(part, id));
                }
                if let Some(change) = outcome.isr_change {
                    self.send_alter(part, change, ctx);
                }
                if outcome.hw_advanced {
                    self.complete_waiters(part, ctx);
                }
            }
        }
    }

    /// Answers parked fetches that can now read something (`expired`: this one regardless).
    fn answer_parked(&mut self, part: Part, expired: Option<u64>, ctx: &mut Ctx) {
        let Replica::Leader(l) = &mut self.replicas[part] else { return };
        let disk = &self.disks[part];
        let hw = l.state.hw();
        l.parked.retain(|p| {
            if p.fetch_offset < disk.written_end() || Some(p.id) == expired {
                ctx.send(Addr::Broker(p.replica), read_for_follower(part, p.req, p.fetch_offset, hw, disk));
                false
            } else {
                true
            }
        });
    }

    fn send_alter(&mut self, part: Part, change: IsrChange, ctx: &mut Ctx) {
        // Without a registration of our own the change stays pending, and the metadata that
        // re-registers us also moves our leaderships away (design 5.2).
        let Some(broker_epoch) = self.broker_epoch() else { return };
        let req = self.next_id();
        let Replica::Leader(l) = &mut self.replicas[part] else { unreachable!() };
        let request = change.request().clone();
        l.alter = Some((req, change));
        ctx.send(Addr::Controller, Msg::AlterPartition { part, req, broker_epoch, request });
        ctx.after(ALTER_PARTITION_TIMEOUT_MS, Timer::AlterTimeout(part, req));
    }

    fn on_alter_result(&mut self, part: Part, req: u64, result: Result<(), i16>, ctx: &mut Ctx) {
        let Replica::Leader(l) = &mut self.replicas[part] else { return };
        let Some((_, sent)) = l.alter.take_if(|(id, _)| *id == req) else { return };
        let Err(code) = result else { return }; // accepted: the registration arrives as metadata
        match l.state.on_alter_failed(&sent, code, ctx.now, &ImageLiveness(&self.image)) {
            AlterFailed::Ignored | AlterFailed::AwaitMetadata => {}
            AlterFailed::Dropped { .. } => self.complete_waiters(part, ctx),
            AlterFailed::RetryAt { at_ms } => ctx.after(at_ms - ctx.now, Timer::AlterRetry(part)),
        }
    }

    fn on_produce(&mut self, client: Addr, part: Part, req: u64, acks_all: bool, contents: Vec<u64>, ctx: &mut Ctx) {
        let Replica::Leader(l) = &mut self.replicas[part] else {
            return ctx
                .send(client, Msg::ProduceResponse { part, req, result: Err(error_code::NOT_LEADER_OR_FOLLOWER) });
        };
        if acks_all {
            if let Err(refused) = l.state.check_acks_all_append() {
                let code = match refused {
                    AppendRefused::NotLeader => error_code::NOT_LEADER_OR_FOLLOWER,
                    AppendRefused::NotEnoughReplicas { .. } => codes::NOT_ENOUGH_REPLICAS,
                };
                return ctx.send(client, Msg::ProduceResponse { part, req, result: Err(code) });
            }
        }
        let disk = &mut self.disks[part];
        let base = disk.append_leader(l.state.leader_epoch(), &contents);
        let end = disk.written_end();
        if ctx.leader_end == LeaderEnd::Written {
            l.state.on_local_end(end, ctx.now, &ImageLiveness(&self.image));
        }
        if acks_all {
            let id = self.next_id + 1;
            self.next_id = id;
            l.waiters.push(AckWaiter { id, client, req, base, required_end: end });
            ctx.after(PRODUCE_TIMEOUT_MS, Timer::ProduceTimeout(part, id));
        } else {
            ctx.send(client, Msg::ProduceResponse { part, req, result: Ok(base) });
        }
        self.start_sync(part, ctx);
        self.answer_parked(part, None, ctx);
        self.complete_waiters(part, ctx);
    }

    /// Answers every acks=all waiter whose outcome is known (design 7.2): done once the HW
    /// covers its records and the leader's fsync does too.
    fn complete_waiters(&mut self, part: Part, ctx: &mut Ctx) {
        let Replica::Leader(l) = &mut self.replicas[part] else { return };
        let disk = &self.disks[part];
        l.waiters.retain(|w| {
            let result = match l.state.ack_status(w.required_end) {
                AckStatus::Pending => return true,
                AckStatus::Done if disk.durable_end() < w.required_end => return true,
                AckStatus::Done => {
                    ctx.acked.extend(disk.read(w.base, w.required_end).into_iter().map(|b| (part, b)));
                    Ok(w.base)
                }
                AckStatus::DoneUnderMinIsr => Err(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND),
                AckStatus::NotLeader => Err(error_code::NOT_LEADER_OR_FOLLOWER),
            };
            ctx.send(w.client, Msg::ProduceResponse { part, req: w.req, result });
            false
        });
    }

    fn on_consumer_fetch(&mut self, client: Addr, part: Part, req: u64, offset: Offset, ctx: &mut Ctx) {
        let result = match &self.replicas[part] {
            Replica::Leader(l) => {
                let disk = &self.disks[part];
                if offset > disk.written_end() || offset < disk.log_start() {
                    Err(error_code::OFFSET_OUT_OF_RANGE)
                } else {
                    let upper = l.state.hw().min(offset + FETCH_MAX_BATCHES as Offset);
                    Ok(disk.read(offset, upper))
                }
            }
            _ => Err(error_code::NOT_LEADER_OR_FOLLOWER),
        };
        ctx.send(client, Msg::ConsumerFetchResponse { part, req, result });
    }

    // ---------------------------------------------------------------------------------------
    // Entry points
    // ---------------------------------------------------------------------------------------

    pub fn on_message(&mut self, from: Addr, msg: Msg, ctx: &mut Ctx) {
        assert!(self.up);
        match (from, msg) {
            (_, Msg::MetadataEnd { end }) => self.apply_metadata(end, ctx),
            (
                Addr::Broker(_),
                msg @ (Msg::EpochResponse { .. } | Msg::FetchResponse { .. } | Msg::OffsetsResponse { .. }),
            ) => {
                let (part, req) = match &msg {
                    Msg::EpochResponse { part, req, .. }
                    | Msg::FetchResponse { part, req, .. }
                    | Msg::OffsetsResponse { part, req, .. } => (*part, *req),
                    _ => unreachable!(),
                };
                self.on_follower_response(part, req, msg, ctx);
            }
            (Addr::Broker(replica), Msg::FetchRequest { part, req, broker_epoch, query }) => {
                self.on_fetch(replica, part, req, broker_epoch, query, ctx)
            }
            (Addr::Broker(_), Msg::EpochRequest { part, req, query }) => {
                let result = self
                    .check_leader(part, query.current_leader_epoch)
                    .map(|()| answer_epoch_query(&self.disks[part], query.leader_epoch));
                ctx.send(from, Msg::EpochResponse { part, req, result });
            }
            (Addr::Broker(_), Msg::OffsetsRequest { part, req, query }) => {
                let disk = &self.disks[part];
                let result = self
                    .check_leader(part, query.current_leader_epoch)
                    .map(|()| LeaderOffsets { log_start: disk.log_start(), log_end: disk.written_end() });
                ctx.send(from, Msg::OffsetsResponse { part, req, result });
            }
            (Addr::Controller, Msg::AlterPartitionResponse { part, req, result }) => {
                self.on_alter_result(part, req, result, ctx)
            }
            (Addr::Producer(_), Msg::Produce { part, req, acks_all, contents }) => {
                self.on_produce(from, part, req, acks_all, contents, ctx)
            }
            (Addr::Consumer(_), Msg::ConsumerFetch { part, req, offset }) => {
                self.on_consumer_fetch(from, part, req, offset, ctx)
            }
            (from, msg) => panic!("broker {} got {} from {from:?}", self.id, msg.summary()),
        }
    }

    pub fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx) {
        assert!(self.up);
        match timer {
            Timer::Register => {
                // Checked for the process's whole life, not only until the first success: a
                // registration of another incarnation (a stale request of a dead process, delayed
                // in the network) can replace ours, and only registering again ends it.
                if self.broker_epoch().is_none() {
                    ctx.send(Addr::Controller, Msg::Register { incarnation: self.incarnation_id.as_u128() });
                }
                ctx.after_jittered(REGISTER_RETRY_MS, Timer::Register);
            }
            Timer::Heartbeat => {
                if let Some(broker_epoch) = self.broker_epoch() {
                    let applied_index = self.image.applied_index;
                    ctx.send(Addr::Controller, Msg::Heartbeat { broker_epoch, applied_index });
                }
                ctx.after_jittered(HEARTBEAT_INTERVAL_MS, Timer::Heartbeat);
            }
            Timer::IsrCheck => {
                for part in 0..self.replicas.len() {
                    if let Replica::Leader(l) = &mut self.replicas[part] {
                        if let Some(change) = l.state.maybe_shrink(ctx.now) {
                            self.send_alter(part, change, ctx);
                        }
                    }
                }
                ctx.after_jittered(ISR_CHECK_INTERVAL_MS, Timer::IsrCheck);
            }
            Timer::Pump(part) => self.pump(part, ctx),
            Timer::RequestTimeout(part, req) => {
                let Some(request) = self.answered(part, req) else { return };
                let Replica::Follower(f) = &mut self.replicas[part] else { unreachable!() };
                // `answered` cleared our record; the rules still hold the request in flight.
                let action = f.state.on_request_failed(&request, ctx.now);
                self.execute(part, action, Vec::new(), ctx);
            }
            Timer::FetchExpire(part, id) => self.answer_parked(part, Some(id), ctx),
            Timer::ProduceTimeout(part, id) => {
                let Replica::Leader(l) = &mut self.replicas[part] else { return };
                if let Some(i) = l.waiters.iter().position(|w| w.id == id) {
                    let w = l.waiters.remove(i);
                    let result = Err(codes::REQUEST_TIMED_OUT);
                    ctx.send(w.client, Msg::ProduceResponse { part, req: w.req, result });
                }
            }
            Timer::AlterTimeout(part, req) => {
                let Replica::Leader(l) = &mut self.replicas[part] else { return };
                if l.alter.as_ref().is_some_and(|(id, _)| *id == req) {
                    self.on_alter_result(part, req, Err(codes::REQUEST_TIMED_OUT), ctx);
                }
            }
            Timer::AlterRetry(part) => {
                let Replica::Leader(l) = &mut self.replicas[part] else { return };
                if l.alter.is_none() {
                    if let Some(pending) = l.state.pending().cloned() {
                        self.send_alter(part, pending, ctx);
                    }
                }
            }
            Timer::SyncDone(part, ticket) => self.on_sync_done(part, ticket, ctx),
        }
    }
}

fn fetch_error(part: Part, req: u64, error: i16) -> Msg {
    let response = FetchResponse { error, high_watermark: -1, diverging_epoch: None, has_records: false };
    Msg::FetchResponse { part, req, response, records: Vec::new() }
}

/// A follower fetch's answer: up to [`FETCH_MAX_BATCHES`] from the written end (design 8.6:
/// followers read past the HW).
fn read_for_follower(part: Part, req: u64, from: Offset, hw: Offset, disk: &Disk) -> Msg {
    let records = disk.read(from, from + FETCH_MAX_BATCHES as Offset);
    let response = FetchResponse {
        error: error_code::NONE,
        high_watermark: hw,
        diverging_epoch: None,
        has_records: !records.is_empty(),
    };
    Msg::FetchResponse { part, req, response, records }
}
