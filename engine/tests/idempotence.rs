//! Idempotent producers through `Log::append`: a retried batch is answered
//! with the offsets it already got and not stored twice, a gap in a
//! producer's sequence or a fenced producer epoch is refused with nothing
//! written, and a follower's replicated batches are taken as they come and
//! remembered for when it leads.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::producers::SequenceError;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendError, Durability, ReplicaAppendOptions};

/// `tagged_batch(tag, records)` from producer 42 at `epoch`, first
/// sequence `seq`.
fn from_producer(tag: u64, records: usize, epoch: i16, seq: i32) -> bytes::Bytes {
    let mut b = tagged_batch(tag, records, 50, 1_000).to_vec();
    b[43..51].copy_from_slice(&42i64.to_be_bytes());
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
fn a_truncation_forgets_producers() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(1, 1, 0, 0)).unwrap(), (0, 0));
    assert_eq!(append(&log, from_producer(2, 1, 0, 1)).unwrap(), (1, 1));
    block_on(log.truncate_to(1)).unwrap();
    // The batch at 1 is gone: its retry must be stored, not answered with
    // an offset that no longer holds it.
    assert_eq!(append(&log, from_producer(2, 1, 0, 1)).unwrap(), (1, 1));
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn a_clean_restart_keeps_the_producers_and_a_crash_forgets_them() {
    let s = MemStorage::default();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(0, 2, 0, 0)).unwrap(), (0, 1));
    block_on(log.close()).unwrap();
    drop(log);
    let log = open(&s, small_segments());
    // The retry of the last batch, after the restart: a duplicate.
    assert_eq!(append(&log, from_producer(0, 2, 0, 0)).unwrap(), (0, 1));
    assert!(matches!(append(&log, from_producer(1, 1, 0, 5)), Err(AppendError::Sequence(_))));
    assert_eq!(append(&log, from_producer(1, 1, 0, 2)).unwrap(), (2, 2));
    // A crash: the snapshot of the clean close is stale and not trusted.
    drop(log);
    s.crash_process();
    let log = open(&s, small_segments());
    assert_eq!(append(&log, from_producer(1, 1, 0, 2)).unwrap(), (3, 3), "not known after a crash");
}
