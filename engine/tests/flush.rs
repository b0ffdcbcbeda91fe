//! `flush.messages` and `flush.ms`: appends that asked only to be written
//! still become durable after that many records or that much time.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, Log, LogConfig};

fn append2(log: &Log<MemStorage>, tag: u64) -> Sent {
    let bytes = tagged_batch(tag, 2, 50, 1);
    let info = block_on(log.append(bytes.clone(), opts(Durability::Written))).unwrap();
    Sent { base: info.base_offset, epoch: 0, bytes }
}

#[test]
fn flush_messages_makes_appends_durable_after_that_many_records() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig { flush_messages: 5, ..LogConfig::default() });
    let syncs = s.counters().syncs;
    let mut durable_after = Vec::new();
    for i in 0..6 {
        append2(&log, i);
        durable_after.push(log.offsets().durable);
    }
    // 2, 4, 6 (>= 5: sync), 2, 4, 6 (sync) records unsynced.
    assert_eq!(durable_after, vec![0, 0, 6, 6, 6, 12]);
    assert_eq!(s.counters().syncs - syncs, 2);
}

#[test]
fn flush_ms_syncs_written_data_when_due() {
    let s = MemStorage::new();
    // Opened at now_ms = 1_000.
    let log = open(&s, LogConfig { flush_ms: 1_000, ..LogConfig::default() });
    let mut sent = vec![append2(&log, 1)];
    block_on(log.flush_if_due(1_500)).unwrap();
    assert_eq!(log.offsets().durable, 0, "not due yet");
    block_on(log.flush_if_due(2_000)).unwrap();
    assert_eq!(log.offsets().durable, 2);
    sent.push(append2(&log, 2));
    block_on(log.flush_if_due(2_999)).unwrap();
    assert_eq!(log.offsets().durable, 2, "the last flush was at 2_000");
    block_on(log.flush_if_due(3_000)).unwrap();
    assert_eq!(log.offsets().durable, 4);
    // Flushed data survives a power loss.
    drop(log);
    s.crash_power(9);
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn flush_with_nothing_unsynced_does_not_sync() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig { flush_ms: 0, ..LogConfig::default() });
    let syncs = s.counters().syncs;
    block_on(log.flush_if_due(10_000)).unwrap();
    assert_eq!(s.counters().syncs, syncs);
    append2(&log, 1);
    block_on(log.flush_if_due(10_001)).unwrap();
    assert_eq!(s.counters().syncs, syncs + 1);
    block_on(log.flush_if_due(10_002)).unwrap();
    assert_eq!(s.counters().syncs, syncs + 1);
}
