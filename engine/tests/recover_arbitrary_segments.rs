//! Recovery of arbitrary and damaged segment files, on stable: the same
//! checks as the cargo-fuzz target `recover_segment` (see
//! `common/recover.rs`), fed with deterministic pseudo-random inputs so CI
//! covers them without nightly.

mod common;
use common::recover::{recover_segment_bytes, split_input, BASES};
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, LogConfig};

#[test]
fn random_bytes_recover_to_an_empty_log_without_panicking() {
    let mut rng = TestRng(0x5eed_0001);
    for i in 0..1_500u64 {
        let len = match i % 5 {
            0 => rng.below(80),
            1 => rng.below(600),
            2 => rng.below(9_000),
            3 => 4_096 * (1 + rng.below(3)),
            _ => rng.below(70_000),
        } as usize;
        let mut data = rng.bytes(len);
        // Some inputs mostly zero, as preallocated or torn files are.
        if i % 3 == 0 {
            for b in data.iter_mut() {
                if rng.below(8) != 0 {
                    *b = 0;
                }
            }
        }
        let (base, segment) = split_input(&data);
        let r = recover_segment_bytes(segment, base);
        // A random 72-byte header passes its magic and CRC-32C with odds of
        // 2^-64: nothing is recovered.
        assert!(r.batches.is_empty(), "input {i} recovered {} batches", r.batches.len());
        assert_eq!(r.log_end, base);
    }
}

/// A segment as the log writes it, with the wire bytes of its batches and
/// where each ends in the file.
fn valid_segment() -> (Vec<u8>, Vec<Vec<u8>>, Vec<usize>) {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let mut rng = TestRng(77);
    for i in 0..40u64 {
        let b = tagged_batch(i, 1 + rng.below(6) as usize, rng.below(700) as usize, 1_000 + i as i64);
        block_on(log.append(b, opts(Durability::Written))).unwrap();
    }
    let views = block_on(read_all(&log, 0));
    drop(log);
    s.crash_process();
    let mut data = s.contents(&seg_path(0, "log")).unwrap();
    let mut ends = Vec::new();
    let mut at = 0;
    for v in &views {
        at += v.header.stored_len();
        ends.push(at);
    }
    // The file is padded to a sector with zeros past the last batch.
    assert!(data[at..].iter().all(|&b| b == 0));
    data.truncate(at);
    (data, views.iter().map(wire).collect(), ends)
}

#[test]
fn damaged_segments_recover_exactly_their_undamaged_prefix() {
    let (original, batches, ends) = valid_segment();
    let mut rng = TestRng(0x5eed_0002);
    for i in 0..1_500u64 {
        let mut data = original.clone();
        let what = i % 7;
        match what {
            // Flip a few bytes.
            0 => {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] ^= 1 << rng.below(8);
                }
            }
            // Cut anywhere.
            1 => data.truncate(rng.below(data.len() as u64) as usize),
            // Zero a run of 512-byte sectors (a torn write).
            2 => {
                let from = rng.below(data.len() as u64 / 512) as usize * 512;
                let to = (from + 512 * (1 + rng.below(8) as usize)).min(data.len());
                data[from..to].fill(0);
            }
            // Garbage after the end.
            3 => {
                let n = 1 + rng.below(5_000) as usize;
                data.extend(rng.bytes(n));
            }
            // A stale copy of an earlier batch after the end: intact, but
            // its offset does not follow.
            4 => {
                let k = rng.below(ends.len() as u64 - 1) as usize;
                let copy = original[ends[k]..ends[k + 1]].to_vec();
                data.extend(copy);
            }
            // Two batches swapped.
            5 => {
                let k = rng.below(ends.len() as u64 - 2) as usize;
                let (a, b, c) = (ends[k], ends[k + 1], ends[k + 2]);
                let mut swapped = original[b..c].to_vec();
                swapped.extend_from_slice(&original[a..b]);
                data.splice(a..c, swapped);
            }
            // Random bytes overwriting a random range.
            _ => {
                let from = rng.below(data.len() as u64) as usize;
                let to = (from + 1 + rng.below(300) as usize).min(data.len());
                let junk = rng.bytes(to - from);
                data[from..to].copy_from_slice(&junk);
            }
        }
        let first_diff = data.iter().zip(&original).position(|(a, b)| a != b).unwrap_or(data.len().min(original.len()));
        let intact = ends.iter().filter(|&&e| e <= first_diff).count();
        let r = recover_segment_bytes(&data, 0);
        let n = r.batches.len();
        assert!(n >= intact, "mutation {i} ({what}): kept {n} batches, {intact} were untouched");
        assert!(n <= batches.len());
        for (k, b) in r.batches.iter().enumerate() {
            assert_eq!(b, &batches[k], "mutation {i} ({what}): batch {k} differs");
        }
        if what == 3 || what == 4 {
            assert_eq!(n, batches.len(), "mutation {i}: trailing junk costs no batch");
        }
    }
}

#[test]
fn every_base_offset_a_fuzz_input_can_choose_recovers() {
    for (k, base) in BASES.iter().enumerate() {
        let input = [k as u8, 1, 2, 3];
        let (b, rest) = split_input(&input);
        assert_eq!((b, rest), (*base, &[1u8, 2, 3][..]));
        recover_segment_bytes(&[], *base);
    }
}
