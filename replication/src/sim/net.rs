//! The simulated network: who can talk to whom, how long a message takes, which ones are lost.
//!
//! Messages are Rust values mirroring the wire (Fetch, OffsetForLeaderEpoch, ListOffsets,
//! AlterPartition, heartbeats, registration, produce, consumer fetch), never Kafka bytes: codecs are
//! tested elsewhere. Delivery follows what a TCP connection gives a request/response protocol,
//! minus ordering:
//! - a message is lost if its link is cut when it is sent or when it would arrive, or by a random
//!   drop (a connection reset: the requester's timeout fires, as in Kafka);
//! - a message to a broker that crashed or restarted since it was sent is lost (its connection
//!   died with the process); a message *from* a process that died after sending still arrives;
//! - delays are random with a heavy tail, so messages overtake each other. Kafka orders responses
//!   per connection; the rules must not depend on it (they match responses to requests), and the
//!   reordering finds more interleavings. Duplicates are not modelled (TCP does not duplicate).

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::Rng;

use super::disk::Batch;
use crate::partition_replica::LeaderOffsetsQuery;
use crate::partition_replica::{AlterIsr, EpochEndOffset, EpochQuery, FetchQuery, FetchResponse, LeaderOffsets};
use crate::types::{BrokerEpoch, BrokerId, Offset};

/// Network endpoints. Only broker and controller links can be cut: clients stand for the many
/// producers and consumers that reach some broker anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// The oracle controller; in the Raft mode, whichever voter the sending broker believes is
    /// the active controller (the world resolves it when sending).
    Controller,
    /// A controller quorum voter (Raft mode only).
    Voter(BrokerId),
    Broker(BrokerId),
    Producer(usize),
    Consumer(usize),
}

impl Addr {
    fn cuttable(self) -> bool {
        matches!(self, Addr::Controller | Addr::Voter(_) | Addr::Broker(_))
    }
}

/// A partition of the simulated topic, by index.
pub type Part = usize;

#[derive(Clone, Debug)]
pub enum Msg {
    // Follower -> leader and back (design 6).
    EpochRequest {
        part: Part,
        req: u64,
        query: EpochQuery,
    },
    EpochResponse {
        part: Part,
        req: u64,
        result: Result<EpochEndOffset, i16>,
    },
    FetchRequest {
        part: Part,
        req: u64,
        broker_epoch: BrokerEpoch,
        query: FetchQuery,
    },
    FetchResponse {
        part: Part,
        req: u64,
        response: FetchResponse,
        records: Vec<Batch>,
    },
    OffsetsRequest {
        part: Part,
        req: u64,
        query: LeaderOffsetsQuery,
    },
    OffsetsResponse {
        part: Part,
        req: u64,
        result: Result<LeaderOffsets, i16>,
    },
    // Broker <-> controller (design 5).
    Register {
        incarnation: u128,
    },
    Heartbeat {
        broker_epoch: BrokerEpoch,
        applied_index: u64,
    },
    /// Heartbeat answers and pushes after each commit: "the metadata log ends at `end`". The
    /// entries themselves are read from the controller's log, which never changes below its end.
    MetadataEnd {
        end: u64,
    },
    AlterPartition {
        part: Part,
        req: u64,
        broker_epoch: BrokerEpoch,
        request: AlterIsr,
    },
    AlterPartitionResponse {
        part: Part,
        req: u64,
        result: Result<(), i16>,
    },
    /// Voter to voter (Raft mode).
    Raft(Box<raft::eraftpb::Message>),
    /// A voter that is not the active controller refuses `request` (NOT_CONTROLLER), naming the
    /// quorum leader it knows of (Raft mode).
    NotController {
        leader: Option<BrokerId>,
        request: Box<Msg>,
    },
    // Clients.
    Produce {
        part: Part,
        req: u64,
        acks_all: bool,
        contents: Vec<u64>,
    },
    ProduceResponse {
        part: Part,
        req: u64,
        result: Result<Offset, i16>,
    },
    ConsumerFetch {
        part: Part,
        req: u64,
        offset: Offset,
    },
    ConsumerFetchResponse {
        part: Part,
        req: u64,
        result: Result<Vec<Batch>, i16>,
    },
}

impl Msg {
    /// A short, deterministic description for the trace.
    pub fn summary(&self) -> String {
        match self {
            Msg::EpochRequest { part, req, query } => {
                format!("EpochReq p{part} #{req} cur={} ask={}", query.current_leader_epoch, query.leader_epoch)
            }
            Msg::EpochResponse { part, req, result } => format!("EpochResp p{part} #{req} {result:?}"),
            Msg::FetchRequest { part, req, query, .. } => format!(
                "FetchReq p{part} #{req} off={} last={:?} cur={}",
                query.fetch_offset, query.last_fetched_epoch, query.current_leader_epoch
            ),
            Msg::FetchResponse { part, req, response, records } => format!(
                "FetchResp p{part} #{req} err={} hw={} div={:?} n={}",
                response.error,
                response.high_watermark,
                response.diverging_epoch,
                records.len()
            ),
            Msg::OffsetsRequest { part, req, .. } => format!("OffsetsReq p{part} #{req}"),
            Msg::OffsetsResponse { part, req, result } => format!("OffsetsResp p{part} #{req} {result:?}"),
            Msg::Register { .. } => "Register".to_string(),
            Msg::Heartbeat { broker_epoch, applied_index } => format!("Heartbeat e={broker_epoch} i={applied_index}"),
            Msg::MetadataEnd { end } => format!("MetadataEnd {end}"),
            Msg::AlterPartition { part, req, request, .. } => format!(
                "AlterPartition p{part} #{req} le={} pe={} isr={:?}",
                request.leader_epoch,
                request.partition_epoch,
                request.new_isr.iter().map(|m| m.broker).collect::<Vec<_>>()
            ),
            Msg::AlterPartitionResponse { part, req, result } => {
                format!("AlterPartitionResp p{part} #{req} {result:?}")
            }
            Msg::Raft(m) => {
                format!("Raft {:?} t={} i={} c={} n={}", m.msg_type, m.term, m.index, m.commit, m.entries.len())
            }
            Msg::NotController { leader, request } => format!("NotController leader={leader:?} {}", request.summary()),
            Msg::Produce { part, req, acks_all, contents } => {
                format!("Produce p{part} #{req} all={acks_all} n={}", contents.len())
            }
            Msg::ProduceResponse { part, req, result } => format!("ProduceResp p{part} #{req} {result:?}"),
            Msg::ConsumerFetch { part, req, offset } => format!("ConsumerFetch p{part} #{req} off={offset}"),
            Msg::ConsumerFetchResponse { part, req, result } => {
                format!("ConsumerFetchResp p{part} #{req} {:?}", result.as_ref().map(Vec::len))
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Envelope {
    pub from: Addr,
    pub to: Addr,
    /// The destination's incarnation when sent: a restart in between loses the message.
    pub to_incarnation: u64,
    pub msg: Msg,
}

/// Per-seed network behaviour.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    pub drop_probability: f64,
    /// Typical one-way delay, ms (uniform 1..=this).
    pub delay_ms_max: u64,
    /// Probability of a slow message, and how slow it can be.
    pub tail_probability: f64,
    pub tail_ms_max: u64,
}

impl NetConfig {
    /// After the last fault: no drops, no tail (delays still reorder).
    pub fn healed(self) -> NetConfig {
        NetConfig { drop_probability: 0.0, tail_probability: 0.0, ..self }
    }
}

#[derive(Clone, Debug)]
pub struct Net {
    pub config: NetConfig,
    /// Cut directed links (from, to).
    blocked: BTreeSet<(Addr, Addr)>,
}

impl Net {
    pub fn new(config: NetConfig) -> Net {
        Net { config, blocked: BTreeSet::new() }
    }

    pub fn is_blocked(&self, from: Addr, to: Addr) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn cut(&mut self, from: Addr, to: Addr) {
        assert!(from.cuttable() && to.cuttable());
        self.blocked.insert((from, to));
    }

    pub fn heal(&mut self, from: Addr, to: Addr) {
        self.blocked.remove(&(from, to));
    }

    pub fn heal_all(&mut self) {
        self.blocked.clear();
    }

    /// The delivery delay of a message sent now, or `None` if it is lost.
    pub fn transit(&self, rng: &mut SmallRng, from: Addr, to: Addr) -> Option<u64> {
        if self.is_blocked(from, to) {
            return None;
        }
        let lossy = from.cuttable() && to.cuttable();
        if lossy && self.config.drop_probability > 0.0 && rng.random_bool(self.config.drop_probability) {
            return None;
        }
        let mut delay = rng.random_range(1..=self.config.delay_ms_max);
        if self.config.tail_probability > 0.0 && rng.random_bool(self.config.tail_probability) {
            delay += rng.random_range(1..=self.config.tail_ms_max);
        }
        Some(delay)
    }
}
