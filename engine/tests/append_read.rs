//! Appends and reads: byte-identical round trips, segment rolls by size and
//! by age, `max_bytes` and `upper` limits, and the offset range checks.

mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, Log, LogConfig, ReadError};

/// Appends `n` batches of `records` records of `value_len` bytes, one per
/// append, with increasing timestamps.
fn fill(log: &Log<MemStorage>, first_tag: u64, n: usize, records: usize, value_len: usize) -> Vec<Sent> {
    block_on(async {
        let mut sent = Vec::new();
        for i in 0..n {
            let tag = first_tag + i as u64;
            let bytes = tagged_batch(tag, records, value_len, 10_000 + tag as i64 * 10);
            let info = log.append(bytes.clone(), opts(Durability::Written)).await.unwrap();
            assert_eq!(info.last_offset - info.base_offset + 1, records as i64);
            sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
        }
        sent
    })
}

#[test]
fn appended_batches_read_back_byte_identical_except_offset_and_epoch() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let shapes: Vec<Vec<Vec<u8>>> = vec![
        vec![b"a".to_vec()],
        vec![Vec::new(), Vec::new(), Vec::new()],
        (0..50).map(|i| vec![i as u8; i * 7]).collect(),
        vec![vec![0xabu8; 100_000]],
        vec![(0..=255u8).collect()],
    ];
    block_on(async {
        let mut sent = Vec::new();
        let mut next = 0;
        for (i, values) in shapes.iter().enumerate() {
            let bytes = kafka_batch(values, 1_700_000_000_000 + i as i64);
            let info = log.append(bytes.clone(), opts_at(7, 1_000, Durability::Written)).await.unwrap();
            assert_eq!(info.base_offset, next);
            assert_eq!(info.last_offset, next + values.len() as i64 - 1);
            assert_eq!(info.log_start_offset, 0);
            next = info.last_offset + 1;
            sent.push(Sent { base: info.base_offset, epoch: 7, bytes });
        }
        for s in &sent {
            let got = log.read(s.base, 1, i64::MAX).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(wire(&got[0]), s.wire());
            // The rebuilt Kafka header is the producer's, so its CRC still
            // verifies over attributes..end.
            let w = wire(&got[0]);
            assert_eq!(crc32c::crc32c(&w[21..]), u32::from_be_bytes(w[17..21].try_into().unwrap()));
        }
        assert_log_is(&log, 0, &sent).await;
    });
    // And from disk, through a fresh cache.
    drop(log);
    let log = open_with_cache(&s, LogConfig::default(), 0);
    block_on(async {
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), shapes.len());
        assert_eq!(wire(&all[3]).len(), 61 + all[3].payload.len());
    });
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let a = tagged_batch(1, 2, 10, 100);
    let b = tagged_batch(2, 5, 10, 200);
    let c = tagged_batch(3, 1, 10, 300);
    let mut both = a.to_vec();
    both.extend_from_slice(&b);
    both.extend_from_slice(&c);
    block_on(async {
        let first = log.append(tagged_batch(0, 4, 10, 50), opts(Durability::Written)).await.unwrap();
        assert_eq!((first.base_offset, first.last_offset), (0, 3));
        let info = log.append(both.into(), opts(Durability::Written)).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (4, 11));
        let got = read_all(&log, 4).await;
        assert_eq!(got.len(), 3);
        assert_eq!(wire(&got[0]), expected_wire(&a, 4, 0));
        assert_eq!(wire(&got[1]), expected_wire(&b, 6, 0));
        assert_eq!(wire(&got[2]), expected_wire(&c, 11, 0));
        assert_eq!(log.offsets().log_end, 12);
        assert_eq!(log.offsets().written, 12);
    });
}

#[test]
fn reads_cross_segment_rolls_by_size() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    let sent = fill(&log, 0, 300, 4, 250);
    assert!(log.segment_count() >= 4, "64 KiB segments hold ~60 of these batches: {}", log.segment_count());
    // Every segment starts at a batch boundary and none exceeds segment.bytes.
    let bases = segment_bases(&s);
    assert_eq!(bases.len(), log.segment_count());
    for b in &bases {
        assert!(sent.iter().any(|x| x.base == *b), "segment base {b} is a batch base");
    }
    for w in bases.windows(2) {
        let bytes: usize =
            sent.iter().filter(|x| x.base >= w[0] && x.base < w[1]).map(|x| x.bytes.len() - 61 + 72).sum();
        assert!(bytes as u64 <= 64 * 1024, "segment {} holds {bytes} bytes", w[0]);
    }
    block_on(assert_log_is(&log, 0, &sent));
    drop(log);
    // From disk: every offset, including mid-batch ones and ones right at a
    // segment boundary, reads the batch containing it first.
    let log = open_with_cache(&s, small_segments(), 0);
    block_on(async {
        for x in sent.iter().step_by(7) {
            for off in [x.base, x.base + 1, x.next() - 1] {
                let got = log.read(off, 1, i64::MAX).await.unwrap();
                assert_eq!(got.len(), 1);
                assert_eq!(wire(&got[0]), x.wire(), "read({off})");
            }
        }
        for b in &bases {
            let got = log.read(*b, 1 << 20, i64::MAX).await.unwrap();
            assert_eq!(got[0].header.base_offset(), *b);
        }
        assert_log_is(&log, 0, &sent).await;
    });
}

#[test]
fn segment_ms_rolls_the_active_segment_by_age() {
    let s = MemStorage::new();
    let cfg = LogConfig { segment_ms: 1_000, ..LogConfig::default() };
    let log = open(&s, cfg.clone());
    let mut sent = Vec::new();
    block_on(async {
        // (now_ms, expect a new segment at this append)
        let plan = [(5_000, false), (5_500, false), (5_999, false), (6_000, true), (6_100, false), (9_000, true)];
        let mut expected_bases = vec![0];
        for (i, (now, rolls)) in plan.iter().enumerate() {
            let bytes = tagged_batch(i as u64, 2, 10, *now);
            let info = log.append(bytes.clone(), opts_at(0, *now, Durability::Written)).await.unwrap();
            if *rolls {
                expected_bases.push(info.base_offset);
            }
            sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
            assert_eq!(segment_bases(&s), expected_bases, "after append at {now}");
        }
        assert_log_is(&log, 0, &sent).await;
    });
    // An empty active segment never rolls however old it is.
    drop(log);
    let log = open(&s, cfg);
    let before = log.segment_count();
    block_on(log.append(tagged_batch(99, 1, 1, 50_000), opts_at(0, 50_000, Durability::Written))).unwrap();
    assert_eq!(log.segment_count(), before + 1);
    let count = log.segment_count();
    block_on(log.append(tagged_batch(100, 1, 1, 50_001), opts_at(0, 50_001, Durability::Written))).unwrap();
    assert_eq!(log.segment_count(), count, "the segment rolled at 50_000 is young");
}

/// Runs `f` against a log holding `sent`, once served from the batch cache
/// and once from disk (cache of zero bytes), so both read paths keep the
/// same rules.
fn on_both_read_paths(sent_batches: usize, f: impl Fn(&Log<MemStorage>, &[Sent])) {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let sent = fill(&log, 0, sent_batches, 3, 100);
    f(&log, &sent);
    drop(log);
    let log = open_with_cache(&s, LogConfig::default(), 0);
    f(&log, &sent);
}

#[test]
fn read_returns_one_batch_even_when_it_exceeds_max_bytes() {
    on_both_read_paths(5, |log, sent| {
        for max in [0, 1, 60, sent[0].bytes.len() - 1] {
            let got = block_on(log.read(0, max, i64::MAX)).unwrap();
            assert_eq!(got.len(), 1, "max_bytes {max}");
            assert_eq!(wire(&got[0]), sent[0].wire());
        }
    });
}

#[test]
fn read_stops_before_exceeding_max_bytes() {
    on_both_read_paths(10, |log, sent| {
        let len = sent[0].bytes.len();
        assert!(sent.iter().all(|s| s.bytes.len() == len));
        for (max, want) in [(len, 1), (2 * len - 1, 1), (3 * len, 3), (3 * len + len / 2, 3), (100 * len, 10)] {
            let got = block_on(log.read(0, max, i64::MAX)).unwrap();
            assert_eq!(got.len(), want, "max_bytes {max} with batches of {len}");
            let total: usize = got.iter().map(|v| v.kafka_len()).sum();
            assert!(total <= max);
            for (g, s) in got.iter().zip(sent) {
                assert_eq!(wire(g), s.wire());
            }
        }
    });
}

#[test]
fn read_upper_bound_excludes_batches_starting_at_or_after_it() {
    on_both_read_paths(6, |log, sent| {
        let got = block_on(log.read(0, 1 << 20, sent[2].base)).unwrap();
        assert_eq!(got.len(), 2);
        // An upper inside batch 2 still includes it (it starts below).
        let got = block_on(log.read(0, 1 << 20, sent[2].base + 1)).unwrap();
        assert_eq!(got.len(), 3);
        assert!(block_on(log.read(sent[2].base, 1 << 20, sent[2].base)).unwrap().is_empty());
    });
}

#[test]
fn read_at_log_end_returns_empty() {
    on_both_read_paths(4, |log, sent| {
        let end = sent.last().unwrap().next();
        assert_eq!(log.log_end_offset(), end);
        assert!(block_on(log.read(end, 1 << 20, i64::MAX)).unwrap().is_empty());
    });
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    assert!(block_on(log.read(0, 1 << 20, i64::MAX)).unwrap().is_empty(), "empty log");
}

#[test]
fn fetch_beyond_log_end_is_offset_out_of_range() {
    on_both_read_paths(4, |log, sent| {
        let end = sent.last().unwrap().next();
        for off in [end + 1, end + 1000, i64::MAX] {
            match block_on(log.read(off, 1 << 20, i64::MAX)) {
                Err(ReadError::OffsetOutOfRange { offset, log_start, log_end }) => {
                    assert_eq!((offset, log_start, log_end), (off, 0, end));
                }
                other => panic!("read({off}): {other:?}"),
            }
        }
    });
}

#[test]
fn fetch_below_log_start_is_offset_out_of_range() {
    on_both_read_paths(6, |log, sent| {
        if log.log_start_offset() == 0 {
            assert_eq!(block_on(log.delete_records(sent[2].base + 1)).unwrap(), sent[2].base + 1);
        }
        let start = sent[2].base + 1;
        assert_eq!(log.log_start_offset(), start);
        for off in [-1, 0, start - 1] {
            match block_on(log.read(off, 1 << 20, i64::MAX)) {
                Err(ReadError::OffsetOutOfRange { offset, log_start, .. }) => {
                    assert_eq!((offset, log_start), (off, start))
                }
                other => panic!("read({off}): {other:?}"),
            }
        }
        // At log start (mid-batch) the containing batch comes back whole.
        let got = block_on(log.read(start, 1, i64::MAX)).unwrap();
        assert_eq!(wire(&got[0]), sent[2].wire());
    });
}

#[test]
fn offsets_track_appends_and_reopen() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let o = log.offsets();
    assert_eq!((o.log_start, o.written, o.durable, o.log_end), (0, 0, 0, 0));
    block_on(log.append(tagged_batch(1, 5, 1, 1), opts(Durability::Written))).unwrap();
    let o = log.offsets();
    assert_eq!((o.log_start, o.written, o.log_end), (0, 5, 5));
    assert_eq!(log.high_watermark(), 5);
    block_on(log.append(tagged_batch(2, 5, 1, 1), opts(Durability::Durable))).unwrap();
    let o = log.offsets();
    assert_eq!((o.written, o.durable, o.log_end), (10, 10, 10));
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    let o = log.offsets();
    assert_eq!((o.log_start, o.written, o.durable, o.log_end), (0, 10, 10, 10));
}

#[test]
fn closed_log_refuses_appends() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    block_on(log.append(tagged_batch(1, 1, 1, 1), opts(Durability::Written))).unwrap();
    block_on(log.close()).unwrap();
    let r = block_on(log.append(tagged_batch(2, 1, 1, 1), opts(Durability::Written)));
    assert!(matches!(r, Err(spindle_engine::AppendError::Closed)), "{r:?}");
    // Reads still work on a closed log.
    assert_eq!(block_on(read_all(&log, 0)).len(), 1);
}

#[test]
fn huge_max_bytes_reads_a_bounded_amount_from_disk() {
    // Regression: a fetch's max_bytes sized the disk read directly, so a
    // client asking for up to 2 GiB per partition (max_bytes is an i32 on
    // the wire) made the engine issue, and on direct I/O allocate, a read
    // that large; usize::MAX overflowed the alignment arithmetic (a panic
    // in debug builds).
    let s = SlowStorage::default();
    let log = open_at(&s, &dir(), LogConfig::default());
    let mut sent = Vec::new();
    for i in 0..50u64 {
        let bytes = tagged_batch(i, 2, 1_000, 1);
        let info = block_on(log.append(bytes.clone(), opts(Durability::Written))).unwrap();
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
    }
    drop(log);
    let log = {
        let cache = std::rc::Rc::new(spindle_engine::BatchCache::new(0));
        block_on(Log::open(s.clone(), &dir(), LogConfig::default(), cache, 1_000)).unwrap()
    };
    s.largest_read.set(0);
    for max in [i32::MAX as usize, usize::MAX] {
        let got = block_on(log.read(0, max, i64::MAX)).unwrap();
        assert_eq!(got.len(), sent.len(), "all 100 KiB fit in one bounded read");
        for (g, x) in got.iter().zip(&sent) {
            assert_eq!(wire(g), x.wire());
        }
    }
    let largest = s.largest_read.get();
    assert!(largest <= 16 << 20, "a read of {largest} bytes");
}

#[test]
fn a_reopened_log_holds_a_sector_not_a_write_buffer_until_its_first_append() {
    use spindle_engine::constants::{IDLE_OPEN_BUFFER_BYTES, WRITE_BUFFER_BYTES};
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    // 3 records of 100 bytes: the log ends inside a sector, so reopening
    // reads that partial sector back into the open buffer.
    let mut sent = fill(&log, 0, 5, 3, 100);
    block_on(log.close()).unwrap();
    drop(log);

    let before = s.counters().buffer_bytes_allocated;
    let log = open(&s, LogConfig::default());
    let opened = s.counters().buffer_bytes_allocated - before;
    assert!(
        opened < WRITE_BUFFER_BYTES as u64,
        "opening an idle log allocated {opened} bytes of I/O buffers; the open chunk should hold {IDLE_OPEN_BUFFER_BYTES}"
    );

    // The first append swaps in a whole buffer and keeps the carried bytes:
    // everything reads back, before and after another reopen.
    sent.extend(fill(&log, 5, 400, 3, 1000));
    assert!(s.counters().buffer_bytes_allocated - before >= WRITE_BUFFER_BYTES as u64);
    let check = |log: &Log<MemStorage>| {
        block_on(async {
            let all = read_all(log, 0).await;
            assert_eq!(all.len(), sent.len());
            for (v, b) in all.iter().zip(&sent) {
                assert_eq!(wire(v), b.wire());
            }
        })
    };
    check(&log);
    block_on(log.close()).unwrap();
    drop(log);
    s.crash_process();
    check(&open(&s, LogConfig::default()));
}
