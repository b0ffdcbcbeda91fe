//! Crash recovery: process crashes keep every written append, power losses
//! keep every durable one and leave a clean prefix, torn and garbage tails
//! are cut, index files are checked rather than trusted, and the
//! clean-shutdown marker only ever describes the shutdown that wrote it.

mod common;
use common::*;
use futures::future::join_all;
use futures_lite::future::block_on;
use spindle_engine::index::SegmentIndex;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, Log, LogConfig, ReadError, CLEAN_SHUTDOWN_FILE};

fn tiny_segments() -> LogConfig {
    LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() }
}

fn append_one(log: &Log<MemStorage>, tag: u64, n: usize, value_len: usize, d: Durability) -> Sent {
    let bytes = tagged_batch(tag, n, value_len, 1_000 + tag as i64);
    let info = block_on(log.append(bytes.clone(), opts(d))).unwrap();
    Sent { base: info.base_offset, epoch: 0, bytes }
}

/// Asserts that the log holds a prefix of `sent` that includes everything
/// below `durable_end`, and returns that prefix's length.
fn assert_prefix_with_durable(log: &Log<MemStorage>, sent: &[Sent], durable_end: i64) -> usize {
    let got = block_on(read_all(log, 0));
    assert!(got.len() <= sent.len(), "recovered {} batches, only {} were appended", got.len(), sent.len());
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(wire(g), s.wire(), "recovered batch at {} differs from what was appended", s.base);
    }
    let end = got.last().map_or(0, |v| v.header.next_offset());
    assert_eq!(log.log_end_offset(), end);
    assert!(end >= durable_end, "lost durable data: recovered to {end}, acknowledged durable to {durable_end}");
    got.len()
}

#[test]
fn every_written_append_survives_a_process_crash() {
    let s = MemStorage::new();
    let mut log = open(&s, tiny_segments());
    let mut sent = Vec::new();
    for round in 0..4u64 {
        for i in 0..40 {
            sent.push(append_one(&log, round * 100 + i, 1 + i as usize % 4, 30 + i as usize * 13, Durability::Written));
        }
        drop(log);
        s.crash_process();
        log = open(&s, tiny_segments());
        block_on(assert_log_is(&log, 0, &sent));
        assert!(log.segment_count() > round as usize + 1);
    }
}

#[test]
fn concurrent_written_appends_survive_a_process_crash() {
    let s = SlowStorage::default();
    let log = open_at(&s, &dir(), tiny_segments());
    let batches: Vec<_> = (0..50u64).map(|i| tagged_batch(i, 3, 90, i as i64)).collect();
    let infos = block_on(join_all(batches.iter().map(|b| log.append(b.clone(), opts(Durability::Written)))));
    let sent: Vec<Sent> = infos
        .into_iter()
        .zip(batches)
        .map(|(i, bytes)| Sent { base: i.unwrap().base_offset, epoch: 0, bytes })
        .collect();
    drop(log);
    s.mem.crash_process();
    let log = open_at(&s, &dir(), tiny_segments());
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn power_loss_keeps_every_durable_append_and_a_prefix_of_the_rest() {
    for seed in 0..60u64 {
        let s = MemStorage::new();
        let log = open(&s, tiny_segments());
        let mut rng = TestRng(seed);
        let mut sent = Vec::new();
        let mut durable_end = 0;
        for i in 0..(10 + rng.below(40)) {
            let d = if rng.below(3) == 0 { Durability::Durable } else { Durability::Written };
            let x = append_one(&log, i, 1 + rng.below(5) as usize, rng.below(600) as usize, d);
            if d == Durability::Durable {
                durable_end = x.next();
            }
            sent.push(x);
        }
        drop(log);
        s.crash_power(seed);
        let log = open(&s, tiny_segments());
        let kept = assert_prefix_with_durable(&log, &sent, durable_end);
        sent.truncate(kept);

        // Appending after recovery continues at the recovered end, and
        // survives the next power loss.
        let end = log.log_end_offset();
        let mut durable_end = end;
        for i in 0..5 {
            let d = if i % 2 == 0 { Durability::Durable } else { Durability::Written };
            let x = append_one(&log, 1_000 + i, 2, 100, d);
            assert_eq!(x.base, sent.last().map_or(0, |l| l.next()), "seed {seed}");
            if d == Durability::Durable {
                durable_end = x.next();
            }
            sent.push(x);
        }
        assert!(durable_end > end);
        drop(log);
        s.crash_power(seed.wrapping_mul(31) + 1);
        let log = open(&s, tiny_segments());
        assert_prefix_with_durable(&log, &sent, durable_end);
    }
}

#[test]
fn process_crash_then_power_loss_keeps_what_was_durable_after_reopen() {
    // Regression: open() made only the active segment durable, yet set the
    // durable offset to the log end. Sealed segments written (not synced)
    // before a process crash stayed unsynced, so a later power loss could
    // tear them and recovery dropped every later segment, including appends
    // acknowledged Durable after the reopen. Segments ending exactly on a
    // sector boundary were not even cut (and synced) by the recovery scan.
    for seed in 0..20u64 {
        let s = MemStorage::new();
        let log = open(&s, tiny_segments());
        // Batches of exactly one sector (72-byte header + 4024 payload bytes),
        // two per 8 KiB segment: every segment ends on a sector boundary.
        let value = vec![b'v'; 4013];
        let one_sector = || {
            let b = kafka_batch(std::slice::from_ref(&value), 1);
            assert_eq!(b.len() - 61 + 72, 4096);
            b
        };
        let mut sent = Vec::new();
        for _ in 0..7 {
            let bytes = one_sector();
            let info = block_on(log.append(bytes.clone(), opts(Durability::Written))).unwrap();
            sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
        }
        assert!(log.segment_count() >= 3);
        drop(log);
        s.crash_process();
        let log = open(&s, tiny_segments());
        assert_eq!(log.offsets().durable, 7);
        let x = append_one(&log, 9, 1, 10, Durability::Durable);
        sent.push(x);
        drop(log);
        s.crash_power(seed);
        let log = open(&s, tiny_segments());
        block_on(assert_log_is(&log, 0, &sent));
    }
}

#[test]
fn segment_sealed_by_age_keeps_appends_after_its_successor_is_lost() {
    // Regression: a segment sealed by segment.ms gets a "sealed" index as
    // soon as its data is durable. If a power loss then empties its
    // successor, recovery drops the successor and makes the sealed segment
    // active again, but kept trusting its sealed index: appends that went
    // into it after the reopen (even durable ones) vanished at the next
    // recovery, which stopped at the old sealed end.
    let cfg = LogConfig { segment_ms: 1_000, ..LogConfig::default() };
    let mut reproduced = 0;
    for seed in 0..200u64 {
        let s = SlowStorage::default();
        let log = open_at(&s, &dir(), cfg.clone());
        let a = tagged_batch(1, 2, 50, 1_000);
        let b = tagged_batch(2, 2, 50, 9_000);
        // A durable; B, concurrently and only written, rolls by age, so the
        // sync for A finds the first segment sealed and complete.
        let (ra, rb) = block_on(futures::future::join(
            log.append(a.clone(), opts_at(0, 1_000, Durability::Durable)),
            log.append(b.clone(), opts_at(0, 9_000, Durability::Written)),
        ));
        assert_eq!(ra.unwrap().base_offset, 0);
        assert_eq!(rb.unwrap().base_offset, 2);
        assert_eq!(log.segment_count(), 2);
        drop(log);
        s.mem.crash_power(seed);
        let log = open_at(&s, &dir(), cfg.clone());
        let mut sent = vec![Sent { base: 0, epoch: 0, bytes: a }];
        if log.log_end_offset() != 2 {
            continue; // B survived: not the case this test is about.
        }
        reproduced += 1;
        block_on(assert_log_is(&log, 0, &sent));
        let c = tagged_batch(3, 2, 50, 1_100);
        let info = block_on(log.append(c.clone(), opts_at(0, 1_100, Durability::Durable))).unwrap();
        assert_eq!(info.base_offset, 2);
        sent.push(Sent { base: 2, epoch: 0, bytes: c });
        drop(log);
        s.mem.crash_process();
        let log = open_at(&s, &dir(), cfg.clone());
        block_on(assert_log_is(&log, 0, &sent));
        assert_eq!(log.log_end_offset(), 4);
    }
    assert!(reproduced > 10, "only {reproduced} seeds lost the successor segment");
}

#[test]
fn garbage_after_the_last_batch_is_cut_and_new_appends_survive() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let mut sent: Vec<Sent> = (0..10).map(|i| append_one(&log, i, 3, 77, Durability::Written)).collect();
    let end_pos: usize = sent.iter().map(|x| x.bytes.len() - 61 + 72).sum();
    drop(log);
    s.crash_process();
    let mut rng = TestRng(3);
    let mut garbage = rng.bytes(3_000);
    garbage[0] |= 1; // not a zero header either
    s.corrupt(&seg_path(0, "log"), end_pos as u64, &garbage);
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
    assert_eq!(s.contents(&seg_path(0, "log")).unwrap().len(), end_pos, "tail cut on disk");
    for i in 0..3 {
        sent.push(append_one(&log, 100 + i, 2, 10, Durability::Written));
    }
    assert_eq!(sent[10].base, 30);
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
    drop(log);
    s.crash_power(5);
    let log = open(&s, LogConfig::default());
    let got = block_on(read_all(&log, 0));
    assert!(got.len() >= 10, "the batches written before the first crash were made durable by recovery");
    for (g, x) in got.iter().zip(&sent) {
        assert_eq!(wire(g), x.wire());
    }
}

#[test]
fn torn_batch_at_the_tail_is_cut() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let sent: Vec<Sent> = (0..6).map(|i| append_one(&log, i, 4, 500, Durability::Written)).collect();
    let sizes: Vec<usize> = sent.iter().map(|x| x.bytes.len() - 61 + 72).collect();
    let last_start: usize = sizes[..5].iter().sum();
    drop(log);
    s.crash_process();
    // The last batch's second half never reached the disk.
    let zeros = vec![0u8; sizes[5] / 2];
    s.corrupt(&seg_path(0, "log"), (last_start + sizes[5] - zeros.len()) as u64, &zeros);
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent[..5]));
    assert_eq!(log.log_end_offset(), 20);
}

#[test]
fn stale_batch_past_a_lost_one_is_never_resurrected() {
    // Batches A, B, C were written; a power loss kept A and C but not B.
    // Recovery ends the log after A. C is valid, intact, and carries exactly
    // the offsets that come after a B-sized batch, so unless recovery removes
    // it from the file, appending B' (same size as B) and crashing would
    // bring C back as if it had been appended after B'.
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let a = append_one(&log, 1, 2, 100, Durability::Written);
    let b = append_one(&log, 2, 2, 100, Durability::Written);
    let _c = append_one(&log, 3, 2, 100, Durability::Written);
    drop(log);
    s.crash_process();
    let b_len = b.bytes.len() - 61 + 72;
    let a_len = a.bytes.len() - 61 + 72;
    s.corrupt(&seg_path(0, "log"), a_len as u64, &vec![0u8; b_len]);

    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, std::slice::from_ref(&a)));
    let b2 = append_one(&log, 22, 2, 100, Durability::Written);
    assert_eq!(b2.base, 2);
    assert_eq!(b2.bytes.len(), b.bytes.len());
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &[a.clone(), b2.clone()]));
    assert_eq!(log.log_end_offset(), 4, "the stale batch at offset 4 stays gone");
}

/// A log of several sealed segments with spread timestamps, cleanly closed.
fn closed_log_with_indexes() -> (MemStorage, Vec<Sent>, Vec<i64>) {
    let s = MemStorage::new();
    let log = open(&s, LogConfig { segment_bytes: 16 * 1024, ..LogConfig::default() });
    let mut sent = Vec::new();
    for i in 0..120u64 {
        let bytes = tagged_batch(i, 3, 150, 10_000 + i as i64 * 10);
        let info = block_on(log.append(bytes.clone(), opts(Durability::Durable))).unwrap();
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
    }
    block_on(log.close()).unwrap();
    let bases = segment_bases(&s);
    assert!(bases.len() >= 4);
    let names = s.file_names();
    assert!(names.contains(&dir().join(CLEAN_SHUTDOWN_FILE)));
    for b in &bases {
        for ext in ["index", "timeindex"] {
            assert!(names.contains(&seg_path(*b, ext)), "close writes {b}.{ext}");
        }
    }
    (s, sent, bases)
}

/// Reads, lookups by offset inside batches, and timestamp lookups all agree
/// with what was appended.
fn assert_lookups_correct(log: &Log<MemStorage>, sent: &[Sent]) {
    block_on(async {
        assert_log_is(log, 0, sent).await;
        for x in sent.iter().step_by(5) {
            let got = log.read(x.base + 1, 1, i64::MAX).await.unwrap();
            assert_eq!(wire(&got[0]), x.wire());
        }
        // Batch i has record timestamps 10_000 + 10 i + (0, 1, 2).
        for (i, x) in sent.iter().enumerate().step_by(3) {
            let ts = 10_000 + i as i64 * 10;
            assert_eq!(log.offset_for_timestamp(ts + 1).await.unwrap(), Some((x.base + 1, ts + 1)));
            assert_eq!(log.offset_for_timestamp(ts - 5).await.unwrap(), Some((x.base, ts)));
        }
    });
}

#[test]
fn corrupt_index_files_are_rebuilt_not_trusted() {
    let (s0, sent, bases) = closed_log_with_indexes();
    for (k, base) in bases.iter().enumerate() {
        for ext in ["index", "timeindex"] {
            for pos in [0u64, 9, 20, 41, 60] {
                // A copy of the disk per corruption.
                let s = MemStorage::new();
                for p in s0.file_names() {
                    let data = s0.contents(&p).unwrap();
                    block_on(spindle_engine::storage::Storage::write_file_atomic(&s, &p, &data)).unwrap();
                }
                let path = seg_path(*base, ext);
                let len = s.contents(&path).unwrap().len() as u64;
                let at = pos % len;
                let old = s.contents(&path).unwrap()[at as usize];
                s.corrupt(&path, at, &[old ^ 0x24]);
                let log = open_with_cache(&s, LogConfig { segment_bytes: 16 * 1024, ..LogConfig::default() }, 0);
                assert_lookups_correct(&log, &sent);
                if k == 0 && pos == 0 {
                    // The rebuilt index is written back once the log syncs,
                    // and covers the whole sealed segment.
                    let x = append_one(&log, 999, 1, 1, Durability::Durable);
                    assert_eq!(x.base, sent.last().unwrap().next());
                    let off = s.contents(&seg_path(*base, "index")).unwrap();
                    let time = s.contents(&seg_path(*base, "timeindex")).unwrap();
                    let (_, cov) = SegmentIndex::decode(&off, &time).expect("rewritten index decodes");
                    assert!(cov.sealed);
                    assert_eq!(cov.next_offset, bases[1]);
                }
            }
        }
    }
}

#[test]
fn clean_shutdown_reopen_reads_everything_without_scanning_garbage() {
    let (s, sent, _) = closed_log_with_indexes();
    let log = open_with_cache(&s, LogConfig { segment_bytes: 16 * 1024, ..LogConfig::default() }, 0);
    assert_lookups_correct(&log, &sent);
}

#[test]
fn clean_shutdown_marker_is_removed_on_open() {
    let (s, mut sent, _) = closed_log_with_indexes();
    let cfg = LogConfig { segment_bytes: 16 * 1024, ..LogConfig::default() };
    let log = open(&s, cfg.clone());
    assert!(!s.file_names().contains(&dir().join(CLEAN_SHUTDOWN_FILE)), "marker removed before any write");
    // Appends after a clean reopen, then a crash: the next open must scan
    // past the indexes written at close, or these would be lost.
    for i in 0..5 {
        sent.push(append_one(&log, 500 + i, 2, 40, Durability::Written));
    }
    drop(log);
    s.crash_process();
    let log = open(&s, cfg.clone());
    block_on(assert_log_is(&log, 0, &sent));
    // Garbage written after the end following a clean reopen is cut too.
    block_on(log.close()).unwrap();
    drop(log);
    let log = open(&s, cfg.clone());
    let last = *segment_bases(&s).last().unwrap();
    let len = s.contents(&seg_path(last, "log")).unwrap().len();
    drop(log);
    s.crash_process();
    s.corrupt(&seg_path(last, "log"), len as u64, &[0xee; 700]);
    let log = open(&s, cfg);
    block_on(assert_log_is(&log, 0, &sent));
    let x = append_one(&log, 777, 1, 5, Durability::Written);
    assert_eq!(x.base, sent.last().unwrap().next());
}

#[test]
fn corrupt_batch_in_a_sealed_segment_is_reported_not_returned() {
    let (s, sent, bases) = closed_log_with_indexes();
    // Flip a payload byte of the first batch of the second segment. Its
    // sealed index is trusted, so recovery does not scan it: the read must
    // catch the damage by checksum.
    let victim = sent.iter().position(|x| x.base == bases[1]).unwrap();
    s.corrupt(&seg_path(bases[1], "log"), 72 + 20, &[0xff]);
    let log = open_with_cache(&s, LogConfig { segment_bytes: 16 * 1024, ..LogConfig::default() }, 0);
    match block_on(log.read(sent[victim].base, 1, i64::MAX)) {
        Err(ReadError::Corrupt { position, .. }) => assert_eq!(position, 0),
        other => panic!("expected a checksum error, got {other:?}"),
    }
    // The first segment is untouched.
    let got = block_on(log.read(0, 1, i64::MAX)).unwrap();
    assert_eq!(wire(&got[0]), sent[0].wire());
}
