//! Follower appends (`Log::append_replicated`): a log fed the batches read
//! from a leader's log holds exactly the same bytes, offsets and epoch
//! history; batches that do not continue the log are refused whole; a
//! leader append in a stale epoch is refused; all of it survives crashes.

mod common;
use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::epoch::EpochEntry;
use spindle_engine::records::{encode_batch_at, NewRecord};
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendError, Durability, Log, ReplicaAppendOptions};
use std::path::PathBuf;

fn replica_opts(durability: Durability) -> ReplicaAppendOptions {
    ReplicaAppendOptions { now_ms: 1_000, durability }
}

fn follower_dir() -> PathBuf {
    PathBuf::from("/data/follower-0")
}

/// Reads the leader from `from` to its end and returns the Kafka wire bytes
/// of each read (one fetch response's records per element), the way a
/// follower's fetch receives them.
fn fetch_all(leader: &Log<MemStorage>, from: i64, max_bytes: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let got = block_on(leader.read(next, max_bytes, i64::MAX)).unwrap();
        if got.is_empty() {
            return out;
        }
        next = got.last().unwrap().header.next_offset();
        out.push(Bytes::from(got.iter().flat_map(wire).collect::<Vec<u8>>()));
    }
}

/// A leader log with batches in epochs 0, 0, 2, 2, 2, 5 (epochs 1, 3 and 4
/// led elsewhere with nothing appended), in small segments.
fn leader_with_epochs(s: &MemStorage) -> (Log<MemStorage>, Vec<Sent>) {
    let log = open(s, small_segments());
    let mut sent = Vec::new();
    for (i, epoch) in [0, 0, 2, 2, 2, 5].into_iter().enumerate() {
        for j in 0..20u64 {
            let bytes = tagged_batch(i as u64 * 100 + j, 1 + j as usize % 3, 400, 1_000 + i as i64);
            let info = block_on(log.append(bytes.clone(), opts_at(epoch, 1_000, Durability::Written))).unwrap();
            sent.push(Sent { base: info.base_offset, epoch, bytes });
        }
    }
    (log, sent)
}

#[test]
fn a_log_replicated_from_another_reads_back_identical() {
    let s = MemStorage::new();
    let (leader, sent) = leader_with_epochs(&s);
    let follower = open_at(&s, &follower_dir(), small_segments());
    // Fetches of different sizes, so some hold several epochs at once.
    for (i, records) in fetch_all(&leader, 0, 7_000).into_iter().enumerate() {
        let d = if i % 2 == 0 { Durability::Written } else { Durability::Durable };
        let info = block_on(follower.append_replicated(records.clone(), replica_opts(d))).unwrap();
        assert_eq!(info.base_offset, i64::from_be_bytes(records[0..8].try_into().unwrap()));
    }
    block_on(assert_log_is(&follower, 0, &sent));
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(follower.epochs(), leader.epochs());
    assert_eq!(
        follower.epochs(),
        vec![
            EpochEntry { epoch: 0, start_offset: 0 },
            EpochEntry { epoch: 2, start_offset: sent[40].base },
            EpochEntry { epoch: 5, start_offset: sent[100].base },
        ]
    );
    for asked in 0..7 {
        assert_eq!(follower.end_offset_for_epoch(asked), leader.end_offset_for_epoch(asked), "epoch {asked}");
    }
    assert!(follower.segment_count() > 1, "the follower rolled segments too");
}

#[test]
fn replicated_batches_survive_crashes_with_their_epochs() {
    let s = MemStorage::new();
    let (leader, sent) = leader_with_epochs(&s);
    let fetches = fetch_all(&leader, 0, 5_000);
    let mut follower = open_at(&s, &follower_dir(), small_segments());
    let half = fetches.len() / 2;
    for records in &fetches[..half] {
        block_on(follower.append_replicated(records.clone(), replica_opts(Durability::Written))).unwrap();
    }
    // A process crash keeps every written append.
    drop(follower);
    s.crash_process();
    follower = open_at(&s, &follower_dir(), small_segments());
    let end = follower.log_end_offset();
    let kept = sent.iter().take_while(|b| b.base < end).count();
    block_on(assert_log_is(&follower, 0, &sent[..kept]));
    assert_eq!(end, i64::from_be_bytes(fetches[half][0..8].try_into().unwrap()));
    for records in &fetches[half..] {
        block_on(follower.append_replicated(records.clone(), replica_opts(Durability::Durable))).unwrap();
    }
    // A power loss keeps every durable one, and the epochs with them.
    drop(follower);
    s.crash_power(7);
    let follower = open_at(&s, &follower_dir(), small_segments());
    block_on(assert_log_is(&follower, 0, &sent));
    assert_eq!(follower.epochs(), leader.epochs());
}

fn one_record_batch(base: i64, epoch: i32) -> Bytes {
    encode_batch_at(base, epoch, &[NewRecord { key: Some(b"k"), value: Some(b"v") }], 1_000)
}

fn concat(parts: &[Bytes]) -> Bytes {
    Bytes::from(parts.concat())
}

#[test]
fn batches_that_do_not_continue_the_log_are_refused_whole() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    let append = |b: Bytes| block_on(log.append_replicated(b, replica_opts(Durability::Written)));
    append(concat(&[one_record_batch(0, 3), one_record_batch(1, 3)])).unwrap();

    // A gap, an overlap, a gap inside one fetch's records.
    assert!(matches!(append(one_record_batch(3, 3)), Err(AppendError::NotContiguous { expected: 2, found: 3 })));
    assert!(matches!(append(one_record_batch(1, 3)), Err(AppendError::NotContiguous { expected: 2, found: 1 })));
    assert!(matches!(
        append(concat(&[one_record_batch(2, 3), one_record_batch(4, 3)])),
        Err(AppendError::NotContiguous { expected: 3, found: 4 })
    ));
    // Epochs never go down, between calls or inside one.
    assert!(matches!(append(one_record_batch(2, 2)), Err(AppendError::EpochRegression { epoch: 2, latest: 3 })));
    assert!(matches!(
        append(concat(&[one_record_batch(2, 4), one_record_batch(3, 3)])),
        Err(AppendError::EpochRegression { epoch: 3, latest: 4 })
    ));
    // Nothing of a refused call was written, and the log goes on.
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.epochs(), vec![EpochEntry { epoch: 3, start_offset: 0 }]);
    append(concat(&[one_record_batch(2, 3), one_record_batch(3, 6)])).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.epochs(), vec![EpochEntry { epoch: 3, start_offset: 0 }, EpochEntry { epoch: 6, start_offset: 3 }]);
    // A corrupt batch is still a corrupt batch.
    let mut bad = one_record_batch(4, 6).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(append(Bytes::from(bad)), Err(AppendError::Batch(_))));
}

#[test]
fn a_follower_takes_batches_larger_than_its_topic_max_message_bytes() {
    let s = MemStorage::new();
    let config = spindle_engine::LogConfig { max_message_bytes: 1024, ..small_segments() };
    let log = open(&s, config);
    let big = tagged_batch(1, 2, 3_000, 1_000);
    assert!(matches!(
        block_on(log.append(big.clone(), opts(Durability::Written))),
        Err(AppendError::Batch(e)) if e.kind() == spindle_engine::BatchErrorKind::TooLarge
    ));
    let mut replicated = big.to_vec();
    replicated[12..16].copy_from_slice(&0i32.to_be_bytes());
    block_on(log.append_replicated(Bytes::from(replicated), replica_opts(Durability::Written))).unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn a_leader_append_in_a_stale_epoch_is_refused() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    block_on(log.append(tagged_batch(1, 1, 10, 1), opts_at(4, 1_000, Durability::Written))).unwrap();
    block_on(log.assign_epoch(7)).unwrap();
    let stale = block_on(log.append(tagged_batch(2, 1, 10, 1), opts_at(4, 1_000, Durability::Written)));
    assert!(matches!(stale, Err(AppendError::StaleEpoch { epoch: 4, latest: 7 })), "{stale:?}");
    assert_eq!(log.log_end_offset(), 1);
    let info = block_on(log.append(tagged_batch(3, 1, 10, 1), opts_at(7, 1_000, Durability::Written))).unwrap();
    assert_eq!(info.base_offset, 1);
    let read = block_on(read_all(&log, 0));
    assert_eq!(read.iter().map(|b| b.header.leader_epoch.get()).collect::<Vec<_>>(), vec![4, 7]);
}

// Found by the replication simulator: a leader deposed before its first
// append keeps an empty epoch at its log end; as a follower it truncates to
// its own end, which must drop that epoch, or its fetches name an epoch the
// new leader never had and it never rejoins.
#[test]
fn truncating_to_the_end_drops_an_epoch_that_starts_there() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    block_on(log.append(tagged_batch(1, 2, 10, 1), opts_at(3, 1_000, Durability::Written))).unwrap();
    block_on(log.assign_epoch(5)).unwrap();
    assert_eq!(log.epochs().last(), Some(&EpochEntry { epoch: 5, start_offset: 2 }));
    assert_eq!(block_on(log.truncate_to(2)).unwrap(), 2);
    assert_eq!(log.epochs(), vec![EpochEntry { epoch: 3, start_offset: 0 }]);
    // And it stays dropped after a restart.
    drop(log);
    s.crash_process();
    let log = open(&s, small_segments());
    assert_eq!(log.epochs(), vec![EpochEntry { epoch: 3, start_offset: 0 }]);
    assert_eq!(log.log_end_offset(), 2);
}

// Kafka's truncateFullyAndStartAt: a follower that fell behind the
// leader's log start drops everything, continues at that offset with the
// leader's batches, and keeps that state across a crash.
#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let s = MemStorage::new();
    let (leader, sent) = leader_with_epochs(&s);
    let fetches = fetch_all(&leader, 0, 5_000);
    let follower = open_at(&s, &follower_dir(), small_segments());
    block_on(follower.append_replicated(fetches[0].clone(), replica_opts(Durability::Durable))).unwrap();
    let restart = sent[50].base;
    assert!(follower.log_end_offset() < restart);

    block_on(follower.truncate_fully_and_start_at(restart)).unwrap();
    assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (restart, restart));
    assert!(follower.epochs().is_empty(), "{:?}", follower.epochs());
    assert!(block_on(follower.read(restart, 1 << 20, i64::MAX)).unwrap().is_empty());
    for records in fetch_all(&leader, restart, 5_000) {
        block_on(follower.append_replicated(records, replica_opts(Durability::Durable))).unwrap();
    }
    block_on(assert_log_is(&follower, restart, &sent[50..]));
    // The leader's epochs from the restart point on.
    assert_eq!(follower.end_offset_for_epoch(5), leader.end_offset_for_epoch(5));

    drop(follower);
    s.crash_power(3);
    let follower = open_at(&s, &follower_dir(), small_segments());
    assert_eq!(follower.log_start_offset(), restart);
    block_on(assert_log_is(&follower, restart, &sent[50..]));
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
}
