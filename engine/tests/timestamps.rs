//! ListOffsets by timestamp: `offset_for_timestamp` (the first record at or
//! after a time, exact for uncompressed batches) and `max_timestamp_offset`.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, Log, LogConfig};

fn append(log: &Log<MemStorage>, bytes: bytes::Bytes) -> i64 {
    block_on(log.append(bytes, opts(Durability::Written))).unwrap().base_offset
}

fn values(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut v = format!("value-{i}-").into_bytes();
            v.resize(80, b'.');
            v
        })
        .collect()
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after_across_segments() {
    let s = MemStorage::new();
    let cfg = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
    let log = open(&s, cfg.clone());
    // Batch i: 4 records at 100_000 + 100 i + (0, 1, 2, 3).
    for i in 0..80i64 {
        assert_eq!(append(&log, kafka_batch(&values(4), 100_000 + 100 * i)), 4 * i);
    }
    assert!(log.segment_count() > 3);
    let check = |log: &Log<MemStorage>| {
        for i in (0..80i64).step_by(3) {
            let t = 100_000 + 100 * i;
            for k in 0..4 {
                assert_eq!(
                    block_on(log.offset_for_timestamp(t + k)).unwrap(),
                    Some((4 * i + k, t + k)),
                    "ts {}",
                    t + k
                );
            }
            // In the gap after a batch: the next batch's first record.
            if i < 79 {
                assert_eq!(block_on(log.offset_for_timestamp(t + 50)).unwrap(), Some((4 * i + 4, t + 100)));
            }
        }
        assert_eq!(block_on(log.offset_for_timestamp(0)).unwrap(), Some((0, 100_000)));
        assert_eq!(block_on(log.offset_for_timestamp(100_000 + 7_903)).unwrap(), Some((319, 107_903)));
        assert_eq!(block_on(log.offset_for_timestamp(100_000 + 7_904)).unwrap(), None);
    };
    check(&log);
    drop(log);
    // The same from indexes rebuilt by a recovery scan.
    s.crash_process();
    let log = open_with_cache(&s, cfg, 0);
    check(&log);
}

#[test]
fn offset_for_timestamp_returns_the_found_records_own_timestamp() {
    // Regression: the lookup answered with the queried timestamp (clamped
    // to the batch's range) instead of the timestamp of the record it
    // found, which differ whenever record timestamps have gaps or are out
    // of order within a batch; Kafka returns the record's.
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    append(&log, kafka_batch(&values(2), 10));
    // Timestamps 1_000, 1_300, 1_200, 1_400 at offsets 2..=5.
    let base = append(&log, kafka_batch_ts(&values(4), 1_000, &[0, 300, 200, 400]));
    assert_eq!(base, 2);
    for (ts, want) in
        [(1_000, (2, 1_000)), (1_001, (3, 1_300)), (1_150, (3, 1_300)), (1_300, (3, 1_300)), (1_301, (5, 1_400))]
    {
        assert_eq!(block_on(log.offset_for_timestamp(ts)).unwrap(), Some(want), "ts {ts}");
    }
    assert_eq!(block_on(log.offset_for_timestamp(1_401)).unwrap(), None);
}

#[test]
fn offset_for_timestamp_skips_records_below_the_log_start() {
    // Regression: with the log start inside a batch, a match on a record
    // below the log start skipped the rest of that batch, answering with a
    // later batch (or none) although later records of the same batch
    // qualified. Kafka answers with the first qualifying record at or after
    // the log start.
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    append(&log, kafka_batch(&values(6), 1_000)); // offsets 0..=5, ts 1_000..=1_005
    append(&log, kafka_batch(&values(2), 5_000)); // offsets 6..=7
    block_on(log.delete_records(3)).unwrap();
    assert_eq!(block_on(log.offset_for_timestamp(0)).unwrap(), Some((3, 1_003)));
    assert_eq!(block_on(log.offset_for_timestamp(1_001)).unwrap(), Some((3, 1_003)));
    assert_eq!(block_on(log.offset_for_timestamp(1_004)).unwrap(), Some((4, 1_004)));
    assert_eq!(block_on(log.offset_for_timestamp(1_006)).unwrap(), Some((6, 5_000)));
}

#[test]
fn offset_for_timestamp_answers_a_compressed_batch_as_a_whole() {
    // Regression: documented as "the batch's base offset and max timestamp"
    // for compressed batches, the lookup answered with the queried
    // timestamp clamped to the batch's range instead.
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    append(&log, kafka_batch(&values(3), 100));
    // gzip (codec 1): records opaque, first timestamp 2_000, max 2_050.
    let base = append(&log, compressed_batch(5, 1, 2_000, 2_050, b"\x1f\x8bnot-really-gzip"));
    assert_eq!(base, 3);
    assert_eq!(block_on(log.offset_for_timestamp(103)).unwrap(), Some((3, 2_050)));
    assert_eq!(block_on(log.offset_for_timestamp(2_020)).unwrap(), Some((3, 2_050)));
    assert_eq!(block_on(log.offset_for_timestamp(2_051)).unwrap(), None);
}

#[test]
fn offset_for_timestamp_follows_offset_order_not_time_order() {
    // A producer with a skewed clock: a later batch carries older times.
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    append(&log, kafka_batch(&values(2), 5_000)); // 0..=1
    append(&log, kafka_batch(&values(2), 1_000)); // 2..=3
    append(&log, kafka_batch(&values(2), 3_000)); // 4..=5
    assert_eq!(block_on(log.offset_for_timestamp(1_001)).unwrap(), Some((0, 5_000)));
    assert_eq!(block_on(log.offset_for_timestamp(5_001)).unwrap(), Some((1, 5_001)));
    assert_eq!(block_on(log.offset_for_timestamp(5_002)).unwrap(), None);
}

#[test]
fn offset_for_timestamp_on_an_empty_log_is_none() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    assert_eq!(block_on(log.offset_for_timestamp(0)).unwrap(), None);
    assert_eq!(block_on(log.max_timestamp_offset()).unwrap(), None);
}

#[test]
fn max_timestamp_offset_is_the_last_offset_of_the_newest_batch() {
    let s = MemStorage::new();
    let cfg = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
    let log = open(&s, cfg.clone());
    // Timestamps rise, peak at batch 37 (in a middle segment), then fall.
    for i in 0..80i64 {
        let t = 10_000 - (i - 37).abs() * 10;
        assert_eq!(append(&log, kafka_batch(&values(3), t)), 3 * i);
    }
    assert!(log.segment_count() > 3);
    let want = Some((3 * 37 + 2, 10_002));
    assert_eq!(block_on(log.max_timestamp_offset()).unwrap(), want);
    drop(log);
    s.crash_process();
    let log = open_with_cache(&s, cfg, 0);
    assert_eq!(block_on(log.max_timestamp_offset()).unwrap(), want);
}
