//! The ack journal: a journaled append returns before its write, its copy
//! is released once written, and after a process crash the copies bring
//! back exactly what the log lacks.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::journal::{recover, JOURNAL_BYTES_MIN};
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::storage::Storage;
use spindle_engine::{AckJournal, Durability, Log, LogConfig};
use std::path::PathBuf;
use std::rc::Rc;

const KEY: &str = "topic-id-0";

fn tiny_segments() -> LogConfig {
    LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() }
}

fn journal_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spindle-ack-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("core0.journal")
}

/// A fresh journal named after the test, attached to `log`.
fn attach<S: Storage>(log: &Log<S>, name: &str) -> (PathBuf, Rc<AckJournal>) {
    let path = journal_path(name);
    let journal = Rc::new(AckJournal::create(&path, &dir(), JOURNAL_BYTES_MIN).unwrap());
    log.attach_journal(journal.clone(), KEY.into());
    (path, journal)
}

fn journaled(log: &Log<MemStorage>, tag: u64) -> Sent {
    let bytes = tagged_batch(tag, 2, 40 + tag as usize, 1_000 + tag as i64);
    let info = block_on(log.append(bytes.clone(), opts(Durability::Journaled))).unwrap();
    Sent { base: info.base_offset, epoch: 0, bytes }
}

fn entries_of(path: &std::path::Path, key: &str) -> Vec<bytes::Bytes> {
    recover(path).unwrap().entries.into_iter().filter(|(k, _)| k == key).map(|(_, d)| d).collect()
}

#[test]
fn journaled_appends_return_before_their_writes_and_come_back_after_a_process_crash() {
    let s = MemStorage::new();
    let log = open(&s, tiny_segments());
    let (path, journal) = attach(&log, "crash");
    let sent: Vec<Sent> = (0..30).map(|i| journaled(&log, i)).collect();
    let end = sent.last().unwrap().base + 2;
    assert_eq!(log.log_end_offset(), end);
    assert!(log.offsets().written < end, "nothing drove the last writes: they are only staged");
    assert!(journal.pending() > 0);
    // The process dies: staged batches are lost, the journal's file stays.
    drop(log);
    s.crash_process();
    let log = open(&s, tiny_segments());
    let before = log.log_end_offset();
    assert!(before < end, "the crash lost the unwritten appends ({before} of {end})");
    let replayed = block_on(log.replay_journal(entries_of(&path, KEY), 0)).unwrap();
    assert_eq!(replayed, ((end - before) as u64, 0), "exactly the missing records come back");
    block_on(assert_log_is(&log, 0, &sent));
    assert_eq!(log.offsets().written, end, "replay returns once written");
    // Replaying again (a crash during the first replay) adds nothing.
    assert_eq!(block_on(log.replay_journal(entries_of(&path, KEY), 0)).unwrap(), (0, 0));
    block_on(assert_log_is(&log, 0, &sent));
    drop(journal);
}

#[test]
fn an_entry_is_released_once_its_batches_are_written() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let (path, journal) = attach(&log, "release");
    let a = journaled(&log, 1);
    let b = journaled(&log, 2);
    assert_eq!(journal.pending(), 2);
    // The copies a crash right now would replay, kept for below.
    let copies = entries_of(&path, KEY);
    assert_eq!(copies.len(), 2);
    // One round writes everything staged, so both go at once.
    block_on(log.wait_written(a.base + 2)).unwrap();
    assert_eq!(log.offsets().written, b.base + 2);
    assert_eq!(journal.pending(), 0);
    assert!(entries_of(&path, KEY).is_empty(), "a released entry is not recovered");
    // Copies of batches already written are skipped, not appended twice.
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    assert_eq!(block_on(log.replay_journal(copies, 0)).unwrap(), (0, 0));
    block_on(assert_log_is(&log, 0, &[a, b]));
    drop(journal);
}

#[test]
fn without_room_in_the_journal_an_append_waits_for_its_write() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let (_, journal) = attach(&log, "full");
    // Four batches of 300 KiB: the fourth does not fit in 1 MiB of ring.
    for tag in 0..4u64 {
        let bytes = tagged_batch(tag, 1, 300 * 1024, tag as i64);
        let info = block_on(log.append(bytes, opts(Durability::Journaled))).unwrap();
        if tag == 3 {
            assert!(log.offsets().written > info.last_offset, "the refused append returned once written");
        }
    }
    assert_eq!(journal.counts(), (3, 1));
    assert_eq!(journal.pending(), 0, "the fourth append's write wrote the three before it");
    drop(journal);
}

#[test]
fn a_written_append_and_a_log_without_journal_ignore_it() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    // No journal attached: Journaled is Written.
    let a = journaled(&log, 1);
    assert_eq!(log.offsets().written, a.base + 2);
    let (_, journal) = attach(&log, "written");
    let bytes = tagged_batch(2, 2, 10, 2);
    block_on(log.append(bytes, opts(Durability::Written))).unwrap();
    assert_eq!(journal.counts(), (0, 0), "only Journaled appends are copied");
    drop(journal);
}

#[test]
fn a_truncation_releases_the_entries_it_cuts() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let (path, journal) = attach(&log, "truncate");
    let a = journaled(&log, 1);
    journaled(&log, 2);
    assert_eq!(journal.pending(), 2);
    block_on(log.truncate_to(a.base + 2)).unwrap();
    assert_eq!(journal.pending(), 0);
    assert!(entries_of(&path, KEY).is_empty(), "a crash now must not bring back the cut batch");
    drop(journal);
}

#[test]
fn an_entry_whose_first_batches_are_in_the_log_adds_only_the_rest() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let (path, journal) = attach(&log, "partial");
    // One append of three batches: one journal entry.
    let parts: Vec<bytes::Bytes> = (0..3u64).map(|t| tagged_batch(t, 2, 30, t as i64)).collect();
    let joined: Vec<u8> = parts.iter().flat_map(|b| b.to_vec()).collect();
    block_on(log.append(joined.into(), opts(Durability::Journaled))).unwrap();
    let entries = entries_of(&path, KEY);
    assert_eq!(entries.len(), 1);
    // The log after a crash holds the first batch only.
    block_on(log.wait_written(6)).unwrap();
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    block_on(log.truncate_to(2)).unwrap();
    assert_eq!(block_on(log.replay_journal(entries, 0)).unwrap(), (4, 0));
    let sent: Vec<Sent> =
        parts.into_iter().enumerate().map(|(i, bytes)| Sent { base: 2 * i as i64, epoch: 0, bytes }).collect();
    block_on(assert_log_is(&log, 0, &sent));
    drop(journal);
}

#[test]
fn readers_see_journaled_batches_but_not_past_one_neither_journaled_nor_written() {
    let s = SlowStorage::default();
    let log = open_at(&s, &dir(), LogConfig::default());
    let (_, journal) = attach(&log, "visible");
    let first = tagged_batch(1, 2, 10, 1);
    block_on(log.append(first.clone(), opts(Durability::Journaled))).unwrap();
    assert_eq!(log.offsets().written, 0);
    assert_eq!(log.high_watermark(), 2, "a journaled append is visible before its write");
    let got = block_on(log.read(0, 1 << 20, i64::MAX)).unwrap();
    assert_eq!(got.len(), 1, "served from the cache");
    assert_eq!(wire(&got[0]), expected_wire(&first, 0, 0));
    // An append that is not journaled (here one asking for Written; or one
    // the journal had no room for) holds the visible end until written, and
    // a journaled append after it is acknowledged only once it is written:
    // a crash before then would leave a gap the journal cannot fill.
    block_on(async {
        let held = log.append(tagged_batch(2, 2, 10, 2), opts(Durability::Written));
        let check = async {
            // Polled right after the held append's first poll: staged, its
            // write in flight.
            assert_eq!(log.log_end_offset(), 4, "the held append staged");
            assert!(log.offsets().written < 4);
            assert_eq!(log.high_watermark(), 2);
            log.append(tagged_batch(3, 2, 10, 3), opts(Durability::Journaled)).await.unwrap();
            assert!(log.offsets().written >= 4, "acknowledged once the append before it was written");
            assert_eq!(journal.pending(), 1, "and still journaled itself");
        };
        let (held, ()) = futures::future::join(held, check).await;
        held.unwrap();
    });
    assert!(log.offsets().written >= 4);
    assert_eq!(log.high_watermark(), 6, "written through the held append, journaled after");
    block_on(log.wait_written(6)).unwrap();
    assert_eq!(journal.pending(), 0);
}

#[test]
fn a_batch_after_a_gap_was_never_acknowledged_and_is_dropped() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let (path, journal) = attach(&log, "gap");
    journaled(&log, 1);
    journaled(&log, 2);
    let mut entries = entries_of(&path, KEY);
    assert_eq!(entries.len(), 2);
    // Another disk whose log lacks the first: the second cannot follow.
    entries.remove(0);
    let s2 = MemStorage::new();
    let other = open(&s2, LogConfig::default());
    assert_eq!(block_on(other.replay_journal(entries, 0)).unwrap(), (0, 1));
    assert_eq!(other.log_end_offset(), 0);
    drop(journal);
}

#[test]
fn a_journaled_batch_not_in_the_cache_is_read_once_written() {
    let s = MemStorage::new();
    // A cache with no room: journaled batches are visible but not cached.
    let log = open_with_cache(&s, LogConfig::default(), 0);
    let (_, journal) = attach(&log, "nocache");
    let a = journaled(&log, 1);
    assert_eq!(log.offsets().written, 0);
    assert_eq!(log.high_watermark(), 2);
    let got = block_on(log.read(0, 1 << 20, i64::MAX)).unwrap();
    assert_eq!(got.len(), 1, "read from disk once written, not an empty answer");
    assert_eq!(wire(&got[0]), a.wire());
    assert_eq!(log.offsets().written, 2);
    drop(journal);
}
