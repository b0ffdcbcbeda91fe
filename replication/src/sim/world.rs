//! The world: simulated time, one seeded random source, the event queue, and the loop that runs
//! events, injects faults, records the trace and calls the invariant checker after every event.
//!
//! A run has two phases. **Faults**: producers and consumers run while brokers crash (process or
//! power) and restart, links are cut and healed, messages are lost and delayed. **Settling**, from
//! `fault_phase_ms` on: every broker is restarted, every link healed, drops and slow messages
//! stop, producers stop starting requests; the cluster must then converge (invariant (f)) within
//! [`LIVENESS_BOUND_MS`], after which the final checks run.
//!
//! Determinism (design 14.3): all randomness comes from one `SmallRng` seeded with the seed, all
//! maps are `BTreeMap`s, events are ordered by `(time, sequence number)`. The trace hash is an
//! FNV-1a over every event's description, so two runs of a seed can be compared exactly.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::controller::{OracleController, OracleMode, CONTROLLER_TICK_MS};
use super::disk::Batch;
use super::invariants::{converged, Checker, Invariant, Violation, FULL_CHECK_EVERY};
use super::net::{Addr, Envelope, Msg, Net, NetConfig, Part};
use super::node::{Ctx, DiskConfig, LeaderEnd, Node, Replica, Timer};
use super::voters::{self, Ledger, Voter, VoterOut, WaitKind, Waiter, VOTERS};
use super::workload::{ClientCtx, ClientTimer, Consumer, Producer, WorkloadConfig};
use crate::controller::AlterPartitionRequest;
use crate::controller::{BrokerHeartbeatRequest, BrokerRegistrationRequest, ControllerRequest};
use crate::quorum::{node_id, TICK_MS};
use crate::types::BrokerId;

/// After the faults stop, the cluster must converge within this much simulated time: a session
/// timeout to fence what is still dead, a lag period to shrink, fetch backoffs, with a wide margin.
pub const LIVENESS_BOUND_MS: u64 = 30_000;
/// How often convergence is checked while settling.
const CONVERGENCE_CHECK_MS: u64 = 250;
/// Raft mode: the share of faults that strike the controller quorum instead of the brokers.
const VOTER_FAULT_PROBABILITY: f64 = 0.35;
/// How long an outage may be held back waiting for its moment, and how finely it looks.
const OUTAGE_WAIT_MAX_MS: u64 = 2_000;
const OUTAGE_WAIT_STEP_MS: u64 = 3;
/// Trace lines kept for a failure report.
pub const TRACE_TAIL: usize = 200;
/// A run stops as not converging after this many events. Healthy seeds take a few thousand; the
/// bound is there so a livelock (a fetch loop that never progresses) fails in a second instead of
/// running out the liveness bound one message at a time.
pub const MAX_EVENTS: u64 = 60_000;

/// Everything a seed decides about its run.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub brokers: usize,
    pub partitions: usize,
    pub replication_factor: usize,
    pub net: NetConfig,
    pub disk: DiskConfig,
    pub workload: WorkloadConfig,
    /// Mean time between faults (uniform in 1..=2x this).
    pub fault_interval_ms: u64,
    /// Share of crashes that are power losses (the rest are `kill -9`).
    pub power_loss_fraction: f64,
    pub fault_phase_ms: u64,
    pub variant: Variant,
}

/// The rules a run follows: the sound ones by default, or a deliberately different one, to show
/// what the checker catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub controller: ControllerMode,
    pub oracle: OracleMode,
    pub leader_end: LeaderEnd,
    pub faults: FaultMix,
}

impl Variant {
    pub const SOUND: Variant = Variant {
        controller: ControllerMode::Oracle,
        oracle: OracleMode::Clean,
        leader_end: LeaderEnd::Durable,
        faults: FaultMix::Everything,
    };
    /// Simulator v2: the sound rules with the real quorum and controller.
    pub const RAFT: Variant = Variant { controller: ControllerMode::Raft, ..Variant::SOUND };
}

/// Who decides the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerMode {
    /// v1: the oracle of `controller.rs`, instant commits, never fails.
    Oracle,
    /// v2: three voters running `QuorumCore` and, on the leader, `ControllerCore` (`voters.rs`),
    /// crashing and cut off like brokers. The oracle only mirrors what they commit.
    Raft,
    /// Broken on purpose: as `Raft`, but a voter activates a controller without leading the
    /// quorum (once it applied an entry of the current term), so the checker must see two
    /// controllers in one term.
    RaftWithoutLeadership,
}

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMix {
    /// Every kind, weighted (`World::inject_fault`).
    Everything,
    /// Only power outages of the whole cluster: the fault that tells written from durable.
    PowerOutages,
}

impl SimConfig {
    /// Draws a configuration from the seed's random source. The ranges are wide on purpose:
    /// some seeds never drop a message, some lose one in twenty; some sync in a millisecond, some
    /// stall for hundreds; some crash a broker every few hundred milliseconds.
    pub fn draw(rng: &mut SmallRng, variant: Variant) -> SimConfig {
        let brokers = if rng.random_bool(0.75) { 3 } else { 5 };
        let replication_factor = if brokers == 5 && rng.random_bool(0.5) { 5 } else { 3 };
        SimConfig {
            brokers,
            partitions: rng.random_range(1..=3),
            replication_factor,
            net: NetConfig {
                drop_probability: if rng.random_bool(0.3) { 0.0 } else { rng.random_range(0.0..0.05) },
                delay_ms_max: rng.random_range(1..=10),
                tail_probability: rng.random_range(0.0..0.05),
                tail_ms_max: rng.random_range(50..=1500),
            },
            disk: DiskConfig {
                sync_ms_max: rng.random_range(1..=20),
                sync_tail_probability: rng.random_range(0.0..0.05),
                sync_tail_ms_max: rng.random_range(10..=300),
            },
            workload: WorkloadConfig {
                producers: rng.random_range(1..=3),
                acks_all_probability: rng.random_range(0.6..=1.0),
                produce_pause_ms_max: rng.random_range(20..=200),
                consume_pause_ms_max: rng.random_range(50..=400),
            },
            fault_interval_ms: rng.random_range(300..=3000),
            power_loss_fraction: rng.random_range(0.0..=1.0),
            fault_phase_ms: rng.random_range(8_000..=15_000),
            variant,
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    Deliver(Envelope),
    Node {
        broker: BrokerId,
        incarnation: u64,
        timer: Timer,
    },
    ControllerTick,
    /// A voter's Raft and controller tick (Raft mode).
    VoterTick {
        voter: BrokerId,
        incarnation: u64,
    },
    VoterRestart(BrokerId),
    Producer {
        id: usize,
        timer: ClientTimer,
    },
    Consumer {
        id: usize,
        timer: ClientTimer,
    },
    /// Inject the next fault (`waited_ms`: how long an outage has been held back, see
    /// [`World::should_wait_for_exposure`]).
    Fault {
        waited_ms: u64,
    },
    Restart(BrokerId),
    Heal(Vec<(Addr, Addr)>),
    /// The fault phase is over.
    Settle,
    ConvergenceCheck,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest event must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The trace: an exact hash of every event and the last [`TRACE_TAIL`] lines. FNV-1a, not std's
/// `DefaultHasher`, whose algorithm may change between Rust releases.
struct Trace {
    hash: u64,
    tail: VecDeque<String>,
}

impl Trace {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Trace {
        Trace { hash: Self::FNV_OFFSET, tail: VecDeque::with_capacity(TRACE_TAIL) }
    }

    fn record(&mut self, line: String) {
        for &byte in line.as_bytes().iter().chain(b"\n") {
            self.hash = (self.hash ^ byte as u64).wrapping_mul(Self::FNV_PRIME);
        }
        if self.tail.len() == TRACE_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

/// What an event produced that the checker must see: records acknowledged to producers and
/// records delivered to consumers.
struct Effects {
    acked: Vec<(Part, Batch)>,
    observed: Vec<(Part, Batch)>,
}

/// A successful run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub trace_hash: u64,
    pub stats: Stats,
}

/// What a run exercised, to see that the seeds do more than idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub seeds: u64,
    pub events: u64,
    pub simulated_ms: u64,
    pub crashes: u64,
    pub cuts: u64,
    /// Leader epochs started, over all partitions (the final epochs' sum).
    pub leader_elections: u64,
    pub produces_ok: u64,
    pub produces_failed: u64,
    pub acked_records: u64,
    pub observed_records: u64,
    pub committed_records: u64,
    /// Metadata entries committed (the oracle's or the quorum's log length).
    pub metadata_entries: u64,
    /// Raft mode: controllers activated.
    pub controller_activations: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.seeds += other.seeds;
        self.events += other.events;
        self.simulated_ms += other.simulated_ms;
        self.crashes += other.crashes;
        self.cuts += other.cuts;
        self.leader_elections += other.leader_elections;
        self.produces_ok += other.produces_ok;
        self.produces_failed += other.produces_failed;
        self.acked_records += other.acked_records;
        self.observed_records += other.observed_records;
        self.committed_records += other.committed_records;
        self.metadata_entries += other.metadata_entries;
        self.controller_activations += other.controller_activations;
    }
}

/// A failed run: what broke, when, and the events before it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub config: SimConfig,
    pub step: u64,
    pub time_ms: u64,
    pub violation: Violation,
    /// Every broker's roles and logs at the failure.
    pub state: Vec<String>,
    pub trace_tail: Vec<String>,
}

pub struct World {
    seed: u64,
    config: SimConfig,
    now: u64,
    rng: SmallRng,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    net: Net,
    controller: OracleController,
    nodes: Vec<Node>,
    /// Raft mode: the controller quorum, the checker's view of it, the voter each broker sends
    /// controller requests to, and the applied index each voter last pushed to the brokers.
    voters: Vec<Voter>,
    ledger: Ledger,
    believed_controller: Vec<BrokerId>,
    pushed: Vec<u64>,
    producers: Vec<Producer>,
    consumers: Vec<Consumer>,
    checker: Checker,
    trace: Trace,
    settling_since: Option<u64>,
    next_content: u64,
    steps: u64,
    crashes: u64,
    partitions_cut: u64,
    done: bool,
}

impl World {
    pub fn new(seed: u64, variant: Variant) -> World {
        let mut rng = SmallRng::seed_from_u64(seed);
        let config = SimConfig::draw(&mut rng, variant);
        let broker_ids: Vec<BrokerId> = (1..=config.brokers as BrokerId).collect();
        let incarnations: BTreeMap<BrokerId, uuid::Uuid> =
            broker_ids.iter().map(|&b| (b, uuid::Uuid::from_u128(rng.random()))).collect();
        // Partition p's replicas: `rf` brokers starting at p, so leaders spread.
        let assignments: Vec<Vec<BrokerId>> = (0..config.partitions)
            .map(|p| (0..config.replication_factor).map(|i| broker_ids[(p + i) % config.brokers]).collect())
            .collect();
        let controller = OracleController::bootstrap(&incarnations, &assignments, variant.oracle);
        let (voter_disk, ledger) = voters::bootstrap(&controller);
        let raft = variant.controller != ControllerMode::Oracle;
        let must_lead = variant.controller == ControllerMode::Raft;
        let voters: Vec<Voter> = match raft {
            true => (1..=VOTERS as BrokerId).map(|v| Voter::new(v, voter_disk.clone(), must_lead)).collect(),
            false => Vec::new(),
        };
        let nodes = broker_ids.iter().map(|&b| Node::new(b, config.partitions, incarnations[&b])).collect();
        let leaders: Vec<Option<BrokerId>> = (0..config.partitions).map(|p| controller.leader(p)).collect();
        let producers = (0..config.workload.producers).map(|_| Producer::new(&leaders, config.workload)).collect();
        let consumers = (0..config.partitions).map(|p| Consumer::new(p, leaders[p], config.workload)).collect();
        let mut world = World {
            seed,
            config,
            now: 0,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            net: Net::new(config.net),
            controller,
            nodes,
            voters,
            ledger,
            believed_controller: vec![1; config.brokers],
            pushed: vec![0; VOTERS],
            producers,
            consumers,
            checker: Checker::new(config.partitions),
            trace: Trace::new(),
            settling_since: None,
            next_content: 0,
            steps: 0,
            crashes: 0,
            partitions_cut: 0,
            done: false,
        };
        for &b in &broker_ids {
            world.start_node(b);
        }
        world.broadcast_metadata();
        if raft {
            for v in 1..=VOTERS as BrokerId {
                world.start_voter(v);
            }
        } else {
            world.schedule(CONTROLLER_TICK_MS, Event::ControllerTick);
        }
        for id in 0..config.workload.producers {
            world.schedule(1 + id as u64, Event::Producer { id, timer: ClientTimer::Tick });
        }
        for id in 0..config.partitions {
            world.schedule(1 + id as u64, Event::Consumer { id, timer: ClientTimer::Tick });
        }
        let first_fault = world.fault_delay();
        world.schedule(first_fault, Event::Fault { waited_ms: 0 });
        world.schedule(config.fault_phase_ms, Event::Settle);
        world
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled { at: self.now + delay_ms, seq: self.seq, event });
    }

    fn send(&mut self, from: Addr, to: Addr, msg: Msg) {
        let to = match (to, from) {
            (Addr::Controller, Addr::Broker(b)) if !self.voters.is_empty() => {
                Addr::Voter(self.believed_controller[b as usize - 1])
            }
            _ => to,
        };
        let to_incarnation = match to {
            Addr::Broker(b) => self.nodes[b as usize - 1].incarnation,
            Addr::Voter(v) => self.voters[v as usize - 1].incarnation,
            _ => 0,
        };
        if let Some(delay) = self.net.transit(&mut self.rng, from, to) {
            self.schedule(delay, Event::Deliver(Envelope { from, to, to_incarnation, msg }));
        }
    }

    fn broadcast_metadata(&mut self) {
        let end = self.controller.end();
        for b in 1..=self.config.brokers as BrokerId {
            self.send(Addr::Controller, Addr::Broker(b), Msg::MetadataEnd { end });
        }
    }

    fn fault_delay(&mut self) -> u64 {
        self.rng.random_range(1..=2 * self.config.fault_interval_ms)
    }

    /// Runs a node handler with a fresh context and carries out what it asked for. Returns the
    /// records it acknowledged.
    fn with_node(&mut self, broker: BrokerId, f: impl FnOnce(&mut Node, &mut Ctx)) -> Vec<(Part, Batch)> {
        let node = &mut self.nodes[broker as usize - 1];
        let mut ctx = Ctx {
            now: self.now,
            rng: &mut self.rng,
            metadata: self.controller.log(),
            topic_id: self.controller.topic_id,
            disk: self.config.disk,
            leader_end: self.config.variant.leader_end,
            out: Vec::new(),
            timers: Vec::new(),
            acked: Vec::new(),
        };
        f(node, &mut ctx);
        let Ctx { out, timers, acked, .. } = ctx;
        let incarnation = node.incarnation;
        for (at, timer) in timers {
            self.seq += 1;
            self.queue.push(Scheduled { at, seq: self.seq, event: Event::Node { broker, incarnation, timer } });
        }
        for (to, msg) in out {
            self.send(Addr::Broker(broker), to, msg);
        }
        acked
    }

    /// Runs a client's handler (a timer, or a response `msg`). Returns what a consumer received.
    fn with_client(&mut self, client: Addr, timer: Option<ClientTimer>, msg: Option<Msg>) -> Vec<(Part, Batch)> {
        let leaders: Vec<Option<BrokerId>> = (0..self.config.partitions).map(|p| self.controller.leader(p)).collect();
        let mut ctx = ClientCtx {
            now: self.now,
            rng: &mut self.rng,
            leaders: &leaders,
            next_content: &mut self.next_content,
            out: Vec::new(),
            timers: Vec::new(),
            observed: Vec::new(),
        };
        match (client, timer, msg) {
            (Addr::Producer(id), Some(timer), None) => self.producers[id].on_timer(timer, &mut ctx),
            (Addr::Producer(id), None, Some(Msg::ProduceResponse { req, result, .. })) => {
                self.producers[id].on_response(req, result, &mut ctx)
            }
            (Addr::Consumer(id), Some(timer), None) => self.consumers[id].on_timer(timer, &mut ctx),
            (Addr::Consumer(id), None, Some(Msg::ConsumerFetchResponse { req, result, .. })) => {
                self.consumers[id].on_response(req, result, &mut ctx)
            }
            (client, timer, msg) => panic!("{client:?} got {timer:?} / {:?}", msg.map(|m| m.summary())),
        }
        let ClientCtx { out, timers, observed, .. } = ctx;
        for (at, timer) in timers {
            let event = match client {
                Addr::Producer(id) => Event::Producer { id, timer },
                Addr::Consumer(id) => Event::Consumer { id, timer },
                _ => unreachable!(),
            };
            self.seq += 1;
            self.queue.push(Scheduled { at, seq: self.seq, event });
        }
        for (to, msg) in out {
            self.send(client, to, msg);
        }
        observed
    }

    fn start_node(&mut self, broker: BrokerId) {
        // The first boot uses the incarnation the bootstrap registered; a restart is a new one.
        let node = &self.nodes[broker as usize - 1];
        let incarnation_id =
            if node.incarnation == 0 { node.incarnation_id } else { uuid::Uuid::from_u128(self.rng.random()) };
        self.with_node(broker, |node, ctx| node.start(incarnation_id, ctx));
    }

    fn start_voter(&mut self, v: BrokerId) {
        let voter = &mut self.voters[v as usize - 1];
        let out = voter.start(&mut self.rng, &mut self.ledger, &mut self.controller);
        let incarnation = voter.incarnation;
        self.schedule(TICK_MS, Event::VoterTick { voter: v, incarnation });
        self.voter_output(v, out);
    }

    /// Sends what a voter call produced, and pushes the metadata end to every broker when the
    /// quorum leader applied more.
    fn voter_output(&mut self, v: BrokerId, out: VoterOut) {
        for m in out.raft {
            let to = node_id(m.to);
            self.send(Addr::Voter(v), Addr::Voter(to), Msg::Raft(Box::new(m)));
        }
        for (waiter, msg) in out.replies {
            // A reply to a broker process that died since it asked is lost with its connection.
            if self.nodes[waiter.broker as usize - 1].incarnation == waiter.broker_incarnation {
                self.send(Addr::Voter(v), Addr::Broker(waiter.broker), msg);
            }
        }
        let voter = &self.voters[v as usize - 1];
        let end = voter.image.applied_index;
        if voter.leads() && end > self.pushed[v as usize - 1] {
            self.pushed[v as usize - 1] = end;
            for b in 1..=self.config.brokers as BrokerId {
                self.send(Addr::Voter(v), Addr::Broker(b), Msg::MetadataEnd { end });
            }
        }
    }

    /// Raft mode: a message reaches voter `v`.
    fn voter_receive(&mut self, v: BrokerId, from: Addr, msg: Msg) {
        let (b, msg) = match (from, msg) {
            (Addr::Voter(_), Msg::Raft(m)) => {
                let out = self.voters[v as usize - 1].step(*m, &mut self.ledger, &mut self.controller);
                return self.voter_output(v, out);
            }
            (Addr::Broker(b), msg) => (b, msg),
            (from, msg) => panic!("voter {v} got {} from {from:?}", msg.summary()),
        };
        let broker_incarnation = self.nodes[b as usize - 1].incarnation;
        let (kind, request) = match &msg {
            Msg::Register { incarnation } => (
                WaitKind::Register,
                ControllerRequest::BrokerRegistration(BrokerRegistrationRequest {
                    broker_id: b,
                    incarnation_id: uuid::Uuid::from_u128(*incarnation),
                    host: format!("10.0.0.{b}"),
                    port: 9092,
                    rack: None,
                    cluster_id: Some("sim".to_string()),
                }),
            ),
            Msg::Heartbeat { broker_epoch, applied_index } => (
                WaitKind::Heartbeat,
                ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
                    broker_id: b,
                    broker_epoch: *broker_epoch,
                    current_metadata_offset: *applied_index,
                    want_fence: false,
                    want_shut_down: false,
                }),
            ),
            Msg::AlterPartition { part, req, broker_epoch, request } => (
                WaitKind::Alter { part: *part, req: *req },
                ControllerRequest::AlterPartition(AlterPartitionRequest {
                    broker_id: b,
                    broker_epoch: *broker_epoch,
                    partitions: vec![self.controller.alter_partition_data(*part, request)],
                }),
            ),
            other => panic!("voter {v} got {} from broker {b}", other.summary()),
        };
        let waiter = Waiter { broker: b, broker_incarnation, kind };
        let voter = &mut self.voters[v as usize - 1];
        let (out, accepted) = voter.request(waiter, request, self.now, &mut self.ledger, &mut self.controller);
        self.voter_output(v, out);
        if let Err(leader) = accepted {
            self.send(Addr::Voter(v), Addr::Broker(b), Msg::NotController { leader, request: Box::new(msg) });
        }
    }

    /// Raft mode: broker `b`'s controller channel got NOT_CONTROLLER from voter `v`. It turns to
    /// the leader named, at once if that is another voter; with no leader named it tries the next
    /// voter at its next request (heartbeats, registration retries and AlterPartition timeouts
    /// resend), so a leaderless quorum is not flooded.
    fn on_not_controller(&mut self, b: BrokerId, v: BrokerId, leader: Option<BrokerId>, request: Msg) {
        match leader {
            Some(l) if l != v => {
                self.believed_controller[b as usize - 1] = l;
                self.send(Addr::Broker(b), Addr::Controller, request);
            }
            Some(_) => self.believed_controller[b as usize - 1] = v,
            None => self.believed_controller[b as usize - 1] = v % VOTERS as BrokerId + 1,
        }
    }

    fn controller_receive(&mut self, from: Addr, msg: Msg) {
        let Addr::Broker(broker) = from else { panic!("the controller got {} from {from:?}", msg.summary()) };
        let committed = match msg {
            Msg::Register { incarnation } => {
                let committed = self.controller.on_register(broker, uuid::Uuid::from_u128(incarnation), self.now);
                // The registration's answer: until the broker sees its own registration it cannot
                // heartbeat, so a lost push must not leave it waiting forever.
                let end = self.controller.end();
                self.send(Addr::Controller, from, Msg::MetadataEnd { end });
                committed
            }
            Msg::Heartbeat { broker_epoch, applied_index } => {
                let committed = self.controller.on_heartbeat(broker, broker_epoch, applied_index, self.now);
                let end = self.controller.end();
                self.send(Addr::Controller, from, Msg::MetadataEnd { end });
                committed
            }
            Msg::AlterPartition { part, req, broker_epoch, request } => {
                let before = self.controller.end();
                let result = self.controller.on_alter_partition(broker, broker_epoch, part, &request);
                self.send(Addr::Controller, from, Msg::AlterPartitionResponse { part, req, result });
                self.controller.end() > before
            }
            other => panic!("the controller got {}", other.summary()),
        };
        if committed {
            self.broadcast_metadata();
        }
    }

    /// With [`FaultMix::PowerOutages`], an outage strikes at the worst moment it can find within
    /// [`OUTAGE_WAIT_MAX_MS`]: while some leader exposes, below its HW, records its own disk has not
    /// made durable. Under the sound rule that never happens and the outage strikes at the limit;
    /// under `LeaderEnd::Written` the window is a few milliseconds, which random timing hits in
    /// about one seed in two hundred.
    fn should_wait_for_exposure(&self, waited_ms: u64) -> bool {
        if self.config.variant.faults != FaultMix::PowerOutages || waited_ms >= OUTAGE_WAIT_MAX_MS {
            return false;
        }
        let exposed = self.nodes.iter().filter(|n| n.up).any(|n| {
            n.replicas
                .iter()
                .zip(&n.disks)
                .any(|(r, d)| matches!(r, Replica::Leader(l) if l.state.hw() > d.durable_end()))
        });
        !exposed
    }

    /// One fault of a random kind, healed or restarted after a random time (0.2-6 s). Weights, in
    /// percent: power outage of several brokers at once 8, crash of one broker (process or power,
    /// per `power_loss_fraction`) 32, one broker cut from all others (a leader half the time) 20,
    /// one broker cut from the controller 15, one direction of one broker pair 10, a random split
    /// of brokers and controller into two sides 15.
    fn inject_fault(&mut self) {
        if !self.voters.is_empty() && self.rng.random_bool(VOTER_FAULT_PROBABILITY) {
            return self.inject_voter_fault();
        }
        let brokers: Vec<BrokerId> = (1..=self.config.brokers as BrokerId).collect();
        let broker = brokers[self.rng.random_range(0..brokers.len())];
        let mut cut = Vec::new();
        let roll = match self.config.variant.faults {
            FaultMix::Everything => self.rng.random_range(0..100),
            FaultMix::PowerOutages => 0,
        };
        match roll {
            // A power outage: several brokers (maybe all) lose power at the same instant. What a
            // single crash cannot show: a record written but not yet durable on every replica.
            0..8 => {
                let everyone = self.config.variant.faults == FaultMix::PowerOutages;
                let victims: Vec<BrokerId> = brokers
                    .iter()
                    .copied()
                    .filter(|&b| self.nodes[b as usize - 1].up && (everyone || self.rng.random_bool(0.7)))
                    .collect();
                for &victim in &victims {
                    self.nodes[victim as usize - 1].crash(true);
                    self.crashes += 1;
                    let down_ms = self.rng.random_range(200..=6000);
                    self.schedule(down_ms, Event::Restart(victim));
                }
                self.trace.record(format!("{} fault: power outage {victims:?}", self.now));
                return;
            }
            8..40 => {
                let up: Vec<BrokerId> = brokers.iter().copied().filter(|&b| self.nodes[b as usize - 1].up).collect();
                if up.is_empty() {
                    return;
                }
                let victim = up[self.rng.random_range(0..up.len())];
                let power = self.rng.random_bool(self.config.power_loss_fraction);
                self.nodes[victim as usize - 1].crash(power);
                self.crashes += 1;
                self.trace.record(format!("{} fault: crash B{victim} power={power}", self.now));
                let down_ms = self.rng.random_range(200..=6000);
                self.schedule(down_ms, Event::Restart(victim));
                return;
            }
            // Isolate a broker from every other broker (a leader, half the time).
            40..60 => {
                let part = self.rng.random_range(0..self.config.partitions);
                let target = match self.controller.leader(part) {
                    Some(leader) if self.rng.random_bool(0.5) => leader,
                    _ => broker,
                };
                for &other in brokers.iter().filter(|&&b| b != target) {
                    cut.push((Addr::Broker(target), Addr::Broker(other)));
                    cut.push((Addr::Broker(other), Addr::Broker(target)));
                }
            }
            // Cut a broker from the controller: it is fenced while alive.
            60..75 => {
                cut.push((Addr::Broker(broker), Addr::Controller));
                cut.push((Addr::Controller, Addr::Broker(broker)));
            }
            // One way between two brokers.
            75..85 => {
                let other = brokers[self.rng.random_range(0..brokers.len())];
                if other != broker {
                    cut.push((Addr::Broker(broker), Addr::Broker(other)));
                }
            }
            // A random split into two sides, the controller on one of them.
            _ => {
                let mut side_a: Vec<Addr> = Vec::new();
                let mut side_b: Vec<Addr> = vec![Addr::Broker(broker)];
                for &b in brokers.iter().filter(|&&b| b != broker) {
                    if self.rng.random_bool(0.5) { &mut side_a } else { &mut side_b }.push(Addr::Broker(b));
                }
                if self.rng.random_bool(0.5) { &mut side_a } else { &mut side_b }.push(Addr::Controller);
                for &a in &side_a {
                    for &b in &side_b {
                        cut.push((a, b));
                        cut.push((b, a));
                    }
                }
            }
        }
        if !self.voters.is_empty() {
            // The controller is the whole quorum: a broker cut from it is cut from every voter.
            let voters: Vec<Addr> = (1..=VOTERS as BrokerId).map(Addr::Voter).collect();
            cut = cut
                .into_iter()
                .flat_map(|(from, to)| match (from, to) {
                    (Addr::Controller, to) => voters.iter().map(|&v| (v, to)).collect(),
                    (from, Addr::Controller) => voters.iter().map(|&v| (from, v)).collect(),
                    link => vec![link],
                })
                .collect();
        }
        self.apply_cut(cut);
    }

    /// Raft mode: a fault of the controller quorum, in percent: a voter crashes (`kill -9`, its
    /// Raft log and hard state survive) 40, a voter is cut from the other voters 35, a voter is cut
    /// from everything 25. Several can overlap and take the quorum away.
    fn inject_voter_fault(&mut self) {
        let v = self.rng.random_range(1..=VOTERS as BrokerId);
        let roll = self.rng.random_range(0..100);
        if roll < 40 {
            if !self.voters[v as usize - 1].up {
                return;
            }
            self.voters[v as usize - 1].crash();
            self.crashes += 1;
            self.trace.record(format!("{} fault: crash V{v}", self.now));
            let down_ms = self.rng.random_range(200..=6000);
            self.schedule(down_ms, Event::VoterRestart(v));
            return;
        }
        let mut others: Vec<Addr> = (1..=VOTERS as BrokerId).filter(|&o| o != v).map(Addr::Voter).collect();
        if roll >= 75 {
            others.extend((1..=self.config.brokers as BrokerId).map(Addr::Broker));
        }
        let cut = others.into_iter().flat_map(|o| [(Addr::Voter(v), o), (o, Addr::Voter(v))]).collect();
        self.apply_cut(cut);
    }

    fn apply_cut(&mut self, mut cut: Vec<(Addr, Addr)>) {
        cut.retain(|&(from, to)| !self.net.is_blocked(from, to));
        if cut.is_empty() {
            return;
        }
        for &(from, to) in &cut {
            self.net.cut(from, to);
        }
        self.partitions_cut += 1;
        self.trace.record(format!("{} fault: cut {cut:?}", self.now));
        let heal_ms = self.rng.random_range(300..=6000);
        self.schedule(heal_ms, Event::Heal(cut));
    }

    /// The end of the fault phase: everything comes back, producers stop starting requests.
    fn settle(&mut self) {
        self.settling_since = Some(self.now);
        self.net.heal_all();
        self.net.config = self.config.net.healed();
        for b in 1..=self.config.brokers as BrokerId {
            if !self.nodes[b as usize - 1].up {
                self.start_node(b);
            }
        }
        for v in 1..=self.voters.len() as BrokerId {
            if !self.voters[v as usize - 1].up {
                self.start_voter(v);
            }
        }
        for p in &mut self.producers {
            p.stopped = true;
        }
        self.schedule(CONVERGENCE_CHECK_MS, Event::ConvergenceCheck);
    }

    fn convergence_check(&mut self) -> Result<(), Violation> {
        let since = self.settling_since.expect("checks start when settling");
        let idle = self.producers.iter().all(|p| p.in_flight.is_empty());
        match converged(&self.nodes, &self.controller, idle) {
            Ok(()) => {
                self.checker.final_check(&self.nodes, &self.controller)?;
                self.done = true;
            }
            Err(reason) if self.now - since > LIVENESS_BOUND_MS => {
                return Err(Violation {
                    invariant: Invariant::Liveness,
                    detail: format!("not converged {LIVENESS_BOUND_MS} ms after the faults stopped: {reason}"),
                });
            }
            Err(_) => self.schedule(CONVERGENCE_CHECK_MS, Event::ConvergenceCheck),
        }
        Ok(())
    }

    /// One event. Returns the acks and consumer observations it produced.
    fn process(&mut self, event: Event) -> Result<Effects, Violation> {
        let mut acked = Vec::new();
        let mut observed = Vec::new();
        match event {
            Event::Deliver(env) => {
                if self.net.is_blocked(env.from, env.to) {
                    return Ok(Effects { acked, observed });
                }
                match env.to {
                    Addr::Controller => self.controller_receive(env.from, env.msg),
                    Addr::Voter(v) => {
                        let voter = &self.voters[v as usize - 1];
                        if voter.up && voter.incarnation == env.to_incarnation {
                            self.voter_receive(v, env.from, env.msg);
                        }
                    }
                    Addr::Broker(b) => {
                        let node = &self.nodes[b as usize - 1];
                        if node.up && node.incarnation == env.to_incarnation {
                            match (env.from, env.msg) {
                                (Addr::Voter(v), Msg::NotController { leader, request }) => {
                                    self.on_not_controller(b, v, leader, *request)
                                }
                                (from, msg) => {
                                    // Brokers see the controller, whichever voter answers.
                                    let from = if let Addr::Voter(_) = from { Addr::Controller } else { from };
                                    acked = self.with_node(b, |node, ctx| node.on_message(from, msg, ctx));
                                }
                            }
                        }
                    }
                    client => observed = self.with_client(client, None, Some(env.msg)),
                }
            }
            Event::Node { broker, incarnation, timer } => {
                let node = &self.nodes[broker as usize - 1];
                if node.up && node.incarnation == incarnation {
                    acked = self.with_node(broker, |node, ctx| node.on_timer(timer, ctx));
                }
            }
            Event::ControllerTick => {
                if self.controller.tick(self.now) {
                    self.broadcast_metadata();
                }
                self.schedule(CONTROLLER_TICK_MS, Event::ControllerTick);
            }
            Event::VoterTick { voter: v, incarnation } => {
                let voter = &mut self.voters[v as usize - 1];
                if voter.up && voter.incarnation == incarnation {
                    let out = voter.tick(self.now, &mut self.rng, &mut self.ledger, &mut self.controller);
                    self.schedule(TICK_MS, Event::VoterTick { voter: v, incarnation });
                    self.voter_output(v, out);
                }
            }
            Event::VoterRestart(v) => {
                if !self.voters[v as usize - 1].up {
                    self.start_voter(v);
                }
            }
            Event::Producer { id, timer } => {
                self.with_client(Addr::Producer(id), Some(timer), None);
            }
            Event::Consumer { id, timer } => observed = self.with_client(Addr::Consumer(id), Some(timer), None),
            Event::Fault { waited_ms } => {
                if self.settling_since.is_some() {
                } else if self.should_wait_for_exposure(waited_ms) {
                    let step = self.rng.random_range(1..=OUTAGE_WAIT_STEP_MS);
                    self.schedule(step, Event::Fault { waited_ms: waited_ms + step });
                } else {
                    self.inject_fault();
                    let delay = self.fault_delay();
                    self.schedule(delay, Event::Fault { waited_ms: 0 });
                }
            }
            Event::Restart(b) => {
                if !self.nodes[b as usize - 1].up {
                    self.start_node(b);
                }
            }
            Event::Heal(links) => {
                for (from, to) in links {
                    self.net.heal(from, to);
                }
            }
            Event::Settle => self.settle(),
            Event::ConvergenceCheck => self.convergence_check()?,
        }
        if let Some(violation) = self.ledger.violation.take() {
            return Err(violation);
        }
        Ok(Effects { acked, observed })
    }

    fn failure(&self, violation: Violation) -> Failure {
        Failure {
            seed: self.seed,
            config: self.config,
            step: self.steps,
            time_ms: self.now,
            violation,
            state: self.nodes.iter().map(Node::describe).chain(self.voters.iter().map(Voter::describe)).collect(),
            trace_tail: self.trace.tail.iter().cloned().collect(),
        }
    }

    /// Runs the seed to the end: success after convergence and the final checks, or the first
    /// violation.
    pub fn run(mut self) -> Result<Outcome, Box<Failure>> {
        while !self.done {
            let Some(next) = self.queue.pop() else {
                let detail = "no event left to run".to_string();
                return Err(Box::new(self.failure(Violation { invariant: Invariant::Liveness, detail })));
            };
            self.now = next.at;
            self.steps += 1;
            if self.steps > MAX_EVENTS {
                let detail = format!("{MAX_EVENTS} events without converging");
                return Err(Box::new(self.failure(Violation { invariant: Invariant::Liveness, detail })));
            }
            self.trace.record(format!("{} {}", self.now, describe(&next.event)));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(next.event)));
            let Effects { acked, observed } = match result {
                Ok(Ok(effects)) => effects,
                Ok(Err(violation)) => return Err(Box::new(self.failure(violation))),
                Err(panic) => {
                    let detail = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "non-string panic".to_string());
                    return Err(Box::new(self.failure(Violation { invariant: Invariant::Panic, detail })));
                }
            };
            let checked = self.checker.after_event(&self.nodes, &self.controller, &acked, &observed).and_then(|()| {
                if self.steps.is_multiple_of(FULL_CHECK_EVERY) {
                    self.checker.full_check(&self.nodes, &self.controller)
                } else {
                    Ok(())
                }
            });
            if let Err(violation) = checked {
                return Err(Box::new(self.failure(violation)));
            }
        }
        let stats = Stats {
            seeds: 1,
            events: self.steps,
            simulated_ms: self.now,
            crashes: self.crashes,
            cuts: self.partitions_cut,
            leader_elections: (0..self.config.partitions)
                .map(|p| self.controller.assignment(p).leader_epoch as u64)
                .sum(),
            produces_ok: self.producers.iter().map(|p| p.acked).sum(),
            produces_failed: self.producers.iter().map(|p| p.failed).sum(),
            acked_records: self.checker.acked_records,
            observed_records: self.checker.observed_records,
            committed_records: (0..self.config.partitions).map(|p| self.checker.committed_len(p) as u64).sum(),
            metadata_entries: self.controller.end(),
            controller_activations: self.ledger.activations,
        };
        Ok(Outcome { trace_hash: self.trace.hash, stats })
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Deliver(env) => format!("{:?}->{:?} {}", env.from, env.to, env.msg.summary()),
        Event::Node { broker, timer, .. } => format!("B{broker} {timer:?}"),
        other => format!("{other:?}"),
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "SIM_SEED={:#x} step={} time={}ms invariant={:?}: {}",
            self.seed, self.step, self.time_ms, self.violation.invariant, self.violation.detail
        )?;
        writeln!(f, "config: {:?}", self.config)?;
        if self.config.variant == Variant::SOUND {
            writeln!(f, "replay: SIM_SEED={:#x} cargo test -p spindle-replication sim_ -- --nocapture", self.seed)?;
        } else if self.config.variant == Variant::RAFT {
            writeln!(f, "replay: SIM_SEED={:#x} cargo test -p spindle-replication sim_raft -- --nocapture", self.seed)?;
        } else {
            writeln!(f, "replay: World::new({:#x}, {:?}).run() (a deliberately broken variant)", self.seed, {
                self.config.variant
            })?;
        }
        writeln!(f, "brokers:")?;
        for line in &self.state {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "last {} events:", self.trace_tail.len())?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}
