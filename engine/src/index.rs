//! Sparse offset and time indexes of one segment.
//!
//! Both are kept in memory for every segment and written to disk only when
//! they are complete up to a known durable point: when a segment is sealed,
//! at a recovery checkpoint of the active segment, and at clean shutdown.
//! Each file records the log prefix it covers (`end_position`,
//! `next_offset`), so after a crash recovery loads the index and scans the
//! log only from there. A file that fails its checksum or its sanity checks
//! is rebuilt from the log, never trusted.
//!
//! Sparse, one entry per [`INDEX_INTERVAL_BYTES`] of log: a lookup lands at
//! most that far before the batch it wants, and with direct I/O the first
//! read is a whole sector anyway, so a dense index would save no I/O and cost
//! an entry per batch (for 100-byte batches, 16 bytes per 100 of log).

use crate::constants::INDEX_INTERVAL_BYTES;

const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"SPX1");
const KIND_OFFSET: u32 = 0;
const KIND_TIME: u32 = 1;
/// magic, kind, entry count, end position, sealed (u32 each), next offset,
/// max timestamp (i64 each), crc (u32).
const FILE_HEADER_BYTES: usize = 5 * 4 + 8 * 2 + 4;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset of the indexed batch minus the segment's base offset.
    pub relative_offset: u32,
    pub position: u32,
}

/// `max_timestamp_before` is the largest batch timestamp of every batch that
/// starts before `position`: a search for timestamp T can start at the last
/// entry whose `max_timestamp_before` is below T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub max_timestamp_before: i64,
    pub relative_offset: u32,
    pub position: u32,
}

/// The part of a segment an index describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    pub end_position: u32,
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// The segment was sealed (rolled) and this covers all of it: recovery
    /// needs no scan. Otherwise this is a checkpoint of the active segment.
    pub sealed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    bytes_since_entry: u32,
    /// Largest batch timestamp in the segment so far (-1: none).
    max_timestamp: i64,
    last_time_entry_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index file invalid: {0}")]
pub struct IndexCorrupt(pub &'static str);

impl SegmentIndex {
    pub fn new() -> Self {
        SegmentIndex { max_timestamp: -1, last_time_entry_ts: -1, ..Default::default() }
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Records a batch appended at `position`.
    pub fn on_batch(&mut self, relative_offset: u32, position: u32, stored_len: u32, max_timestamp: i64) {
        if position > 0 && self.bytes_since_entry >= INDEX_INTERVAL_BYTES {
            self.offsets.push(OffsetEntry { relative_offset, position });
            if self.max_timestamp > self.last_time_entry_ts {
                self.times.push(TimeEntry { max_timestamp_before: self.max_timestamp, relative_offset, position });
                self.last_time_entry_ts = self.max_timestamp;
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += stored_len;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Position of the last indexed batch at or before `relative_offset`.
    pub fn position_for_offset(&self, relative_offset: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// A position from which a forward scan finds the first batch whose max
    /// timestamp is at least `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.max_timestamp_before < ts);
        if i == 0 {
            0
        } else {
            self.times[i - 1].position
        }
    }

    /// Drops entries at or past `position` (log truncated there).
    pub fn truncate_to_position(&mut self, position: u32, max_timestamp: i64) {
        self.offsets.retain(|e| e.position < position);
        self.times.retain(|e| e.position < position);
        self.last_time_entry_ts = self.times.last().map_or(-1, |e| e.max_timestamp_before);
        self.max_timestamp = max_timestamp;
        // Conservative: the next batch may start a new entry at once.
        self.bytes_since_entry = INDEX_INTERVAL_BYTES;
    }

    /// Serialises the offset index covering `cov`.
    pub fn encode_offsets(&self, cov: Coverage) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for e in self.offsets.iter().filter(|e| e.position < cov.end_position) {
            body.extend_from_slice(&e.relative_offset.to_le_bytes());
            body.extend_from_slice(&e.position.to_le_bytes());
        }
        encode_file(KIND_OFFSET, body.len() / OFFSET_ENTRY_BYTES, cov, body)
    }

    /// Serialises the time index covering `cov`.
    pub fn encode_times(&self, cov: Coverage) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for e in self.times.iter().filter(|e| e.position < cov.end_position) {
            body.extend_from_slice(&e.max_timestamp_before.to_le_bytes());
            body.extend_from_slice(&e.relative_offset.to_le_bytes());
            body.extend_from_slice(&e.position.to_le_bytes());
        }
        encode_file(KIND_TIME, body.len() / TIME_ENTRY_BYTES, cov, body)
    }

    /// Rebuilds an index from its two files. Both must be intact, agree on
    /// what they cover, and have entries increasing in offset and position.
    pub fn decode(offset_file: &[u8], time_file: &[u8]) -> Result<(SegmentIndex, Coverage), IndexCorrupt> {
        let (cov, body) = decode_file(offset_file, KIND_OFFSET, OFFSET_ENTRY_BYTES)?;
        let (cov_t, body_t) = decode_file(time_file, KIND_TIME, TIME_ENTRY_BYTES)?;
        if cov != cov_t {
            return Err(IndexCorrupt("offset and time index cover different prefixes"));
        }
        let mut idx = SegmentIndex::new();
        for c in body.chunks_exact(OFFSET_ENTRY_BYTES) {
            let e = OffsetEntry {
                relative_offset: u32::from_le_bytes(c[0..4].try_into().unwrap()),
                position: u32::from_le_bytes(c[4..8].try_into().unwrap()),
            };
            if let Some(prev) = idx.offsets.last() {
                if e.relative_offset <= prev.relative_offset || e.position <= prev.position {
                    return Err(IndexCorrupt("offset entries not increasing"));
                }
            }
            if e.position >= cov.end_position {
                return Err(IndexCorrupt("offset entry past covered end"));
            }
            idx.offsets.push(e);
        }
        for c in body_t.chunks_exact(TIME_ENTRY_BYTES) {
            let e = TimeEntry {
                max_timestamp_before: i64::from_le_bytes(c[0..8].try_into().unwrap()),
                relative_offset: u32::from_le_bytes(c[8..12].try_into().unwrap()),
                position: u32::from_le_bytes(c[12..16].try_into().unwrap()),
            };
            if let Some(prev) = idx.times.last() {
                if e.max_timestamp_before <= prev.max_timestamp_before || e.position <= prev.position {
                    return Err(IndexCorrupt("time entries not increasing"));
                }
            }
            if e.position >= cov.end_position {
                return Err(IndexCorrupt("time entry past covered end"));
            }
            idx.times.push(e);
        }
        idx.max_timestamp = cov.max_timestamp;
        idx.last_time_entry_ts = idx.times.last().map_or(-1, |e| e.max_timestamp_before);
        // Where the next entry falls only affects density, not correctness.
        idx.bytes_since_entry = cov.end_position - idx.offsets.last().map_or(0, |e| e.position);
        Ok((idx, cov))
    }
}

fn encode_file(kind: u32, count: usize, cov: Coverage, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_BYTES + body.len());
    out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&cov.end_position.to_le_bytes());
    out.extend_from_slice(&(cov.sealed as u32).to_le_bytes());
    out.extend_from_slice(&cov.next_offset.to_le_bytes());
    out.extend_from_slice(&cov.max_timestamp.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn decode_file(b: &[u8], kind: u32, entry_bytes: usize) -> Result<(Coverage, &[u8]), IndexCorrupt> {
    if b.len() < FILE_HEADER_BYTES {
        return Err(IndexCorrupt("shorter than header"));
    }
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let i64_at = |at: usize| i64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    if u32_at(0) != INDEX_MAGIC {
        return Err(IndexCorrupt("bad magic"));
    }
    if u32_at(4) != kind {
        return Err(IndexCorrupt("wrong index kind"));
    }
    let count = u32_at(8) as usize;
    let body = &b[FILE_HEADER_BYTES..];
    if body.len() != count * entry_bytes {
        return Err(IndexCorrupt("length does not match entry count"));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..FILE_HEADER_BYTES - 4]), body);
    if crc != u32_at(FILE_HEADER_BYTES - 4) {
        return Err(IndexCorrupt("checksum mismatch"));
    }
    let sealed = match u32_at(16) {
        0 => false,
        1 => true,
        _ => return Err(IndexCorrupt("bad sealed flag")),
    };
    let cov = Coverage { end_position: u32_at(12), sealed, next_offset: i64_at(20), max_timestamp: i64_at(28) };
    Ok((cov, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> SegmentIndex {
        let mut idx = SegmentIndex::new();
        let mut pos = 0u32;
        for i in 0..100u32 {
            idx.on_batch(i * 10, pos, 1000, 1000 + i as i64);
            pos += 1000;
        }
        idx
    }

    #[test]
    fn offset_lookup_returns_floor_entry() {
        let idx = filled();
        assert!(!idx.offsets.is_empty());
        assert_eq!(idx.position_for_offset(0), 0);
        for e in &idx.offsets {
            assert_eq!(idx.position_for_offset(e.relative_offset), e.position);
            assert_eq!(idx.position_for_offset(e.relative_offset + 5), e.position);
        }
    }

    #[test]
    fn time_lookup_never_skips_a_qualifying_batch() {
        let idx = filled();
        // Batch i starts at i*1000 with timestamp 1000+i.
        for t in 1000..1100i64 {
            let pos = idx.position_for_timestamp(t);
            let first = (t - 1000) as u32 * 1000;
            assert!(pos <= first, "t={t} pos={pos} first={first}");
        }
    }

    #[test]
    fn encoded_index_decodes_to_the_same_entries() {
        let idx = filled();
        let cov = Coverage { end_position: 100_000, next_offset: 1000, max_timestamp: 1099, sealed: true };
        let (back, c) = SegmentIndex::decode(&idx.encode_offsets(cov), &idx.encode_times(cov)).unwrap();
        assert_eq!(c, cov);
        assert_eq!(back.offsets, idx.offsets);
        assert_eq!(back.times, idx.times);
    }

    #[test]
    fn any_flipped_byte_in_an_index_file_is_detected() {
        let idx = filled();
        let cov = Coverage { end_position: 100_000, next_offset: 1000, max_timestamp: 1099, sealed: true };
        let off = idx.encode_offsets(cov);
        let time = idx.encode_times(cov);
        for i in 0..off.len() {
            let mut bad = off.clone();
            bad[i] ^= 0x40;
            assert!(SegmentIndex::decode(&bad, &time).is_err(), "byte {i}");
        }
        for n in 0..off.len() {
            assert!(SegmentIndex::decode(&off[..n], &time).is_err());
        }
    }
}
