//! Recovery of an arbitrary segment file: the path that the cargo-fuzz target
//! `fuzz/fuzz_targets/recover_segment.rs` drives with libFuzzer's inputs and
//! that `tests/recover_arbitrary_segments.rs` drives on stable with
//! deterministic inputs. Kept here, once, so both check the same things.

use super::{dir, open_at, read_all, tagged_batch, wire, Sent};
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::storage::Storage;
use spindle_engine::{Durability, LogConfig};

/// What recovery kept of a segment.
#[derive(Debug)]
pub struct Recovered {
    /// Kafka wire bytes of each recovered batch, in order.
    pub batches: Vec<Vec<u8>>,
    /// Log end offset after recovery.
    pub log_end: i64,
}

/// Segment base offsets a fuzz input can choose from (its first byte).
pub const BASES: [i64; 4] = [0, 1, 4_096, 1 << 40];

/// Splits a fuzz input into a segment base (chosen by the first byte) and
/// the segment bytes (the rest).
pub fn split_input(data: &[u8]) -> (i64, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (BASES[b as usize % BASES.len()], rest),
        None => (0, data),
    }
}

/// Writes `segment` as the only segment (base offset `base`) of a fresh log
/// directory, opens the log, and checks what must hold whatever the bytes:
/// open never panics or fails; what it keeps reads back without error as
/// contiguous batches from `base`; the file is cut to exactly those batches,
/// their bytes untouched; an append after recovery lands at the log end and
/// survives a power loss together with everything recovered.
pub fn recover_segment_bytes(segment: &[u8], base: i64) -> Recovered {
    let storage = MemStorage::new();
    let seg_file = dir().join(format!("{base:020}.log"));
    block_on(async {
        storage.create_dir_all(&dir()).await.unwrap();
        storage.write_file_atomic(&seg_file, segment).await.unwrap();
    });
    let log = open_at(&storage, &dir(), LogConfig::default());
    let offsets = log.offsets();
    assert_eq!(offsets.log_start, base, "log start of a lone segment");
    assert_eq!(offsets.written, offsets.log_end);
    assert_eq!(offsets.durable, offsets.log_end);

    let views = block_on(read_all(&log, base));
    let mut next = base;
    let mut stored_bytes = 0usize;
    for v in &views {
        assert_eq!(v.header.base_offset(), next, "recovered batches are contiguous");
        assert!(v.header.last_offset() >= v.header.base_offset());
        next = v.header.next_offset();
        stored_bytes += v.header.stored_len();
    }
    assert_eq!(next, offsets.log_end, "log end is the end of the last recovered batch");
    let file = storage.contents(&seg_file).expect("segment file kept");
    assert_eq!(file.len(), stored_bytes, "the file is cut right after the last valid batch");
    assert_eq!(&file[..], &segment[..stored_bytes], "recovery never rewrites the valid prefix");
    let recovered: Vec<Vec<u8>> = views.iter().map(wire).collect();

    // Appending after recovery works and lands at the log end.
    let new = tagged_batch(0xf022, 3, 40, 5_000);
    let info = block_on(log.append(new.clone(), super::opts(Durability::Durable))).expect("append after recovery");
    assert_eq!(info.base_offset, next);
    let sent = Sent { base: next, epoch: 0, bytes: new };
    drop(log);

    // Everything recovered and the durable append survive a power loss.
    storage.crash_power(segment.len() as u64 ^ 0x5eed);
    let log = open_at(&storage, &dir(), LogConfig::default());
    let after = block_on(read_all(&log, base));
    assert_eq!(after.len(), recovered.len() + 1, "recovered batches plus the new one");
    for (a, r) in after.iter().zip(&recovered) {
        assert_eq!(&wire(a), r);
    }
    assert_eq!(wire(after.last().unwrap()), sent.wire());
    assert_eq!(log.log_end_offset(), sent.next());
    Recovered { batches: recovered, log_end: next }
}
