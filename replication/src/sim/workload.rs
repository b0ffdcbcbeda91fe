//! Clients: producers sending acks=all (and some acks=1) appends to whoever they believe leads, and
//! one consumer per partition reading below the HW from the leader it believes in.
//!
//! Clients learn leaders from the oracle's image, instantly but only when a request fails or times
//! out, so they keep talking to a deposed leader until it refuses them: the stale-leader cases are
//! exercised. A failed produce is not retried with the same records: retries only duplicate
//! records (no idempotence yet, design 19), and fresh contents keep every batch distinguishable.
//! Acknowledgements are recorded by the leader when it answers (`Ctx::acked` in `node.rs`), not
//! when the answer arrives, so a lost answer still counts as a promise.

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::Rng;

use super::disk::Batch;
use super::net::{Addr, Msg, Part};
use super::node::PRODUCE_TIMEOUT_MS;
use crate::types::{BrokerId, Offset};

/// A client gives up on a request after this long: longer than the leader's produce timeout, so a
/// produce that the leader will still answer is not abandoned early.
pub const CLIENT_TIMEOUT_MS: u64 = PRODUCE_TIMEOUT_MS + 2000;
/// Produce requests a producer keeps in flight (Kafka's `max.in.flight.requests.per.connection`
/// is 5): enough that acks=all waits overlap and the leader has several waiters at once.
pub const PRODUCER_IN_FLIGHT_MAX: usize = 4;

#[derive(Clone, Copy, Debug)]
pub struct WorkloadConfig {
    pub producers: usize,
    pub acks_all_probability: f64,
    /// A producer's pause between requests, uniform in 1..=this.
    pub produce_pause_ms_max: u64,
    pub consume_pause_ms_max: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    Tick,
    Timeout(u64),
}

pub struct ClientCtx<'a> {
    pub now: u64,
    pub rng: &'a mut SmallRng,
    /// The oracle's current leaders, by partition.
    pub leaders: &'a [Option<BrokerId>],
    pub next_content: &'a mut u64,
    pub out: Vec<(Addr, Msg)>,
    pub timers: Vec<(u64, ClientTimer)>,
    /// Records a consumer received just now.
    pub observed: Vec<(Part, Batch)>,
}

pub struct Producer {
    leaders: Vec<Option<BrokerId>>,
    /// Requests in flight.
    pub in_flight: BTreeSet<u64>,
    next_req: u64,
    /// No new requests (the faults are over and the run is settling).
    pub stopped: bool,
    pub acked: u64,
    pub failed: u64,
    config: WorkloadConfig,
}

impl Producer {
    pub fn new(leaders: &[Option<BrokerId>], config: WorkloadConfig) -> Producer {
        Producer {
            leaders: leaders.to_vec(),
            in_flight: BTreeSet::new(),
            next_req: 0,
            stopped: false,
            acked: 0,
            failed: 0,
            config,
        }
    }

    pub fn on_timer(&mut self, timer: ClientTimer, ctx: &mut ClientCtx) {
        match timer {
            ClientTimer::Tick => {
                if self.stopped {
                    return;
                }
                if self.in_flight.len() < PRODUCER_IN_FLIGHT_MAX {
                    self.send(ctx);
                }
                let pause = ctx.rng.random_range(1..=self.config.produce_pause_ms_max);
                ctx.timers.push((ctx.now + pause, ClientTimer::Tick));
            }
            ClientTimer::Timeout(req) => {
                if self.in_flight.remove(&req) {
                    self.failed += 1;
                    self.leaders = ctx.leaders.to_vec();
                }
            }
        }
    }

    fn send(&mut self, ctx: &mut ClientCtx) {
        let part = ctx.rng.random_range(0..self.leaders.len());
        let Some(leader) = self.leaders[part] else {
            self.leaders = ctx.leaders.to_vec();
            return;
        };
        let count = ctx.rng.random_range(1..=3);
        let contents = (0..count)
            .map(|_| {
                *ctx.next_content += 1;
                *ctx.next_content
            })
            .collect();
        let acks_all = ctx.rng.random_bool(self.config.acks_all_probability);
        self.next_req += 1;
        let req = self.next_req;
        self.in_flight.insert(req);
        ctx.out.push((Addr::Broker(leader), Msg::Produce { part, req, acks_all, contents }));
        ctx.timers.push((ctx.now + CLIENT_TIMEOUT_MS, ClientTimer::Timeout(req)));
    }

    pub fn on_response(&mut self, req: u64, result: Result<Offset, i16>, ctx: &mut ClientCtx) {
        if !self.in_flight.remove(&req) {
            return;
        }
        match result {
            Ok(_) => self.acked += 1,
            Err(_) => {
                self.failed += 1;
                self.leaders = ctx.leaders.to_vec();
            }
        }
    }
}

pub struct Consumer {
    pub part: Part,
    leader: Option<BrokerId>,
    pub position: Offset,
    in_flight: Option<u64>,
    next_req: u64,
    config: WorkloadConfig,
}

impl Consumer {
    pub fn new(part: Part, leader: Option<BrokerId>, config: WorkloadConfig) -> Consumer {
        Consumer { part, leader, position: 0, in_flight: None, next_req: 0, config }
    }

    pub fn on_timer(&mut self, timer: ClientTimer, ctx: &mut ClientCtx) {
        match timer {
            ClientTimer::Tick => {
                if self.in_flight.is_none() {
                    self.leader = self.leader.or(ctx.leaders[self.part]);
                    if let Some(leader) = self.leader {
                        self.next_req += 1;
                        let req = self.next_req;
                        self.in_flight = Some(req);
                        let msg = Msg::ConsumerFetch { part: self.part, req, offset: self.position };
                        ctx.out.push((Addr::Broker(leader), msg));
                        ctx.timers.push((ctx.now + CLIENT_TIMEOUT_MS, ClientTimer::Timeout(req)));
                    }
                }
                let pause = ctx.rng.random_range(1..=self.config.consume_pause_ms_max);
                ctx.timers.push((ctx.now + pause, ClientTimer::Tick));
            }
            ClientTimer::Timeout(req) => {
                if self.in_flight == Some(req) {
                    self.in_flight = None;
                    self.leader = ctx.leaders[self.part];
                }
            }
        }
    }

    pub fn on_response(&mut self, req: u64, result: Result<Vec<Batch>, i16>, ctx: &mut ClientCtx) {
        if self.in_flight != Some(req) {
            return;
        }
        self.in_flight = None;
        match result {
            Ok(records) => {
                for b in records {
                    // The leader reads from the asked offset: a gap is a driver bug.
                    assert_eq!(b.offset, self.position, "consumer of partition {} got a gap", self.part);
                    self.position += 1;
                    ctx.observed.push((self.part, b));
                }
            }
            Err(_) => self.leader = ctx.leaders[self.part],
        }
    }
}
