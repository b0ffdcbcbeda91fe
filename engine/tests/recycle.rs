//! Deleted segments' files. Recycled: retention keeps the newest deleted
//! segment's file and the next roll writes into it, over blocks already
//! written. The old batches left in it must never be read, recovered or
//! served as new ones, whatever crash comes. Discarded: the others are
//! renamed out of the log's way and handed to the storage to free later;
//! one a crash left is never read back as a segment, and is discarded again.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, Log, LogConfig};
use std::path::PathBuf;

/// Several sectors per segment, so old batches remain past the first
/// sector a new segment writes.
const SEG: u64 = 32 * 1024;
/// Enough batches for more than four segments.
const FILL: u64 = 200;

fn cfg(recycle_segments: bool) -> LogConfig {
    LogConfig { segment_bytes: SEG, recycle_segments, ..LogConfig::default() }
}

/// Stored size of every batch: four to a sector, so a segment's data often
/// ends exactly where an old batch of a recycled file begins.
const STORED_BATCH_BYTES: usize = 1024;

/// A batch of two records tagged `tag`, stored in [`STORED_BATCH_BYTES`]
/// (a stored header of 72 bytes replaces Kafka's 61).
fn batch(tag: u64) -> bytes::Bytes {
    (1..STORED_BATCH_BYTES)
        .map(|value_len| tagged_batch(tag, 2, value_len, 1_000 * tag as i64))
        .find(|b| b.len() - 61 + 72 == STORED_BATCH_BYTES)
        .expect("a value length that fills the batch")
}

/// Appends `n` batches of the same size tagged from `first_tag`.
fn fill(log: &Log<MemStorage>, first_tag: u64, n: u64, durability: Durability) -> Vec<Sent> {
    (first_tag..first_tag + n)
        .map(|i| {
            let bytes = batch(i);
            let info = block_on(log.append(bytes.clone(), opts(durability))).unwrap();
            Sent { base: info.base_offset, epoch: 0, bytes }
        })
        .collect()
}

/// The recycled files in the log directory.
fn recycled(s: &MemStorage) -> Vec<PathBuf> {
    s.file_names().into_iter().filter(|p| p.extension().is_some_and(|e| e == "recycled")).collect()
}

/// Appends until the log rolls into a new segment; returns its base.
fn fill_until_roll(log: &Log<MemStorage>, s: &MemStorage, first_tag: u64, sent: &mut Vec<Sent>) -> i64 {
    let before = segment_bases(s);
    let mut tag = first_tag;
    loop {
        sent.extend(fill(log, tag, 1, Durability::Durable));
        tag += 1;
        let now = segment_bases(s);
        if now.last() != before.last() {
            return *now.last().unwrap();
        }
    }
}

fn reused() -> u64 {
    spindle_engine::stats::snapshot().segments_recycled
}

#[test]
fn a_roll_after_retention_writes_over_a_deleted_segment_file() {
    let s = MemStorage::new();
    let log = open(&s, cfg(true));
    let mut sent = fill(&log, 0, FILL, Durability::Durable);
    // Two runs that delete nothing: no roll in the last two intervals.
    block_on(log.enforce_retention(0)).unwrap();
    block_on(log.enforce_retention(0)).unwrap();
    fill_until_roll(&log, &s, 500, &mut sent);
    let bases = segment_bases(&s);
    assert!(bases.len() >= 6, "{bases:?}");
    // One roll since the last run: of the three segments deleted, the two
    // newest ones' files are kept, the oldest is removed.
    assert_eq!(block_on(log.delete_records(bases[3])).unwrap(), bases[3]);
    assert_eq!(segment_bases(&s), bases[3..].to_vec());
    let kept = |b: i64| dir().join(format!("{b:020}.recycled"));
    assert_eq!(recycled(&s), vec![kept(bases[2]), kept(bases[3])]);
    assert!(!s.file_names().contains(&seg_path(bases[2], "index")), "the kept files' indexes are gone");
    // The newest is used first.
    let old = s.contents(&kept(bases[3])).unwrap();

    let before = reused();
    let base = fill_until_roll(&log, &s, 1_000, &mut sent);
    assert_eq!(reused(), before + 1);
    assert_eq!(recycled(&s), vec![kept(bases[2])]);
    // The new segment is the old file: its first batch is new, and the old
    // bytes past it are still there.
    let now = s.contents(&seg_path(base, "log")).unwrap();
    assert!(now.len() >= old.len());
    assert_ne!(now[..4096], old[..4096]);
    assert_eq!(now[4096..old.len()], old[4096..]);
    let from = |sent: &[Sent], start: i64| sent.iter().position(|x| x.base == start).unwrap();
    block_on(assert_log_is(&log, bases[3], &sent[from(&sent, bases[3])..]));

    // Four rolls since the last run (the one file left used first): five
    // files kept now, so the four segments deleted are all kept, and the
    // next five rolls write over them.
    for k in 0..3 {
        fill_until_roll(&log, &s, 2_000 + 100 * k, &mut sent);
    }
    assert_eq!(reused(), before + 2);
    assert!(recycled(&s).is_empty());
    let bases = segment_bases(&s);
    block_on(log.delete_records(bases[4])).unwrap();
    assert_eq!(recycled(&s).len(), 4);
    for k in 0..4 {
        fill_until_roll(&log, &s, 3_000 + 100 * k, &mut sent);
    }
    assert_eq!(reused(), before + 6);
    assert!(recycled(&s).is_empty());
    block_on(assert_log_is(&log, bases[4], &sent[from(&sent, bases[4])..]));

    // Files no roll used are trimmed to one more than the rolls in the
    // longer of the last two intervals.
    let bases = segment_bases(&s);
    block_on(log.delete_records(*bases.last().unwrap())).unwrap();
    assert_eq!(recycled(&s).len(), 5);
    block_on(log.enforce_retention(0)).unwrap();
    assert_eq!(recycled(&s).len(), 5, "four rolls in the interval before");
    block_on(log.enforce_retention(0)).unwrap();
    assert_eq!(recycled(&s).len(), 1, "no roll in the last two intervals");
}

/// The old batches in a recycled file lie at the same positions a new
/// segment of the same batch sizes uses. After any crash, recovery must
/// stop at the first one, as at any other torn or garbage tail.
#[test]
fn old_batches_in_a_recycled_file_never_come_back_after_a_crash() {
    for crash in 0..6u64 {
        let s = MemStorage::new();
        let log = open(&s, cfg(true));
        let mut sent = fill(&log, 0, FILL, Durability::Durable);
        let bases = segment_bases(&s);
        block_on(log.delete_records(bases[2])).unwrap();
        let before = reused();
        let base = fill_until_roll(&log, &s, 1_000, &mut sent);
        assert_eq!(reused(), before + 1, "rolled into a recycled file");
        // Three more beside the one that rolled, ending on a sector
        // boundary, where the old file's next batch begins, at the very
        // offset the log would give its next batch if they were not older.
        sent.extend(fill(&log, 3_000, 3, Durability::Written));
        let end = sent.last().unwrap().next();
        drop(log);
        if crash == 0 {
            s.crash_process();
        } else {
            s.crash_power(crash);
        }
        let log = open(&s, cfg(true));
        // A power loss may take the unsynced batches; never more, and
        // never an old batch in their place.
        let kept: Vec<Sent> =
            sent.iter().filter(|x| x.base >= bases[2] && x.next() <= log.log_end_offset()).cloned().collect();
        assert!(log.log_end_offset() <= end, "crash {crash}: old batches came back");
        assert!(crash > 0 || log.log_end_offset() == end, "a process crash loses nothing written");
        assert!(log.log_end_offset() > base, "crash {crash}: the durable batch at the base survives");
        block_on(assert_log_is(&log, bases[2], &kept));
        // Appends go on at the recovered end, and a reopen finds exactly them.
        let more = fill(&log, 4_000, 3, Durability::Durable);
        assert_eq!(more[0].base, log.log_end_offset() - 6);
        drop(log);
        s.crash_process();
        let log = open(&s, cfg(true));
        let all: Vec<Sent> = kept.into_iter().chain(more).collect();
        block_on(assert_log_is(&log, bases[2], &all));
    }
}

/// A follower truncated below the offsets of the kept file (Kafka's
/// truncate-fully) rolls again at offsets the old batches carry: that file
/// must not be reused, or a crash would bring its batches back as new ones.
#[test]
fn a_recycled_file_is_never_reused_below_its_end() {
    let s = MemStorage::new();
    let log = open(&s, cfg(true));
    fill(&log, 0, FILL, Durability::Durable);
    block_on(log.enforce_retention(0)).unwrap();
    fill_until_roll(&log, &s, 500, &mut Vec::new());
    // One roll since the last run: both files are kept.
    let bases = segment_bases(&s);
    block_on(log.delete_records(bases[2])).unwrap();
    assert_eq!(recycled(&s).len(), 2);

    // Start again at the first segment's base: batches of the same size
    // roll exactly where the newer kept file's segment began. That file is
    // removed; the older one, whose batches all lie below, is reused.
    block_on(log.truncate_fully_and_start_at(bases[0])).unwrap();
    let mut sent = Vec::new();
    let before = reused();
    let base = fill_until_roll(&log, &s, 1_000, &mut sent);
    assert_eq!(base, bases[1], "rolled at the newer kept file's old base");
    assert!(recycled(&s).is_empty(), "one file removed, one reused");
    assert_eq!(reused(), before + 1);
    // Up to a sector boundary: were the old file reused, its next batch
    // would follow, with the offset expected next.
    sent.extend(fill(&log, 2_000, 3, Durability::Durable));
    drop(log);
    s.crash_process();
    let log = open(&s, cfg(true));
    assert_eq!(log.log_end_offset(), sent.last().unwrap().next());
    block_on(assert_log_is(&log, bases[0], &sent));
}

#[test]
fn the_kept_file_survives_a_restart_and_is_dropped_when_recycling_is_off() {
    let s = MemStorage::new();
    let log = open(&s, cfg(true));
    let mut sent = fill(&log, 0, FILL, Durability::Durable);
    let bases = segment_bases(&s);
    block_on(log.delete_records(bases[3])).unwrap();
    // The log rolled more often than that since it opened: all three kept.
    assert_eq!(recycled(&s).len(), 3);
    block_on(log.close()).unwrap();
    drop(log);

    let log = open(&s, cfg(true));
    let before = reused();
    fill_until_roll(&log, &s, 1_000, &mut sent);
    assert_eq!(reused(), before + 1);
    // One roll since: two files at most, so the two left stay and none of
    // the segments deleted now joins them.
    block_on(log.delete_records(*segment_bases(&s).last().unwrap())).unwrap();
    assert_eq!(recycled(&s).len(), 2);
    drop(log);
    s.crash_process();

    let log = open(&s, cfg(false));
    assert!(recycled(&s).is_empty(), "removed at open with recycling off");
    let bases = segment_bases(&s);
    fill(&log, 2_000, FILL, Durability::Durable);
    let before = reused();
    block_on(log.delete_records(*segment_bases(&s).last().unwrap())).unwrap();
    assert!(recycled(&s).is_empty(), "deleted segments are removed with recycling off");
    for b in bases {
        assert!(!s.file_names().contains(&seg_path(b, "log")));
    }
    fill(&log, 3_000, FILL, Durability::Durable);
    assert_eq!(reused(), before);
}

/// A kept file removed behind the log's back (by hand, say) is no reason
/// to fail a roll: the log creates a new file instead.
#[test]
fn a_kept_file_that_is_gone_gives_a_new_file() {
    use spindle_engine::storage::Storage;
    let s = MemStorage::new();
    let log = open(&s, cfg(true));
    let mut sent = fill(&log, 0, FILL, Durability::Durable);
    let bases = segment_bases(&s);
    block_on(log.delete_records(bases[2])).unwrap();
    for p in recycled(&s) {
        block_on(s.remove(&p)).unwrap();
    }
    let before = reused();
    fill_until_roll(&log, &s, 1_000, &mut sent);
    assert_eq!(reused(), before);
    let more = fill(&log, 2_000, 3, Durability::Durable);
    sent.extend(more);
    let from = sent.iter().position(|x| x.base == bases[2]).unwrap();
    block_on(assert_log_is(&log, bases[2], &sent[from..]));
}

/// A removal of kept files that fails part-way leaves the files it did not
/// remove in the log's hands: the next run removes them, instead of their
/// staying on disk unseen until the log is opened again.
#[test]
fn kept_files_a_failed_removal_left_are_removed_by_the_next_run() {
    use spindle_engine::storage::memory::{FaultKind, FaultOn};
    let s = MemStorage::new();
    let log = open(&s, cfg(true));
    let mut sent = fill(&log, 0, FILL, Durability::Durable);
    let bases = segment_bases(&s);
    block_on(log.delete_records(bases[4])).unwrap();
    assert_eq!(recycled(&s).len(), 4);
    block_on(log.enforce_retention(0)).unwrap();
    assert_eq!(recycled(&s).len(), 4, "rolls in the interval before");

    // No roll in the last two intervals: three of the four are extra. The
    // second removal fails.
    s.fail_after(1, FaultOn::NameChanges, FaultKind::Eio);
    assert!(block_on(log.enforce_retention(0)).is_err());
    assert_eq!(recycled(&s).len(), 3);
    s.clear_faults();
    block_on(log.enforce_retention(0)).unwrap();
    assert_eq!(recycled(&s).len(), 1, "the files the failed run left are removed");

    // The one left is still used, and the log is whole.
    let before = reused();
    fill_until_roll(&log, &s, 1_000, &mut sent);
    assert_eq!(reused(), before + 1);
    assert!(recycled(&s).is_empty());
    let from = sent.iter().position(|x| x.base == bases[4]).unwrap();
    block_on(assert_log_is(&log, bases[4], &sent[from..]));
}

#[test]
fn deleted_segments_are_renamed_away_and_discarded_again_after_a_crash_before_they_are_freed() {
    let s = MemStorage::new();
    s.hold_discards();
    let log = open(&s, cfg(false));
    let sent = fill(&log, 0, FILL, Durability::Durable);
    let bases = segment_bases(&s);
    block_on(log.delete_records(bases[3])).unwrap();

    let held = s.discarded();
    assert_eq!(held.len(), 3, "{held:?}");
    for (p, base) in held.iter().zip(&bases) {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("{base:020}.log.")) && name.ends_with(".deleted"), "{name}");
        assert!(s.contents(p).is_some_and(|c| !c.is_empty()), "not freed yet: {name}");
    }
    assert_eq!(segment_bases(&s), bases[3..]);

    // The process dies before the storage freed them: the next open finds
    // them, leaves them out of the log and discards them again.
    drop(log);
    s.crash_process();
    assert!(s.discarded().is_empty());
    let log = open(&s, cfg(false));
    let mut again = s.discarded();
    again.sort();
    assert_eq!(again, held);
    s.free_discarded();
    assert!(s.file_names().iter().all(|p| !p.to_string_lossy().ends_with(".deleted")));
    let from = sent.iter().position(|x| x.base == bases[3]).unwrap();
    block_on(assert_log_is(&log, bases[3], &sent[from..]));
    assert_eq!(log.log_start_offset(), bases[3]);
}
