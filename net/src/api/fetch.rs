//! Fetch (consumers; sessionless). Reads each partition on its owner core up
//! to the high watermark, long-polls with `max_wait_ms` until `min_bytes`
//! arrive, and honours partition and response `max_bytes` (the first
//! non-empty partition always gets at least one whole batch, as KIP-74).
//!
//! Each batch goes out as Kafka's 61-byte header, rebuilt from ours, plus the
//! stored records as a slice: the response is a list of segments
//! ([`super::fetch_encode`]) that the connection writes with one `sendmsg`,
//! so record bytes are never copied on their way to the socket.

use super::fetch_encode::{self, PartitionOut, TopicOut};
use super::{ApiSpec, RequestContext};
use crate::ops::{self, ReadOutcome, LEADER_EPOCH};
use crate::shard::Shard;
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, FetchRequest};
use kafka_protocol::ResponseError;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Fetch, min: 4, max: 16 };

/// Longest long-poll we honour, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

struct Wanted {
    topic: Option<String>,
    topic_id: uuid::Uuid,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    log_start_offset: i64,
}

/// A follower's fetch: its broker id and registration epoch (-1: not sent).
#[derive(Clone, Copy)]
struct FromReplica {
    id: i32,
    broker_epoch: i64,
}

async fn read_all(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    response_max: usize,
    replica: Option<FromReplica>,
    first_pass: bool,
) -> Vec<ReadOutcome> {
    let mut outs = Vec::with_capacity(wanted.len());
    let mut budget = response_max;
    let mut any = false;
    for w in wanted {
        let Some(topic) = &w.topic else {
            outs.push(ReadOutcome::failed(ResponseError::UnknownTopicId));
            continue;
        };
        // Kafka's rule (KIP-74): until something is in the response, a
        // partition returns at least one whole batch even past its limits;
        // after that, only whole batches that fit.
        let limit = w.max_bytes.min(budget);
        let mut o = match replica {
            None => ops::read(shard, topic, w.partition, w.offset, limit.max(1), w.current_leader_epoch).await,
            Some(r) => {
                let f = ops::ReplicaFetch {
                    replica_id: r.id,
                    broker_epoch: r.broker_epoch,
                    current_leader_epoch: w.current_leader_epoch,
                    fetch_offset: w.offset,
                    last_fetched_epoch: w.last_fetched_epoch,
                    log_start_offset: w.log_start_offset,
                    max_bytes: limit.max(1),
                };
                ops::replica_read(shard, topic, w.partition, f, first_pass).await
            }
        };
        if any {
            let mut used = 0;
            o.batches.retain(|b| {
                used += b.kafka_len();
                used <= limit
            });
        }
        let n = o.bytes();
        any |= n > 0;
        budget = budget.saturating_sub(n);
        outs.push(o);
    }
    outs
}

/// The response as frame segments (see [`fetch_encode`]).
pub async fn handle(shard: &Rc<Shard>, req: FetchRequest, ctx: &RequestContext) -> (Vec<Bytes>, bool) {
    let snap = shard.snapshot();
    let by_id = ctx.version >= 13;
    let mut wanted = Vec::new();
    for t in &req.topics {
        let (name, id) = if by_id {
            (snap.topic_by_id(t.topic_id).map(|m| m.name.clone()), t.topic_id)
        } else {
            let n = t.topic.0.to_string();
            let id = snap.topics.get(&n).map(|m| m.uuid()).unwrap_or_default();
            (Some(n), id)
        };
        for p in &t.partitions {
            wanted.push(Wanted {
                topic: name.clone(),
                topic_id: id,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: if ctx.version >= 9 { p.current_leader_epoch } else { -1 },
                last_fetched_epoch: if ctx.version >= 12 { p.last_fetched_epoch } else { -1 },
                log_start_offset: p.log_start_offset,
            });
        }
    }
    // v15+ name the follower in `replica_state`, older versions in `replica_id`.
    let mut replica = if ctx.version >= 15 {
        (req.replica_state.replica_id.0 >= 0).then_some(FromReplica {
            id: req.replica_state.replica_id.0,
            broker_epoch: req.replica_state.replica_epoch,
        })
    } else {
        (req.replica_id.0 >= 0).then_some(FromReplica { id: req.replica_id.0, broker_epoch: -1 })
    };
    if replica.is_some() && !shard.config.is_cluster() {
        // A single node has no followers.
        replica = None;
    }
    let response_max = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let mut outs = read_all(shard, &wanted, response_max, replica, true).await;
    loop {
        let total: usize = outs.iter().map(ReadOutcome::bytes).sum();
        let errors = outs.iter().any(|o| o.error != 0 || o.diverging_epoch.is_some());
        let now = Instant::now();
        if total >= min_bytes.max(1) || errors || now >= deadline || wanted.is_empty() || shard.is_stopping() {
            break;
        }
        // Long poll: wake when any partition gets data past what we asked
        // for, at the deadline, or when the broker starts shutting down (a
        // parked Fetch must not hold the shutdown drain up to its deadline).
        let waits: Vec<_> = wanted
            .iter()
            .filter_map(|w| {
                w.topic.as_ref().map(|t| {
                    Box::pin(ops::wait_for_data(shard, t, w.partition, w.offset, deadline - now, replica.is_some()))
                })
            })
            .collect();
        if waits.is_empty() {
            break;
        }
        let stopping = shard.stopping();
        futures::pin_mut!(stopping);
        futures::future::select(futures::future::select_all(waits), stopping).await;
        outs = read_all(shard, &wanted, response_max, replica, false).await;
    }
    let mut topics: Vec<TopicOut> = Vec::new();
    let mut any_error = false;
    let mut bytes_out = 0u64;
    for (w, o) in wanted.iter().zip(outs) {
        any_error |= o.error != 0;
        bytes_out += o.bytes() as u64;
        let part = PartitionOut {
            partition: w.partition,
            error: o.error,
            high_watermark: o.high_watermark,
            log_start_offset: o.log_start_offset,
            batches: o.batches,
            diverging_epoch: o.diverging_epoch,
            current_leader: o.current_leader,
        };
        let name = w.topic.clone().unwrap_or_default();
        match topics.iter_mut().find(|t| if by_id { t.id == w.topic_id } else { t.name == name }) {
            Some(t) => t.partitions.push(part),
            None => topics.push(TopicOut { name, id: w.topic_id, partitions: vec![part] }),
        }
    }
    shard.metrics.record_fetch(bytes_out);
    let segments = fetch_encode::encode(ctx.version, ctx.correlation_id, shard.config.node_id, LEADER_EPOCH, &topics);
    (segments, any_error)
}
