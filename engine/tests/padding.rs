//! The partial last sector of a write round: a large round pads it with
//! zeros and the next batch starts on the next sector; a small round carries
//! it into the next round, which rewrites it. Reads, recovery, truncation and
//! power loss see the same log either way (docs/storage-format.md).

mod common;
use bytes::{Bytes, BytesMut};
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, Log, LogConfig};

const SECTOR: usize = 4096;

/// One append of `count` batches (one produce request carrying several
/// batches, as Kafka allows): the log stages them together, so they are
/// written by one round.
fn append_many(log: &Log<MemStorage>, tag: u64, count: usize, value_len: usize, d: Durability) -> Vec<Sent> {
    let batches: Vec<Bytes> =
        (0..count as u64).map(|i| tagged_batch(tag + i, 4, value_len, 1_000 + (tag + i) as i64)).collect();
    let mut all = BytesMut::new();
    for b in &batches {
        all.extend_from_slice(b);
    }
    let info = block_on(log.append(all.freeze(), opts(d))).unwrap();
    let mut base = info.base_offset;
    batches
        .into_iter()
        .map(|bytes| {
            let s = Sent { base, epoch: 0, bytes };
            base = s.next();
            s
        })
        .collect()
}

fn append_one(log: &Log<MemStorage>, tag: u64, d: Durability) -> Sent {
    append_many(log, tag, 1, 100, d).pop().unwrap()
}

fn stored(sent: &[Sent]) -> usize {
    sent.iter().map(|s| s.bytes.len() - 61 + 72).sum()
}

fn segment0(s: &MemStorage) -> Vec<u8> {
    s.contents(&seg_path(0, "log")).expect("segment 0 exists")
}

/// A round of about 90 KiB whose end falls inside a sector, far enough
/// from its end for a header of padding and small enough next to the round
/// to be padded.
fn large_round(log: &Log<MemStorage>, d: Durability) -> Vec<Sent> {
    let big = append_many(log, 0, 30, 700, d);
    let len = stored(&big);
    let pad = len.next_multiple_of(SECTOR) - len;
    assert!(
        pad >= 72 && pad * 16 <= len && !len.is_multiple_of(SECTOR),
        "the test's round must qualify for padding: {len}"
    );
    big
}

#[test]
fn a_large_round_pads_its_last_sector_and_a_small_one_carries_it() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let mut sent = large_round(&log, Durability::Written);
    let big = stored(&sent);
    let first_small = append_one(&log, 100, Durability::Written);
    let second_small = append_one(&log, 101, Durability::Written);
    let file = segment0(&s);
    assert!(file[big..big.next_multiple_of(SECTOR)].iter().all(|&b| b == 0), "padding is zeros");
    assert_eq!(&file[big.next_multiple_of(SECTOR)..][..4], b"SPB1", "the next batch starts on the next sector");
    sent.extend([first_small, second_small]);
    // The two small rounds carried: their batches are back to back.
    assert_eq!(segment_data_end(&file), big.next_multiple_of(SECTOR) + stored(&sent[30..]));
    block_on(assert_log_is(&log, 0, &sent));

    // Recovery scans across the padding (process crash: no clean marker),
    // and reads after it come from the file, not the cache.
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
    let at_small = block_on(log.offset_for_timestamp(1_100)).unwrap();
    assert_eq!(at_small.map(|(offset, _)| offset), Some(sent[30].base), "time lookup across the padding");
    sent.push(append_one(&log, 102, Durability::Written));
    block_on(assert_log_is(&log, 0, &sent));

    // A clean close and open, then a cold read of everything.
    block_on(log.close()).unwrap();
    drop(log);
    let log = open_with_cache(&s, LogConfig::default(), 0);
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn a_padded_tail_survives_a_power_loss_and_recovery_continues_after_it() {
    for seed in 0..20 {
        let s = MemStorage::new();
        let log = open(&s, LogConfig::default());
        let mut sent = large_round(&log, Durability::Durable);
        drop(log);
        s.crash_power(seed);
        let log = open(&s, LogConfig::default());
        block_on(assert_log_is(&log, 0, &sent));
        // The recovered end is the padded sector's end: the next batch starts
        // on the next sector, and no sector is rewritten.
        sent.push(append_one(&log, 100, Durability::Durable));
        let big = stored(&sent[..30]);
        assert_eq!(&segment0(&s)[big.next_multiple_of(SECTOR)..][..4], b"SPB1");
        drop(log);
        s.crash_power(seed + 1000);
        let log = open(&s, LogConfig::default());
        block_on(assert_log_is(&log, 0, &sent));
    }
}

#[test]
fn truncation_at_and_before_the_padding_keeps_the_log_readable() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let mut sent = large_round(&log, Durability::Written);
    let after = append_one(&log, 100, Durability::Written);
    // Cut at the first batch after the padding: the cut lands on a sector.
    assert_eq!(block_on(log.truncate_to(after.base)).unwrap(), after.base);
    block_on(assert_log_is(&log, 0, &sent));
    sent.push(append_one(&log, 101, Durability::Written));
    block_on(assert_log_is(&log, 0, &sent));

    // Cut inside the padded round: the next append starts right after the
    // kept batches, mid-sector, and rewrites that sector.
    let keep = sent.len() - 3;
    assert_eq!(block_on(log.truncate_to(sent[keep].base)).unwrap(), sent[keep].base);
    sent.truncate(keep);
    sent.push(append_one(&log, 102, Durability::Written));
    assert_eq!(segment_data_end(&segment0(&s)), stored(&sent));
    block_on(assert_log_is(&log, 0, &sent));

    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn garbage_in_the_padding_ends_the_log_there_on_recovery() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let sent = large_round(&log, Durability::Durable);
    append_one(&log, 100, Durability::Durable);
    drop(log);
    s.crash_process();
    // Padding that is not all zeros is not padding: recovery keeps what lies
    // before it and cuts the rest.
    let big = stored(&sent);
    s.corrupt(&seg_path(0, "log"), (big.next_multiple_of(SECTOR) - 1) as u64, &[0x5a]);
    let log = open(&s, LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
}
