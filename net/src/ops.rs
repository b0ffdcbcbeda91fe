//! Partition operations routed to the owning core. Each takes plain `Send`
//! arguments, runs on the owner through [`Shard::invoke_on`], and returns a
//! `Send` outcome; record bytes cross cores as `Bytes`, never copied.

use crate::errors;
use crate::metrics::PartitionFigures;
use crate::shard::{now_ms, Shard};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use spindle_engine::{AppendOptions, BatchView, Durability};
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

pub async fn produce(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    records: Bytes,
    durability: Durability,
) -> ProduceOutcome {
    let fail = ProduceOutcome::failed;
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return fail(e, None),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            let log = match s.partition(&topic, partition).await {
                Ok(l) => l,
                Err(e) => return fail(errors::partition_error(&e), None),
            };
            let bytes = records.len() as u64;
            let opts = AppendOptions { leader_epoch: LEADER_EPOCH, now_ms: now_ms(), durability };
            match log.append(records, opts).await {
                Ok(info) => {
                    let n = (info.last_offset - info.base_offset + 1) as u64;
                    s.metrics.record_produce(n, bytes);
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
        })
        .await
}

#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Vec<BatchView>,
}

impl ReadOutcome {
    /// A partition that could not be read at all.
    pub fn failed(e: ResponseError) -> Self {
        ReadOutcome { error: e.code(), high_watermark: -1, log_start_offset: -1, batches: vec![] }
    }

    pub fn bytes(&self) -> usize {
        self.batches.iter().map(BatchView::kafka_len).sum()
    }
}

pub async fn read(shard: &Rc<Shard>, topic: &str, partition: i32, offset: i64, max_bytes: usize) -> ReadOutcome {
    let fail = ReadOutcome::failed;
    let owner = match owner(shard, topic, partition) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            let log = match s.partition(&topic, partition).await {
                Ok(l) => l,
                Err(e) => return fail(errors::partition_error(&e)),
            };
            let hw = log.high_watermark();
            let start = log.log_start_offset();
            match log.read(offset, max_bytes, hw).await {
                Ok(batches) => {
                    ReadOutcome { error: errors::NONE, high_watermark: hw, log_start_offset: start, batches }
                }
                Err(e) => ReadOutcome {
                    error: errors::read_error(&e).code(),
                    high_watermark: hw,
                    log_start_offset: start,
                    batches: vec![],
                },
            }
        })
        .await
}

/// Waits on the owner until the partition has data beyond `offset`, or
/// `timeout` passes.
pub async fn wait_for_data(shard: &Rc<Shard>, topic: &str, partition: i32, offset: i64, timeout: Duration) {
    let Ok(owner) = owner(shard, topic, partition) else { return };
    let topic = topic.to_string();
    shard
        .invoke_on(owner, move |s| async move {
            if let Ok(log) = s.partition(&topic, partition).await {
                let wait = log.wait_for_data_beyond(offset);
                let timer = glommio::timer::sleep(timeout);
                futures::pin_mut!(wait);
                futures::pin_mut!(timer);
                futures::future::select(wait, timer).await;
            }
        })
        .await
}

/// ListOffsets for one partition: `(error, timestamp, offset)`.
pub async fn list_offset(shard: &Rc<Shard>, topic: &str, partition: i32, timestamp: i64) -> (i16, i64, i64) {
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
            match timestamp {
                // LATEST (and "latest tiered": nothing is tiered here)
                -1 | -5 => (0, -1, log.high_watermark()),
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
            let before = if before == -1 { log.high_watermark() } else { before };
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
                Ok(log) => log.high_watermark(),
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
                    PartitionFigures {
                        topic,
                        partition,
                        log_start: o.log_start,
                        high_watermark: o.written,
                        log_end: o.log_end,
                        size_bytes: log.size_bytes(),
                        segments: log.segment_count(),
                    }
                })
                .collect()
        })
        .await
}
