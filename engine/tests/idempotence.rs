//! Idempotent producers through `Log::append`: a retried batch is answered
//! with the offsets it already got and not stored twice, a gap in a
//! producer's sequence or a fenced producer epoch is refused with nothing
//! written, and a follower's replicated batches are taken as they come and
//! remembered for when it leads. That memory is rebuilt at open and after
//! a truncation from snapshots and the log, and forgets producers below
//! the log start or idle past the expiration.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::producers::SequenceError;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendError, Durability, LogConfig, ReplicaAppendOptions};

/// `tagged_batch(tag, records)` from producer 42 at `epoch`, first
/// sequence `seq`.
fn from_producer(tag: u64, records: usize, epoch: i16, seq: i32) -> bytes::Bytes {
    from_producer_id(42, tag, records, epoch, seq)
}

fn from_producer_id(id: i64, tag: u64, records: usize, epoch: i16, seq: i32) -> bytes::Bytes {
    let mut b = tagged_batch(tag, records, 50, 1_000).to_vec();
    b[43..51].copy_from_slice(&id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    reseal(&mut b);
    b.into()
}

fn append(log: &spindle_engine::Log<MemStorage>, b: bytes::Bytes) -> Result<(i64, i64), AppendError> {
    block_on(log.append(b, opts(Durability::Written))).map(|i| (i.base_offset, i.last_offset))
}

#[test]
fn a_retried_batch_gets_its_first_offsets_and_is_stored_once() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(0, 3, 0, 0)).unwrap(), (0, 2));
    assert_eq!(append(&log, tagged_batch(1, 2, 50, 1_000)).unwrap(), (3, 4), "a batch without producer id between");
    assert_eq!(append(&log, from_producer(2, 2, 0, 3)).unwrap(), (5, 6));
    // Both retried (the acknowledgements were lost): the same offsets, nothing appended.
    assert_eq!(append(&log, from_producer(0, 3, 0, 0)).unwrap(), (0, 2));
    assert_eq!(append(&log, from_producer(2, 2, 0, 3)).unwrap(), (5, 6));
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(append(&log, from_producer(3, 1, 0, 5)).unwrap(), (7, 7));
    let tags: Vec<i64> = block_on(read_all(&log, 0)).iter().map(|v| v.header.base_offset()).collect();
    assert_eq!(tags, vec![0, 3, 5, 7]);
}

#[test]
fn a_gap_or_a_fenced_epoch_is_refused_and_nothing_is_written() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    append(&log, from_producer(0, 2, 1, 0)).unwrap();
    let gap = append(&log, from_producer(1, 1, 1, 3));
    assert!(
        matches!(gap, Err(AppendError::Sequence(SequenceError::OutOfOrder { expected: 2, found: 3, .. }))),
        "{gap:?}"
    );
    let new_epoch_mid_sequence = append(&log, from_producer(1, 1, 2, 2));
    assert!(matches!(
        new_epoch_mid_sequence,
        Err(AppendError::Sequence(SequenceError::OutOfOrder { expected: 0, .. }))
    ));
    assert_eq!(append(&log, from_producer(1, 1, 2, 0)).unwrap(), (2, 2), "a new epoch starts at 0");
    let fenced = append(&log, from_producer(2, 1, 1, 2));
    assert!(matches!(fenced, Err(AppendError::Sequence(SequenceError::StaleProducerEpoch { latest: 2, .. }))));
    let mut two = from_producer(3, 1, 2, 1).to_vec();
    two.extend_from_slice(&from_producer(4, 1, 2, 2));
    assert!(matches!(append(&log, two.into()), Err(AppendError::IdempotentBatches(2))));
    assert_eq!(log.log_end_offset(), 3, "nothing refused was written");
    assert_eq!(append(&log, from_producer(3, 1, 2, 1)).unwrap(), (3, 3));
}

/// `from_producer` as a leader stored it at `base`.
fn replicated(tag: u64, records: usize, epoch: i16, seq: i32, base: i64) -> bytes::Bytes {
    let mut b = from_producer(tag, records, epoch, seq).to_vec();
    b[0..8].copy_from_slice(&base.to_be_bytes());
    reseal(&mut b);
    b.into()
}

#[test]
fn a_follower_knows_the_producers_it_replicated_when_it_becomes_leader() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    let opts = ReplicaAppendOptions { now_ms: 1_000, durability: Durability::Written };
    // Taken as they come, even a sequence a leader would refuse from a
    // producer it does not know (the leader checked them).
    let mut two = replicated(0, 2, 0, 7, 0).to_vec();
    two.extend_from_slice(&replicated(1, 1, 0, 9, 2));
    block_on(log.append_replicated(two.into(), opts)).expect("replicated");
    // Leading now: the producer's retry of its last batch is a duplicate,
    // and its next batch must continue the sequence.
    assert_eq!(append(&log, from_producer(1, 1, 0, 9)).unwrap(), (2, 2));
    assert!(matches!(append(&log, from_producer(2, 1, 0, 11)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(2, 1, 0, 10)).unwrap(), (3, 3));
}

#[test]
fn a_truncation_rebuilds_the_producers_at_the_new_end() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(1, 1, 0, 0)).unwrap(), (0, 0));
    assert_eq!(append(&log, from_producer(2, 1, 0, 1)).unwrap(), (1, 1));
    block_on(log.truncate_to(1)).unwrap();
    // The batch at 1 is gone: its retry must be stored, not answered with
    // an offset that no longer holds it. The batch at 0 is still known.
    assert_eq!(append(&log, from_producer(1, 1, 0, 0)).unwrap(), (0, 0), "kept below the cut");
    assert!(matches!(append(&log, from_producer(3, 1, 0, 2)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(2, 1, 0, 1)).unwrap(), (1, 1));
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn a_restart_clean_or_not_keeps_the_producers() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(0, 2, 0, 0)).unwrap(), (0, 1));
    block_on(log.close()).unwrap();
    drop(log);
    assert_eq!(snapshots(&s), vec![2], "the clean close's snapshot, at the log end");
    let log = open(&s, small_segments());
    // The retry of the last batch, after the restart: a duplicate.
    assert_eq!(append(&log, from_producer(0, 2, 0, 0)).unwrap(), (0, 1));
    assert!(matches!(append(&log, from_producer(1, 1, 0, 5)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(1, 1, 0, 2)).unwrap(), (2, 2));
    // A crash: the batch at 2 is after the snapshot, and replayed.
    drop(log);
    s.crash_process();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(1, 1, 0, 2)).unwrap(), (2, 2), "a duplicate after a crash too");
    assert!(matches!(append(&log, from_producer(2, 1, 0, 4)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(2, 1, 0, 3)).unwrap(), (3, 3));
}

/// Offsets of the producer-state snapshots in the log directory.
fn snapshots(s: &MemStorage) -> Vec<i64> {
    let mut v: Vec<i64> = s
        .file_names()
        .iter()
        .filter(|p| p.starts_with(dir()) && p.extension().is_some_and(|e| e == "snapshot"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_crash_rebuilds_the_producers_from_a_snapshot_and_the_batches_after_it() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    // Producer 43 writes once, early: only a snapshot remembers it.
    let early = append(&log, from_producer_id(43, 99, 1, 0, 0)).unwrap();
    let mut sent = Vec::new();
    let mut seq = 0;
    for tag in 0..150 {
        sent.push((seq, append(&log, from_producer(tag, 20, 0, seq)).unwrap()));
        seq += 20;
    }
    // Durable: the sealed segments' indexes are written, each with a
    // snapshot. Then more batches, after the newest snapshot.
    block_on(log.wait_durable(log.log_end_offset())).unwrap();
    for tag in 150..160 {
        sent.push((seq, append(&log, from_producer(tag, 20, 0, seq)).unwrap()));
        seq += 20;
    }
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    let taken = snapshots(&s);
    assert!(!taken.is_empty() && taken.len() <= 3, "snapshots {taken:?}");
    assert!(*taken.last().unwrap() < log.log_end_offset(), "batches after the newest snapshot");
    drop(log);
    s.crash_process();
    // The first segment's first header damaged: a replay from the log start
    // would fail (and forget every producer); one from the snapshot never
    // reads it, nor does recovery, which trusts the sealed segment's index.
    s.corrupt(&dir().join(format!("{:020}.log", 0)), 20, &[0xff; 4]);
    let log = open(&s, small_segments());
    let end = log.log_end_offset();
    assert_eq!(append(&log, from_producer_id(43, 99, 1, 0, 0)).unwrap(), early, "known from the snapshot");
    let (last_seq, last) = *sent.last().unwrap();
    assert_eq!(end, last.1 + 1, "a process crash loses nothing written");
    // The last 5 batches are known: retries get their offsets.
    for &(first, offsets) in &sent[sent.len() - 5..] {
        assert_eq!(append(&log, from_producer(0, 20, 0, first)).unwrap(), offsets, "retry of seq {first}");
    }
    assert!(matches!(append(&log, from_producer(0, 20, 0, last_seq + 40)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(0, 20, 0, last_seq + 20)).unwrap(), (end, end + 19));
}

/// An unclean open rebuilds the producers from the batches its recovery
/// scan read, instead of reading the scanned tail a second time.
#[test]
fn a_crash_rebuilds_the_producers_from_what_the_recovery_scan_read() {
    let s = MemStorage::default();
    let log = open(&s, LogConfig::default());
    let mut sent = Vec::new();
    let mut seq = 0;
    for tag in 0..400 {
        sent.push((seq, append(&log, from_producer(tag, 20, 0, seq)).unwrap()));
        seq += 20;
    }
    drop(log);
    s.crash_process();
    let tail = s.contents(&dir().join(format!("{:020}.log", 0))).unwrap().len() as u64;
    assert!(tail > 500_000, "{tail} bytes");
    let read_before = s.counters().bytes_read;
    let log = open(&s, LogConfig::default());
    let read = s.counters().bytes_read - read_before;
    assert!(read < tail + tail / 4, "the open read {read} bytes of a {tail}-byte tail");
    let end = log.log_end_offset();
    for &(first, offsets) in &sent[sent.len() - 5..] {
        assert_eq!(append(&log, from_producer(0, 20, 0, first)).unwrap(), offsets, "retry of seq {first}");
    }
    assert!(matches!(append(&log, from_producer(0, 20, 0, seq + 20)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(0, 20, 0, seq)).unwrap(), (end, end + 19));
}

/// After a power loss the producers match the log that survived: the
/// last batch kept is a duplicate, the first one lost is appended again.
#[test]
fn after_a_power_loss_the_producers_match_the_surviving_log() {
    let config = LogConfig { segment_bytes: 64 * 1024, flush_messages: 300, ..LogConfig::default() };
    for seed in 1..=12u64 {
        let s = MemStorage::default();
        let log = open(&s, config.clone());
        let mut seq = 0;
        let appends: Vec<_> = (0..200)
            .map(|tag| {
                let b = from_producer(tag, 20, 0, seq);
                seq += 20;
                log.append(b, opts(Durability::Written))
            })
            .collect();
        let sent: Vec<(i64, i64)> = block_on(futures::future::join_all(appends))
            .into_iter()
            .map(|r| r.map(|i| (i.base_offset, i.last_offset)).unwrap())
            .collect();
        drop(log);
        s.crash_power(seed);
        let log = open(&s, config.clone());
        let end = log.log_end_offset();
        let kept = sent.iter().take_while(|b| b.1 < end).count();
        assert_eq!(kept as i64 * 20, end, "seed {seed}: whole batches survive");
        assert!(kept > 0 && kept < sent.len(), "seed {seed}: {kept} of {} batches survived", sent.len());
        let first = (kept as i32 - 1) * 20;
        assert_eq!(append(&log, from_producer(0, 20, 0, first)).unwrap(), sent[kept - 1], "seed {seed}");
        assert_eq!(
            append(&log, from_producer(0, 20, 0, kept as i32 * 20)).unwrap(),
            (end, end + 19),
            "seed {seed}: the first lost batch is appended again"
        );
    }
}

/// A snapshot past the log end (after a power loss it can count batches
/// that were staged or written, never synced) is removed at open, not
/// trusted: a lost batch's retry is stored again, not answered with the
/// offsets it had.
#[test]
fn a_snapshot_past_the_log_end_is_removed_not_trusted() {
    use spindle_engine::storage::Storage;
    let s = MemStorage::default();
    // The snapshot of another log: 10 records without a producer, then
    // the producer's 10 batches at 10..209.
    let other = std::path::PathBuf::from("/data/other-0");
    let log = open_at(&s, &other, small_segments());
    append(&log, tagged_batch(99, 10, 50, 1_000)).unwrap();
    for tag in 0..10 {
        append(&log, from_producer(tag, 20, 0, tag as i32 * 20)).unwrap();
    }
    block_on(log.close()).unwrap();
    drop(log);
    let name = format!("{:020}.snapshot", 210);
    let stale = s.contents(&other.join(&name)).expect("snapshot at 210");
    // This log has the producer's first 5 batches at 0..99, and then
    // finds that snapshot.
    let log = open(&s, small_segments());
    for tag in 0..5 {
        append(&log, from_producer(tag, 20, 0, tag as i32 * 20)).unwrap();
    }
    drop(log);
    s.crash_process();
    block_on(s.write_file_atomic(&dir().join(&name), &stale)).unwrap();
    let log = open(&s, small_segments());
    assert_eq!(log.log_end_offset(), 100);
    assert!(snapshots(&s).iter().all(|&at| at <= 100), "{:?}", snapshots(&s));
    assert_eq!(append(&log, from_producer(4, 20, 0, 80)).unwrap(), (80, 99), "batch 4 is in this log");
    assert_eq!(append(&log, from_producer(5, 20, 0, 100)).unwrap(), (100, 119), "batch 5 is not");
    // Past 210 now: a snapshot left there would be taken at the next open,
    // and say batch 5 is at 110..129.
    append(&log, tagged_batch(98, 100, 50, 1_000)).unwrap();
    drop(log);
    s.crash_process();
    let log = open(&s, small_segments());
    assert_eq!(log.log_end_offset(), 220);
    assert_eq!(append(&log, from_producer(5, 20, 0, 100)).unwrap(), (100, 119));
    // The same snapshot found now, below the log end (a write that landed
    // after a truncation removed its offset, say): the batch below 210
    // here is not the one it was taken after, so it is not trusted.
    drop(log);
    s.crash_process();
    block_on(s.write_file_atomic(&dir().join(&name), &stale)).unwrap();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(5, 20, 0, 100)).unwrap(), (100, 119), "not 110..129");
    assert_eq!(append(&log, from_producer(6, 20, 0, 120)).unwrap(), (220, 239));
}

/// A follower's truncation below its snapshots, then other batches past
/// their offsets, then a crash: the producers are those of the new history,
/// even if a snapshot of the old one past the cut escaped its removal (an
/// unlink that failed, a cancelled write that landed after the truncation).
/// Batches are 20 records in both histories, so a batch of the new one
/// ends just below that snapshot's offset: only the checksum in its
/// fingerprint tells the histories apart.
#[test]
fn a_truncation_below_the_snapshots_then_a_crash_keeps_the_new_history() {
    use spindle_engine::storage::Storage;
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    let durable = |log: &spindle_engine::Log<MemStorage>, b| {
        block_on(log.append(b, opts(Durability::Durable))).map(|i| (i.base_offset, i.last_offset)).unwrap()
    };
    // Producer 43 writes once, at 1200..1219, in the history that is cut.
    let mut seq = 0;
    for tag in 0..200u64 {
        if tag == 60 {
            assert_eq!(durable(&log, from_producer_id(43, tag, 20, 0, 0)), (1200, 1219));
        } else {
            durable(&log, from_producer(tag, 20, 0, seq));
            seq += 20;
        }
    }
    let taken = snapshots(&s);
    let stale_at = *taken.iter().find(|&&at| at > 1220).unwrap_or_else(|| panic!("a snapshot past 1220: {taken:?}"));
    let name = format!("{stale_at:020}.snapshot");
    let stale = s.contents(&dir().join(&name)).unwrap();
    // Diverged: a new leader kept the first 50 batches, then producer 42
    // moved to epoch 1.
    block_on(log.truncate_to(1_000)).unwrap();
    assert!(snapshots(&s).iter().all(|&at| at <= 1_000), "{:?}", snapshots(&s));
    assert_eq!(append(&log, from_producer(49, 20, 0, 980)).unwrap(), (980, 999), "below the cut, known");
    // Written, never synced: no snapshot of the new history is taken.
    let mut new = Vec::new();
    for tag in 0..(stale_at - 1_000) as u64 / 20 + 2 {
        new.push(append(&log, from_producer(1_000 + tag, 20, 1, tag as i32 * 20)).unwrap());
    }
    drop(log);
    s.crash_process();
    block_on(s.write_file_atomic(&dir().join(&name), &stale)).unwrap();
    let log = open(&s, small_segments());
    let (last_base, _) = *new.last().unwrap();
    assert!(last_base > stale_at, "the new history runs past the stale snapshot");
    assert_eq!(append(&log, from_producer(2_000, 20, 1, (new.len() as i32 - 1) * 20)).unwrap(), *new.last().unwrap());
    assert!(matches!(
        append(&log, from_producer(199, 20, 0, seq - 20)),
        Err(AppendError::Sequence(SequenceError::StaleProducerEpoch { latest: 1, .. }))
    ));
    // Producer 43 is not in this history: unknown, any sequence goes.
    let end = log.log_end_offset();
    assert_eq!(append(&log, from_producer_id(43, 3_000, 20, 0, 999)).unwrap(), (end, end + 19));
}

#[test]
fn delete_records_and_expiration_forget_producers() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    append(&log, from_producer_id(7, 0, 10, 0, 0)).unwrap();
    append(&log, from_producer_id(8, 1, 10, 0, 0)).unwrap();
    // Producer 7's batch is below the new log start: forgotten, so any
    // sequence is taken as an unknown producer's first.
    block_on(log.delete_records(10)).unwrap();
    assert_eq!(append(&log, from_producer_id(7, 2, 10, 0, 500)).unwrap(), (20, 29));
    assert!(matches!(append(&log, from_producer_id(8, 3, 10, 0, 500)), Err(AppendError::Sequence(_))));
    // Expiration by the last batch's max timestamp (1009 here: 10
    // records 1 ms apart from 1000): kept at that cutoff, forgotten past.
    log.expire_producers(1_009);
    assert!(matches!(append(&log, from_producer_id(8, 3, 10, 0, 500)), Err(AppendError::Sequence(_))));
    log.expire_producers(1_010);
    assert_eq!(append(&log, from_producer_id(8, 3, 10, 0, 500)).unwrap(), (30, 39));
    // And they stay forgotten across a crash (the replay evicts too).
    drop(log);
    s.crash_process();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer_id(7, 2, 10, 0, 500)).unwrap(), (20, 29), "a duplicate of its new first");
}
