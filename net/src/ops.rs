//! Partition operations routed to the owning core. Each takes plain `Send`
//! arguments, runs on the owner through [`Shard::invoke_on`], and returns a
//! `Send` outcome; record bytes cross cores as `Bytes`, never copied.

use crate::cluster::replica::{EngineView, Replica, Role};
use crate::errors;
use crate::metrics::PartitionFigures;
use crate::shard::{now_ms, Shard};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use spindle_engine::{AppendOptions, BatchView, Durability};
use spindle_replication::partition_replica::{
    answer_epoch_query, check_fetch_position, AppendRefused, FetchPosition, FollowerFetch,
};
use std::rc::Rc;
use std::time::Duration;

/// The leader epoch of every partition on a single node.
pub const LEADER_EPOCH: i32 = 0;

/// Owner core of a partition, or the error for a client.
pub fn owner(shard: &Shard, topic: &str, partition: i32) -> Result<usize, ResponseError> {
    let snap = shard.snapshot();
    let t = snap.topics.get(topic).ok_or(ResponseError::UnknownTopicOrPartition)?;
    if partition < 0 || partition >= t.partitions() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    Ok(t.placement[partition as usize])
}

#[derive(Debug)]
pub struct ProduceOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub base_offset: i64,
    pub log_start_offset: i64,
    pub records: u64,
}

impl ProduceOutcome {
    /// A partition whose records were not appended.
    pub fn failed(e: ResponseError, message: Option<String>) -> Self {
        ProduceOutcome { error: e.code(), message, base_offset: -1, log_start_offset: -1, records: 0 }
    }
}

/// Appends a partition's records on its owner core. `acks_all` (with its
/// timeout) makes a cluster leader wait until the ISR has them.
///
/// Produces to one partition whose futures are first polled in some order
/// append in that order: the place in the partition's line is taken as
/// the job starts on the owner, in submission order, and kept until
/// [`spindle_engine::Log::append`] has taken the log's own place.
pub async fn produce(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    records: Bytes,
    durability: Durability,
    acks_all: Option<Duration>,
) -> ProduceOutcome {
    let fail = ProduceOutcome::failed;
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return fail(e, None),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| {
            let turn = s.produce_turn(&topic, partition);
            async move {
                turn.wait().await;
                let log = match s.partition(&topic, partition).await {
                    Ok(l) => l,
                    Err(e) => return fail(errors::partition_error(&e), None),
                };
                let bytes = records.len() as u64;
                let replica = match leader_for_produce(&s, &topic, partition, acks_all.is_some()) {
                    Ok(r) => r,
                    Err(e) => return fail(e, None),
                };
                let leader_epoch = replica.as_ref().map_or(Some(LEADER_EPOCH), |r| r.leading_epoch());
                let Some(leader_epoch) = leader_epoch else {
                    return fail(ResponseError::NotLeaderOrFollower, None);
                };
                let opts = AppendOptions { leader_epoch, now_ms: now_ms(), durability };
                let appending = log.append(records, opts);
                drop(turn);
                match appending.await {
                    Ok(info) => {
                        let end = info.last_offset + 1;
                        if durability == Durability::Journaled && log.offsets().written < end {
                            // Acknowledged from the journal: the write still
                            // has to happen, driven by a task of its own.
                            let log = log.clone();
                            glommio::spawn_local(async move {
                                let _ = log.wait_written(end).await;
                            })
                            .detach();
                        }
                        let n = (info.last_offset - info.base_offset + 1) as u64;
                        s.metrics.record_produce(n, bytes);
                        if let Some(rep) = replica {
                            if let Err(e) = replicate(&s, &rep, info.last_offset + 1, durability, acks_all).await {
                                return ProduceOutcome {
                                    error: e.code(),
                                    message: None,
                                    base_offset: info.base_offset,
                                    log_start_offset: info.log_start_offset,
                                    records: 0,
                                };
                            }
                        }
                        ProduceOutcome {
                            error: errors::NONE,
                            message: None,
                            base_offset: info.base_offset,
                            log_start_offset: info.log_start_offset,
                            records: n,
                        }
                    }
                    Err(e) => {
                        tracing::debug!(topic, partition, error = %e, "produce rejected");
                        fail(errors::append_error(&e), Some(e.to_string()))
                    }
                }
            }
        })
        .await
}

/// Cluster mode: the replica a produce goes to, if this broker leads it
/// (`None` on a single node). acks=all is refused before anything is
/// written when the ISR is below `min.insync.replicas`.
fn leader_for_produce(
    s: &Shard,
    topic: &str,
    partition: i32,
    acks_all: bool,
) -> Result<Option<Rc<Replica>>, ResponseError> {
    if !s.config.is_cluster() {
        return Ok(None);
    }
    let rep = s.replica(topic, partition).ok_or(ResponseError::NotLeaderOrFollower)?;
    match &*rep.role.borrow() {
        Role::Leader(l) if !l.is_resigned() => {
            if acks_all {
                l.check_acks_all_append().map_err(|e| match e {
                    AppendRefused::NotLeader => ResponseError::NotLeaderOrFollower,
                    AppendRefused::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
                })?;
            }
        }
        _ => return Err(ResponseError::NotLeaderOrFollower),
    }
    Ok(Some(rep))
}

/// After a leader's append: moves its acknowledgeable end, and for acks=all
/// waits until the ISR has the records.
async fn replicate(
    s: &Rc<Shard>,
    rep: &Rc<Replica>,
    end: i64,
    durability: Durability,
    acks_all: Option<Duration>,
) -> Result<(), ResponseError> {
    let Some(view) = s.snapshot().cluster.clone() else { return Ok(()) };
    let fsync = s.config.acks_all_fsync;
    rep.advance_local_end(&view, fsync);
    if fsync && durability == Durability::Written {
        // With acks.all.fsync the HW counts the durable end (design 20):
        // an acks=0/1 append must still get synced, or consumers would
        // not see it until something else syncs the log.
        let (rep, view) = (rep.clone(), view.clone());
        glommio::spawn_local(async move {
            if rep.log.wait_durable(end).await.is_ok() {
                rep.advance_local_end(&view, true);
            }
        })
        .detach();
    }
    match acks_all {
        Some(timeout) => rep.wait_acked(end, timeout).await,
        None => Ok(()),
    }
}

#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Vec<BatchView>,
    /// Replica fetches: the follower's log diverged (epoch, end offset).
    pub diverging_epoch: Option<(i32, i64)>,
    /// The partition's leader and leader epoch, for the response.
    pub current_leader: Option<(i32, i32)>,
}

impl ReadOutcome {
    /// A partition that could not be read at all.
    pub fn failed(e: ResponseError) -> Self {
        ReadOutcome { error: e.code(), high_watermark: -1, log_start_offset: -1, ..Default::default() }
    }

    /// A read's batches, or its error, with the partition's offsets.
    fn of(
        read: Result<Vec<BatchView>, spindle_engine::ReadError>,
        high_watermark: i64,
        log_start_offset: i64,
        current_leader: Option<(i32, i32)>,
    ) -> Self {
        let (error, batches) = match read {
            Ok(batches) => (errors::NONE, batches),
            Err(e) => (errors::read_error(&e).code(), Vec::new()),
        };
        ReadOutcome { error, high_watermark, log_start_offset, batches, current_leader, diverging_epoch: None }
    }

    pub fn bytes(&self) -> usize {
        self.batches.iter().map(BatchView::kafka_len).sum()
    }
}

/// What a consumer may read of a partition: up to the high watermark, on
/// the leader only in cluster mode. With the leader and its epoch, for the
/// response (cluster mode).
#[allow(clippy::type_complexity)]
fn visible_end(
    s: &Shard,
    topic: &str,
    partition: i32,
    log: &crate::shard::PartitionLog,
    current_leader_epoch: i32,
) -> Result<(i64, Option<(i32, i32)>), (ResponseError, Option<(i32, i32)>)> {
    if !s.config.is_cluster() {
        return Ok((log.high_watermark(), None));
    }
    let Some(rep) = s.replica(topic, partition) else {
        return Err((ResponseError::NotLeaderOrFollower, None));
    };
    let leader = Some(rep.current_leader());
    rep.check_epoch(current_leader_epoch).map_err(|e| (e, leader))?;
    rep.leader_hw().map(|hw| (hw, leader)).map_err(|e| (e, leader))
}

/// A consumer's read of one partition, up to the high watermark.
/// `current_leader_epoch` -1: not sent.
pub async fn read(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
) -> ReadOutcome {
    let fail = ReadOutcome::failed;
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let topic = topic.to_string();
    shard
        .query_on(owner, move |s| async move {
            let log = match s.partition(&topic, partition).await {
                Ok(l) => l,
                Err(e) => return fail(errors::partition_error(&e)),
            };
            let (hw, current_leader) = match visible_end(&s, &topic, partition, &log, current_leader_epoch) {
                Ok(v) => v,
                Err((e, leader)) => return ReadOutcome { current_leader: leader, ..fail(e) },
            };
            let start = log.log_start_offset();
            let read = log.read(offset, max_bytes, hw).await;
            ReadOutcome::of(read, hw, start, current_leader)
        })
        .await
}

/// Waits on the owner until the partition has data beyond `offset`, or
/// `timeout` passes: written data for a `replica` fetch, data below the
/// high watermark for a consumer.
pub async fn wait_for_data(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
    replica: bool,
) {
    let Ok(owner) = owner(shard, topic, partition) else { return };
    let topic = topic.to_string();
    shard
        .query_on(owner, move |s| async move {
            if let (false, Some(rep)) = (replica, s.replica(&topic, partition)) {
                // Cluster mode, a consumer: wake when the HW moves.
                return rep.wait_hw_beyond(offset, timeout).await;
            }
            // The timeout covers opening the log too (the open goes on
            // without us): a fetch never waits past its deadline.
            let wait = async {
                if let Ok(log) = s.partition(&topic, partition).await {
                    log.wait_for_data_beyond(offset).await;
                }
            };
            let timer = glommio::timer::sleep(timeout);
            futures::pin_mut!(wait);
            futures::pin_mut!(timer);
            futures::future::select(wait, timer).await;
        })
        .await
}

/// ListOffsets for one partition: `(error, timestamp, offset)`. A
/// `replica` (a follower out of range) asks for the leader's log end as
/// "latest", not the high watermark.
pub async fn list_offset(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    timestamp: i64,
    current_leader_epoch: i32,
    replica: bool,
) -> (i16, i64, i64) {
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return (e.code(), -1, -1),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            let log = match s.partition(&topic, partition).await {
                Ok(l) => l,
                Err(e) => return (errors::partition_error(&e).code(), -1, -1),
            };
            let hw = match visible_end(&s, &topic, partition, &log, current_leader_epoch) {
                Ok((hw, _)) => hw,
                Err((e, _)) => return (e.code(), -1, -1),
            };
            match timestamp {
                // A follower asking for the leader's end.
                -1 if replica => (0, -1, log.offsets().written),
                // LATEST (and "latest tiered": nothing is tiered here)
                -1 | -5 => (0, -1, hw),
                // EARLIEST, EARLIEST_LOCAL
                -2 | -4 => (0, -1, log.log_start_offset()),
                // MAX_TIMESTAMP
                -3 => match log.max_timestamp_offset().await {
                    Ok(Some((off, ts))) => (0, ts, off),
                    Ok(None) => (0, -1, -1),
                    Err(e) => (errors::read_error(&e).code(), -1, -1),
                },
                ts if ts >= 0 => match log.offset_for_timestamp(ts).await {
                    Ok(Some((off, found_ts))) => match exact_in_compressed_batch(&log, off, ts).await {
                        Some((off, found_ts)) => (0, found_ts, off),
                        None => (0, found_ts, off),
                    },
                    Ok(None) => (0, -1, -1),
                    Err(e) => (errors::read_error(&e).code(), -1, -1),
                },
                _ => (ResponseError::InvalidRequest.code(), -1, -1),
            }
        })
        .await
}

/// The engine never decompresses, so for a compressed batch its timestamp
/// lookup answers the batch's first offset. Kafka answers the first *record*
/// at or after the timestamp, so here, for this one batch, we decompress and
/// walk the records. `None` when the batch at `offset` is not compressed
/// (the engine's answer is already exact) or cannot be decoded.
async fn exact_in_compressed_batch(log: &crate::shard::PartitionLog, offset: i64, ts: i64) -> Option<(i64, i64)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let batches = log.read(offset, 1, log.high_watermark()).await.ok()?;
    let b = batches.first()?;
    if b.header.attributes.get() & 0x07 == 0 {
        return None;
    }
    let mut wire = bytes::BytesMut::with_capacity(b.kafka_len());
    wire.extend_from_slice(&b.header.kafka_header());
    wire.extend_from_slice(&b.payload);
    let mut wire = wire.freeze();
    let set =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RecordBatchDecoder::decode(&mut wire))).ok()?.ok()?;
    let start = log.log_start_offset().max(offset);
    set.records.iter().find(|r| r.offset >= start && r.timestamp >= ts).map(|r| (r.offset, r.timestamp))
}

/// DeleteRecords for one partition: `(error, low watermark)`. `before` -1
/// means the high watermark.
pub async fn delete_records(shard: &Rc<Shard>, topic: &str, partition: i32, before: i64) -> (i16, i64) {
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return (e.code(), -1),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            let log = match s.partition(&topic, partition).await {
                Ok(l) => l,
                Err(e) => return (errors::partition_error(&e).code(), -1),
            };
            let hw = match visible_end(&s, &topic, partition, &log, -1) {
                Ok((hw, _)) => hw,
                Err((e, _)) => return (e.code(), -1),
            };
            let before = if before == -1 { hw } else { before };
            if before > hw {
                // Kafka's rule: records a follower may not have yet stay.
                return (ResponseError::OffsetOutOfRange.code(), log.log_start_offset());
            }
            match log.delete_records(before).await {
                Ok(low) => (0, low),
                Err(e) => (errors::admin_error(&e).code(), log.log_start_offset()),
            }
        })
        .await
}

/// The high watermark of a partition, or -1 if it does not exist.
pub async fn high_watermark(shard: &Rc<Shard>, topic: &str, partition: i32) -> i64 {
    let Ok(owner) = owner(shard, topic, partition) else { return -1 };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            match s.partition(&topic, partition).await {
                Ok(log) => visible_end(&s, &topic, partition, &log, -1).map_or(-1, |(hw, _)| hw),
                Err(_) => -1,
            }
        })
        .await
}

/// Figures of every partition open on core `on`.
pub async fn figures(shard: &Rc<Shard>, on: usize) -> Vec<PartitionFigures> {
    shard
        .invoke_on(on, |s| async move {
            s.open_logs()
                .into_iter()
                .map(|((topic, partition), log)| {
                    let o = log.offsets();
                    let replica = s.replica(&topic, partition);
                    let leader = replica.as_ref().and_then(|r| match &*r.role.borrow() {
                        Role::Leader(l) if !l.is_resigned() => Some(crate::metrics::LeaderFigures {
                            replicas: l.replicas().len(),
                            isr: l.committed_isr().len(),
                            follower_lag: l
                                .replicas()
                                .iter()
                                .filter(|&&b| b != s.config.node_id)
                                .map(|&b| {
                                    let end = l.follower(b).and_then(|p| p.log_end);
                                    (b, end.map_or(-1, |e| (l.local_end() - e).max(0)))
                                })
                                .collect(),
                        }),
                        _ => None,
                    });
                    let high_watermark = match &replica {
                        Some(r) => r.leader_hw().unwrap_or(match &*r.role.borrow() {
                            Role::Follower(f) => f.hw(),
                            Role::Leader(l) => l.hw(),
                        }),
                        None => o.written,
                    };
                    PartitionFigures {
                        topic,
                        partition,
                        log_start: o.log_start,
                        high_watermark,
                        log_end: o.log_end,
                        size_bytes: log.size_bytes(),
                        segments: log.segment_count(),
                        leader,
                    }
                })
                .collect()
        })
        .await
}

/// A follower's fetch of one partition, as the leader's Fetch handler got it.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaFetch {
    pub replica_id: i32,
    pub broker_epoch: i64,
    pub current_leader_epoch: i32,
    pub fetch_offset: i64,
    /// -1: not sent.
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
    pub max_bytes: usize,
}

/// The leader's side of a follower's fetch (design 9): epoch checks, the
/// diverging-epoch check, then (`record`: the first pass of a request, not
/// its long-poll retries) the follower's progress, which may move the HW
/// and propose an ISR expansion; then a read up to the written end.
pub async fn replica_read(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    f: ReplicaFetch,
    record: bool,
) -> ReadOutcome {
    let fail = ReadOutcome::failed;
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            let Some(view) = s.snapshot().cluster.clone() else { return fail(ResponseError::NotLeaderOrFollower) };
            let Some(rep) = s.replica(&topic, partition) else { return fail(ResponseError::NotLeaderOrFollower) };
            let leader = Some(rep.current_leader());
            let failed = |e: ResponseError| ReadOutcome { current_leader: leader, ..fail(e) };
            if let Err(e) = rep.check_epoch(f.current_leader_epoch) {
                return failed(e);
            }
            let log = rep.log.clone();
            let written = log.offsets().written;
            let start = log.log_start_offset();
            let last_fetched = (f.last_fetched_epoch >= 0).then_some(f.last_fetched_epoch);
            let outcome = {
                let mut role = rep.role.borrow_mut();
                let Role::Leader(l) = &mut *role else { return failed(ResponseError::NotLeaderOrFollower) };
                let lview = EngineView { log: &log, end: written };
                match check_fetch_position(&lview, f.fetch_offset, last_fetched) {
                    FetchPosition::OutOfRange => return failed(ResponseError::OffsetOutOfRange),
                    FetchPosition::Diverging(d) => {
                        return ReadOutcome {
                            error: errors::NONE,
                            high_watermark: l.hw(),
                            log_start_offset: start,
                            diverging_epoch: Some((d.epoch, d.end_offset)),
                            current_leader: leader,
                            ..Default::default()
                        }
                    }
                    FetchPosition::Read => {}
                }
                if !record {
                    None
                } else {
                    let fetch = FollowerFetch {
                        replica: f.replica_id,
                        fetch_offset: f.fetch_offset,
                        log_start: f.log_start_offset,
                        broker_epoch: f.broker_epoch,
                        leader_end: written,
                        now_ms: now_ms().max(0) as u64,
                    };
                    match l.on_follower_fetch(fetch, &*view) {
                        Ok(o) => Some(o),
                        Err(spindle_replication::partition_replica::FollowerFetchError::UnknownReplica(_)) => {
                            return failed(ResponseError::UnknownLeaderEpoch)
                        }
                        Err(_) => return failed(ResponseError::NotLeaderOrFollower),
                    }
                }
            };
            if let Some(o) = outcome {
                if o.hw_advanced {
                    rep.notify();
                }
                if let Some(change) = o.isr_change {
                    crate::cluster::replica::send_isr_change(&s, &rep, change);
                }
            }
            let hw = rep.leader_hw().unwrap_or(-1);
            let read = log.read(f.fetch_offset, f.max_bytes, written).await;
            ReadOutcome::of(read, hw, start, leader)
        })
        .await
}

/// OffsetForLeaderEpoch for one partition: `(error, epoch, end offset)`,
/// (-1, -1) for an epoch below every one we know. Leader only in cluster
/// mode.
pub async fn epoch_end_offset(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> (i16, i32, i64) {
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return (e.code(), -1, -1),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            let log = match s.partition(&topic, partition).await {
                Ok(l) => l,
                Err(e) => return (errors::partition_error(&e).code(), -1, -1),
            };
            if s.config.is_cluster() {
                let Some(rep) = s.replica(&topic, partition) else {
                    return (ResponseError::NotLeaderOrFollower.code(), -1, -1);
                };
                if let Err(e) = rep.check_epoch(current_leader_epoch) {
                    return (e.code(), -1, -1);
                }
                if rep.leading_epoch().is_none() {
                    return (ResponseError::NotLeaderOrFollower.code(), -1, -1);
                }
            } else if current_leader_epoch > LEADER_EPOCH {
                return (ResponseError::UnknownLeaderEpoch.code(), -1, -1);
            }
            let answer = answer_epoch_query(&EngineView::leader(&log), leader_epoch);
            (errors::NONE, answer.epoch, answer.end_offset)
        })
        .await
}
