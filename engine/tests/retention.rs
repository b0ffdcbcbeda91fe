//! Retention by time and size, DeleteRecords, and the log start offset they
//! move: only whole sealed segments are deleted, never the active one, the
//! oldest first, and the new log start survives restarts.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::{FaultKind, FaultOn, MemStorage};
use spindle_engine::{AdminError, AppendError, Durability, Log, LogConfig, ReadError};

const SEG: u64 = 4096;

fn cfg(retention_ms: i64, retention_bytes: i64) -> LogConfig {
    LogConfig { segment_bytes: SEG, retention_ms, retention_bytes, ..LogConfig::default() }
}

/// Appends `n` durable batches; batch i has timestamps `1_000 * i + (0, 1)`.
fn fill(log: &Log<MemStorage>, n: u64) -> Vec<Sent> {
    fill_as(log, n, Durability::Durable)
}

fn fill_as(log: &Log<MemStorage>, n: u64, durability: Durability) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let bytes = tagged_batch(i, 2, 300, 1_000 * i as i64);
            let info = block_on(log.append(bytes.clone(), opts(durability))).unwrap();
            Sent { base: info.base_offset, epoch: 0, bytes }
        })
        .collect()
}

/// The batches of each segment, by segment base.
fn by_segment<'a>(s: &MemStorage, sent: &'a [Sent]) -> Vec<(i64, Vec<&'a Sent>)> {
    let bases = segment_bases(s);
    bases
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let end = bases.get(k + 1).copied().unwrap_or(i64::MAX);
            (*b, sent.iter().filter(|x| x.base >= *b && x.base < end).collect())
        })
        .collect()
}

fn stored(x: &Sent) -> i64 {
    (x.bytes.len() - 61 + 72) as i64
}

fn assert_starts_at(log: &Log<MemStorage>, start: i64, sent: &[Sent]) {
    assert_eq!(log.log_start_offset(), start);
    match block_on(log.read(start - 1, 1 << 20, i64::MAX)) {
        Err(ReadError::OffsetOutOfRange { log_start, .. }) => assert_eq!(log_start, start),
        other => panic!("read below log start: {other:?}"),
    }
    let first = sent.iter().position(|x| x.next() > start).unwrap_or(sent.len());
    block_on(assert_log_is(log, start, &sent[first..]));
}

#[test]
fn retention_ms_deletes_sealed_segments_whose_newest_record_is_too_old() {
    let s = MemStorage::new();
    let retention_ms = 10_000;
    let log = open(&s, cfg(retention_ms, -1));
    let sent = fill(&log, 60);
    let segs = by_segment(&s, &sent);
    assert!(segs.len() >= 5);
    // Now: the third segment's newest record is exactly at the limit (kept,
    // as Kafka keeps it); the first two are past it.
    let max_ts = |k: usize| segs[k].1.iter().map(|x| 1_000 * (x.base / 2) + 1).max().unwrap();
    let now = max_ts(2) + retention_ms;
    assert_eq!(block_on(log.enforce_retention(now)).unwrap(), 2);
    assert_eq!(segment_bases(&s), segs[2..].iter().map(|(b, _)| *b).collect::<Vec<_>>());
    assert_starts_at(&log, segs[2].0, &sent);
    assert_eq!(block_on(log.enforce_retention(now)).unwrap(), 0, "idempotent");
    assert_eq!(block_on(log.enforce_retention(now + 1)).unwrap(), 1);
    assert_starts_at(&log, segs[3].0, &sent);
}

/// acks=1 under the default flush policy asks for no fdatasync at all, so
/// nothing else makes a sealed segment durable: retention must still delete
/// it, by time and by size, or such a log grows without bound.
#[test]
fn retention_deletes_segments_that_were_only_written() {
    for (retention_ms, retention_bytes) in [(10_000, -1), (-1, 10_000)] {
        let s = MemStorage::new();
        let log = open(&s, cfg(retention_ms, retention_bytes));
        let sent = fill_as(&log, 60, Durability::Written);
        let segs = by_segment(&s, &sent);
        assert!(segs.len() >= 5);
        let deleted = block_on(log.enforce_retention(1_000 * 60 + retention_ms)).unwrap();
        assert!(deleted > 0, "retention.ms {retention_ms}, retention.bytes {retention_bytes}: nothing deleted");
        assert_eq!(segment_bases(&s), segs[deleted..].iter().map(|(b, _)| *b).collect::<Vec<_>>());
        assert_starts_at(&log, segs[deleted].0, &sent);
        // The log goes on, still without asking for durability.
        let more = fill_as(&log, 1, Durability::Written);
        assert_eq!(more[0].base, sent.last().unwrap().next());
    }
}

#[test]
fn retention_never_deletes_the_active_segment() {
    let s = MemStorage::new();
    let log = open(&s, cfg(0, 0));
    let sent = fill(&log, 40);
    let segs = by_segment(&s, &sent);
    let active = segs.last().unwrap().0;
    assert_eq!(block_on(log.enforce_retention(i64::MAX)).unwrap(), segs.len() - 1);
    assert_eq!(segment_bases(&s), vec![active]);
    assert_eq!(log.log_end_offset(), sent.last().unwrap().next());
    assert_starts_at(&log, active, &sent);
    // The log goes on.
    let more = fill(&log, 1);
    assert_eq!(more[0].base, sent.last().unwrap().next());
}

#[test]
fn retention_bytes_deletes_the_oldest_segments_until_within_the_limit() {
    for limit in [1, 5_000, 10_000, 20_000, 1 << 30] {
        let s = MemStorage::new();
        let log = open(&s, cfg(-1, limit));
        let sent = fill(&log, 70);
        let segs = by_segment(&s, &sent);
        let sizes: Vec<i64> = segs.iter().map(|(_, xs)| xs.iter().map(|x| stored(x)).sum()).collect();
        let mut total: i64 = sizes.iter().sum();
        assert_eq!(log.size_bytes() as i64, total);
        // Kafka's rule: delete the oldest while what remains is still at
        // least the limit; never the active segment.
        let mut expect = 0;
        while expect < sizes.len() - 1 && total - sizes[expect] >= limit {
            total -= sizes[expect];
            expect += 1;
        }
        assert_eq!(block_on(log.enforce_retention(0)).unwrap(), expect, "limit {limit}");
        assert_eq!(log.size_bytes() as i64, total);
        assert_starts_at(&log, segs[expect].0, &sent);
    }
}

/// Under acks=1 nothing syncs a sealed segment, and retention deletes it
/// without a sync of its own: its records are gone either way. The new log
/// start survives a power loss.
#[test]
fn retention_deletes_segments_only_written_without_syncing_them() {
    for recycle_segments in [false, true] {
        let s = MemStorage::new();
        let config = LogConfig { recycle_segments, ..cfg(0, -1) };
        let log = open(&s, config.clone());
        fill_as(&log, 30, Durability::Written);
        let syncs = s.counters().syncs;
        assert!(block_on(log.enforce_retention(i64::MAX)).unwrap() > 0);
        assert_eq!(s.counters().syncs, syncs, "recycle {recycle_segments}: a deleted segment was synced");
        let start = log.log_start_offset();
        assert!(start > 0);
        drop(log);
        s.crash_power(7);
        let log = open(&s, config);
        assert_eq!(log.log_start_offset(), start);
        assert!(log.log_end_offset() >= start);
    }
}

/// Retention persists the new log start before it renames the deleted
/// segments away, with one directory sync for all. A crash in between (here
/// a failed removal, then the crash) leaves segment files wholly below the
/// persisted start, their unsynced tails lost or torn: the next open
/// discards them unread, so their records do not come back, and their lost
/// tails do not look like a hole that would drop the live segments.
#[test]
fn segments_left_below_the_persisted_log_start_are_discarded_unread_at_open() {
    for (seed, recycle_segments) in (1..=12).zip([false, true].into_iter().cycle()) {
        let s = MemStorage::new();
        let config = LogConfig { recycle_segments, ..cfg(-1, 10_000) };
        let log = open(&s, config.clone());
        let durable = fill_as(&log, 30, Durability::Durable);
        let written_from = durable.last().unwrap().next();
        fill_as(&log, 30, Durability::Written);
        let end = log.log_end_offset();
        let bases = segment_bases(&s);
        s.fail_after(0, FaultOn::NameChanges, FaultKind::Eio);
        assert!(block_on(log.enforce_retention(0)).is_err(), "seed {seed}");
        s.clear_faults();
        let start = log.log_start_offset();
        let first_live = bases.iter().position(|b| *b == start).expect("retention starts the log at a segment");
        assert!(first_live > 1, "seed {seed}: several segments deleted");
        assert_eq!(segment_bases(&s), bases, "seed {seed}: the failure left the deleted segments' files");
        drop(log);
        if seed % 3 == 0 {
            s.crash_process();
        } else {
            s.crash_power(seed);
        }
        let log = open(&s, config);
        // The first live segment starts at the start: it survives, if
        // only as an empty file.
        assert_eq!(log.log_start_offset(), start, "seed {seed}");
        assert!(log.log_end_offset() >= start, "seed {seed}");
        assert_eq!(segment_bases(&s)[0], start, "seed {seed}: segments below the start were kept");
        let first_written = written_from.max(start);
        if seed % 3 == 0 {
            assert_eq!(log.log_end_offset(), end, "seed {seed}: a process crash loses nothing written");
        }
        assert!(log.log_end_offset() >= first_written.min(end), "seed {seed}");
    }
}

/// A crash between the removals of a deleted segment's files (one directory
/// sync covers them) can leave its index files alone. The open removes
/// them, so that a later segment at the same base cannot trust them.
#[test]
fn an_open_removes_index_files_whose_segment_is_gone() {
    let s = MemStorage::new();
    let log = open(&s, cfg(-1, 10_000));
    fill(&log, 40);
    assert!(block_on(log.enforce_retention(0)).unwrap() > 0);
    block_on(log.close()).unwrap();
    drop(log);
    let gone = segment_bases(&s)[0] - 1;
    assert!(gone >= 0);
    for ext in ["index", "timeindex"] {
        block_on(spindle_engine::storage::Storage::write_file_atomic(&s, &seg_path(gone, ext), b"stale")).unwrap();
    }
    let log = open(&s, cfg(-1, 10_000));
    for ext in ["index", "timeindex"] {
        assert!(s.contents(&seg_path(gone, ext)).is_none(), "{ext} of a missing segment kept");
    }
    assert!(log.log_end_offset() > log.log_start_offset());
}

/// A fenced log (a write failed) syncs nothing more until reopened, but
/// retention still deletes its segments, durable or only written.
#[test]
fn a_fenced_log_still_deletes_by_retention_and_syncs_nothing() {
    let s = MemStorage::new();
    let log = open(&s, cfg(0, -1));
    fill_as(&log, 20, Durability::Durable);
    let written = fill_as(&log, 20, Durability::Written);
    s.fail_after(0, FaultOn::Writes, FaultKind::Eio);
    assert!(block_on(log.append(tagged_batch(99, 2, 300, 0), opts(Durability::Written))).is_err());
    assert!(log.is_failed());
    s.clear_faults();
    let syncs = s.counters().syncs;
    assert!(block_on(log.enforce_retention(i64::MAX)).unwrap() > 0);
    assert_eq!(s.counters().syncs, syncs, "a fenced log synced");
    assert!(log.log_start_offset() > written[0].base, "the segments only written stayed");
    assert!(matches!(
        block_on(log.append(tagged_batch(99, 2, 300, 0), opts(Durability::Written))),
        Err(AppendError::Fenced(_))
    ));
}

#[test]
fn log_start_moved_by_retention_survives_restarts() {
    let s = MemStorage::new();
    let log = open(&s, cfg(-1, 8_000));
    let sent = fill(&log, 50);
    assert!(block_on(log.enforce_retention(0)).unwrap() > 0);
    let start = log.log_start_offset();
    assert!(start > 0);
    drop(log);
    s.crash_power(3);
    let log = open(&s, cfg(-1, 8_000));
    assert_starts_at(&log, start, &sent);
    block_on(log.close()).unwrap();
    drop(log);
    let log = open(&s, cfg(-1, 8_000));
    assert_starts_at(&log, start, &sent);
}

#[test]
fn retention_deletes_segments_recovered_at_open() {
    // Regression: open() recovered every segment as unsealed, and retention
    // only deletes sealed segments, so after any restart nothing written
    // before it was ever deleted by retention.ms or retention.bytes (nor
    // were their indexes rewritten).
    for clean in [false, true] {
        let s = MemStorage::new();
        let log = open(&s, cfg(1_000, -1));
        let sent = fill(&log, 40);
        let segs = by_segment(&s, &sent);
        if clean {
            block_on(log.close()).unwrap();
            drop(log);
        } else {
            drop(log);
            s.crash_process();
        }
        let log = open(&s, cfg(1_000, -1));
        let deleted = block_on(log.enforce_retention(i64::MAX)).unwrap();
        assert_eq!(deleted, segs.len() - 1, "clean shutdown: {clean}");
        assert_starts_at(&log, segs.last().unwrap().0, &sent);
    }
}

#[test]
fn delete_records_moves_log_start_and_deletes_segments_wholly_below() {
    let s = MemStorage::new();
    let log = open(&s, cfg(-1, -1));
    let sent = fill(&log, 40);
    let segs = by_segment(&s, &sent);
    let before = segs[2].0 + 3; // inside the third segment
    assert_eq!(block_on(log.delete_records(before)).unwrap(), before);
    assert_eq!(segment_bases(&s), segs[2..].iter().map(|(b, _)| *b).collect::<Vec<_>>());
    assert_starts_at(&log, before, &sent);
    // Reading at the log start returns the batch containing it, whole.
    let got = block_on(log.read(before, 1, i64::MAX)).unwrap();
    assert!(got[0].header.base_offset() < before && got[0].header.last_offset() >= before);
    let info = block_on(log.append(tagged_batch(99, 1, 1, 0), opts(Durability::Written))).unwrap();
    assert_eq!(info.log_start_offset, before);
    // It never moves back.
    assert_eq!(block_on(log.delete_records(before - 2)).unwrap(), before);
    assert_eq!(log.log_start_offset(), before);
    drop(log);
    s.crash_process();
    let log = open(&s, cfg(-1, -1));
    assert_eq!(log.log_start_offset(), before);
}

#[test]
fn delete_records_beyond_the_high_watermark_is_out_of_range() {
    let s = MemStorage::new();
    let log = open(&s, cfg(-1, -1));
    let sent = fill(&log, 5);
    let hw = log.high_watermark();
    assert_eq!(hw, sent.last().unwrap().next());
    for bad in [hw + 1, hw + 100, -1] {
        match block_on(log.delete_records(bad)) {
            Err(AdminError::OffsetOutOfRange { offset, log_start, high_watermark }) => {
                assert_eq!((offset, log_start, high_watermark), (bad, 0, hw));
            }
            other => panic!("delete_records({bad}): {other:?}"),
        }
    }
    assert_eq!(log.log_start_offset(), 0);
    // Up to the high watermark itself is allowed: the log is then empty.
    assert_eq!(block_on(log.delete_records(hw)).unwrap(), hw);
    assert!(block_on(log.read(hw, 1 << 20, i64::MAX)).unwrap().is_empty());
    assert_eq!(fill(&log, 1)[0].base, hw);
}

#[test]
fn delete_records_trims_the_epoch_history_to_the_covering_epoch() {
    let s = MemStorage::new();
    let log = open(&s, cfg(-1, -1));
    for (i, epoch) in [1, 1, 3, 3, 4].iter().enumerate() {
        block_on(log.append(tagged_batch(i as u64, 2, 10, 0), opts_at(*epoch, 1_000, Durability::Written))).unwrap();
    }
    // Epoch 1: 0..4, epoch 3: 4..8, epoch 4: 8..10.
    block_on(log.delete_records(6)).unwrap();
    let epochs: Vec<(i32, i64)> = log.epochs().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(epochs, vec![(3, 6), (4, 8)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 8)));
    drop(log);
    s.crash_process();
    let log = open(&s, cfg(-1, -1));
    let reopened: Vec<(i32, i64)> = log.epochs().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(reopened, epochs);
}

#[test]
fn log_start_lowered_by_recovery_survives_the_next_restart() {
    // Regression: when recovery cut the log below the persisted log start
    // (the tail past it was torn), open lowered the log start to the new
    // end in memory only. Records appended after that lay below the stale
    // persisted start, so the next restart hid them. Found by
    // tests/model.rs (DeleteRecords, power loss, append, restart).
    let s = MemStorage::new();
    let log = open(&s, cfg(-1, -1));
    let sent = fill(&log, 4); // 0..8
    block_on(log.delete_records(7)).unwrap();
    drop(log);
    s.crash_process();
    // The last two batches were torn.
    let keep: usize = sent[..2].iter().map(|x| stored(x) as usize).sum();
    s.corrupt(&seg_path(0, "log"), keep as u64, &[0xde; 16]);
    let log = open(&s, cfg(-1, -1));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (4, 4));
    let info = block_on(log.append(tagged_batch(50, 2, 5, 0), opts(Durability::Written))).unwrap();
    assert_eq!(info.base_offset, 4);
    drop(log);
    s.crash_process();
    let log = open(&s, cfg(-1, -1));
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(block_on(read_all(&log, 4)).len(), 1);
}
