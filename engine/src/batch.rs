//! The stored unit: a Kafka v2 record batch, kept as a fixed-layout header of
//! our own followed by the client's `records` bytes, untouched.
//!
//! Why our own header instead of storing Kafka's 61 bytes verbatim: Kafka's
//! header is big-endian, has no checksum of its own over the offset fields,
//! and its length field is relative. Ours is little-endian (read in place by
//! `zerocopy` without a decode step), carries a checksum over itself so a torn
//! or stale header is recognised before its length is trusted, and has a magic
//! so recovery can tell the end of the log from garbage. Kafka's CRC-32C is
//! kept in it: it covers everything but base offset, length and leader epoch,
//! so the header a consumer receives is rebuilt byte for byte from ours
//! ([`StoredBatchHeader::kafka_header`]) and the client's CRC still matches.
//!
//! This module knows the record-batch format (it is the storage format) but
//! nothing of Kafka requests, responses or error codes.

use bytes::Bytes;
use zerocopy::byteorder::little_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Length of Kafka's record batch header (magic v2), up to the records.
pub const KAFKA_HEADER_BYTES: usize = 61;
/// Kafka's CRC covers the batch from the attributes field to its end.
const KAFKA_CRC_START: usize = 21;
/// `magic` value of the only batch format we accept.
pub const KAFKA_MAGIC_V2: i8 = 2;
/// Magic of our stored header: "SPB1" little-endian.
pub const STORED_MAGIC: u32 = u32::from_le_bytes(*b"SPB1");
/// Size of [`StoredBatchHeader`] on disk.
pub const STORED_HEADER_BYTES: usize = 72;

/// Compression codec, the low three bits of `attributes`.
const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Largest codec id Kafka defines (4 = zstd).
const COMPRESSION_CODEC_MAX: i16 = 4;

/// The on-disk batch header. Every field is little-endian and unaligned, so a
/// `&StoredBatchHeader` can be taken directly over bytes read from disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct StoredBatchHeader {
    /// [`STORED_MAGIC`].
    pub magic: U32,
    /// CRC-32C of bytes 8..72 of this header.
    pub header_crc: U32,
    pub base_offset: I64,
    pub first_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub last_offset_delta: I32,
    pub record_count: I32,
    pub base_sequence: I32,
    pub leader_epoch: I32,
    /// Length of the Kafka `records` bytes that follow this header.
    pub payload_len: U32,
    /// Kafka's CRC-32C (attributes through the end of the records).
    pub kafka_crc: U32,
    pub attributes: I16,
    pub producer_epoch: I16,
    pub reserved: U32,
}

const _: () = assert!(std::mem::size_of::<StoredBatchHeader>() == STORED_HEADER_BYTES);

/// What is wrong with a batch a client sent. Each maps to one Kafka error code
/// in the adapter (CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE,
/// UNSUPPORTED_COMPRESSION_TYPE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch shorter than its {KAFKA_HEADER_BYTES}-byte header ({0} bytes)")]
    Truncated(usize),
    #[error("batch length field says {declared} bytes but {actual} are present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("unsupported batch magic {0} (only v2 is accepted)")]
    WrongMagic(i8),
    #[error("batch CRC-32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    CountMismatch { count: i32, last_offset_delta: i32 },
    #[error("records section holds {found} records in {bytes} bytes, header says {declared}")]
    RecordsMismatch { declared: i32, found: i64, bytes: usize },
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: u32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
}

impl BatchError {
    /// The Kafka error category a client expects for this rejection.
    pub fn kind(&self) -> BatchErrorKind {
        match self {
            BatchError::TooLarge { .. } => BatchErrorKind::TooLarge,
            BatchError::CountMismatch { .. } | BatchError::RecordsMismatch { .. } => BatchErrorKind::InvalidRecord,
            BatchError::UnknownCompression(_) => BatchErrorKind::UnsupportedCompression,
            BatchError::Truncated(_)
            | BatchError::LengthMismatch { .. }
            | BatchError::WrongMagic(_)
            | BatchError::CrcMismatch { .. } => BatchErrorKind::Corrupt,
        }
    }
}

/// Coarse classes of [`BatchError`], one per client-visible error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchErrorKind {
    Corrupt,
    InvalidRecord,
    TooLarge,
    UnsupportedCompression,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// A client batch that passed validation: our header (offset not yet
/// assigned) and the `records` bytes as a slice of the client's buffer.
#[derive(Clone, Debug)]
pub struct ValidBatch {
    pub header: StoredBatchHeader,
    pub payload: Bytes,
    /// CRC-32C of the Kafka header bytes the batch CRC covers (attributes
    /// to record count): the batch CRC is this continued over the payload.
    pub crc_prefix: u32,
}

impl ValidBatch {
    /// Bytes this batch occupies in a segment.
    pub fn stored_len(&self) -> usize {
        STORED_HEADER_BYTES + self.payload.len()
    }

    /// The checks [`frame_one`] leaves out, in Kafka's order: the batch CRC
    /// against `actual` (the CRC-32C computed from
    /// [`ValidBatch::crc_prefix`] over the payload or a copy of it), then,
    /// for uncompressed batches, that the records' length prefixes add up
    /// to the declared count.
    pub fn check_contents(&self, actual: u32) -> Result<(), BatchError> {
        let expected = self.header.kafka_crc.get();
        if expected != actual {
            return Err(BatchError::CrcMismatch { expected, actual });
        }
        if self.header.attributes.get() & ATTR_COMPRESSION_MASK == 0 {
            let declared = self.header.record_count.get();
            let found = count_uncompressed_records(&self.payload);
            if found != Some(declared as i64) {
                return Err(BatchError::RecordsMismatch {
                    declared,
                    found: found.unwrap_or(-1),
                    bytes: self.payload.len(),
                });
            }
        }
        Ok(())
    }
}

/// Splits a produce request's `records` field into batches and validates
/// each: framing, magic, CRC-32C, record count, size limit. Records are not
/// decoded; for uncompressed batches the record length prefixes are walked to
/// check the count (cheap: one varint per record).
pub fn validate_batches(records: &Bytes, max_message_bytes: u32) -> Result<Vec<ValidBatch>, BatchError> {
    split_batches(records, max_message_bytes, validate_one)
}

/// [`validate_batches`] without the checks that read the whole payload
/// (CRC-32C and record walk): the header checks only, and
/// [`ValidBatch::crc_prefix`] so the caller can run
/// [`ValidBatch::check_contents`] on its own copy. The log does that, so the
/// client's bytes are read from memory once (copied, then checked while hot
/// in cache) instead of several times; a batch must not be published before
/// its contents are checked.
pub fn frame_batches(records: &Bytes, max_message_bytes: u32) -> Result<Vec<ValidBatch>, BatchError> {
    split_batches(records, max_message_bytes, frame_one)
}

/// Splits `records` into its batches' bytes by Kafka's framing alone (base
/// offset, then the length of the rest), checking nothing inside them.
pub fn split_framed(records: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    split_batches(records, u32::MAX, Ok)
}

fn split_batches<T>(
    records: &Bytes,
    max_message_bytes: u32,
    check: fn(Bytes) -> Result<T, BatchError>,
) -> Result<Vec<T>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut at = 0usize;
    if records.is_empty() {
        return Err(BatchError::Truncated(0));
    }
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < KAFKA_HEADER_BYTES {
            return Err(BatchError::Truncated(rest.len()));
        }
        let declared = be_i32(rest, 8) as i64 + 12;
        if declared < KAFKA_HEADER_BYTES as i64 || declared > rest.len() as i64 {
            return Err(BatchError::LengthMismatch { declared, actual: rest.len() });
        }
        let len = declared as usize;
        if len > max_message_bytes as usize {
            return Err(BatchError::TooLarge { size: len, max: max_message_bytes });
        }
        let batch = records.slice(at..at + len);
        out.push(check(batch)?);
        at += len;
    }
    Ok(out)
}

/// Validates one complete Kafka v2 batch (`bytes` is exactly the batch).
pub fn validate_one(bytes: Bytes) -> Result<ValidBatch, BatchError> {
    let b = frame_one(bytes)?;
    b.check_contents(crc32c::crc32c_append(b.crc_prefix, &b.payload))?;
    Ok(b)
}

/// [`validate_one`] without the checks that read the whole payload: the
/// CRC-32C and the record walk ([`ValidBatch::check_contents`]; see
/// [`frame_batches`]).
pub fn frame_one(bytes: Bytes) -> Result<ValidBatch, BatchError> {
    let b = &bytes[..];
    if b.len() < KAFKA_HEADER_BYTES {
        return Err(BatchError::Truncated(b.len()));
    }
    let declared = be_i32(b, 8) as i64 + 12;
    if declared != b.len() as i64 {
        return Err(BatchError::LengthMismatch { declared, actual: b.len() });
    }
    let magic = b[16] as i8;
    if magic != KAFKA_MAGIC_V2 {
        return Err(BatchError::WrongMagic(magic));
    }
    let expected = u32::from_be_bytes(b[17..21].try_into().unwrap());
    let crc_prefix = crc32c::crc32c(&b[KAFKA_CRC_START..KAFKA_HEADER_BYTES]);
    // The checks below come after the CRC in Kafka's order: a batch damaged
    // on the way is CORRUPT_MESSAGE, not INVALID_RECORD. So when one fails,
    // the CRC (skipped on the success path) decides which error it is.
    let failed = |e: BatchError| {
        let actual = crc32c::crc32c_append(crc_prefix, &b[KAFKA_HEADER_BYTES..]);
        if actual != expected {
            BatchError::CrcMismatch { expected, actual }
        } else {
            e
        }
    };
    let attributes = be_i16(b, 21);
    let last_offset_delta = be_i32(b, 23);
    let record_count = be_i32(b, 57);
    if record_count <= 0 || last_offset_delta != record_count - 1 {
        return Err(failed(BatchError::CountMismatch { count: record_count, last_offset_delta }));
    }
    let codec = attributes & ATTR_COMPRESSION_MASK;
    if codec > COMPRESSION_CODEC_MAX {
        return Err(failed(BatchError::UnknownCompression(codec)));
    }
    let payload = bytes.slice(KAFKA_HEADER_BYTES..);
    let mut header = StoredBatchHeader {
        magic: STORED_MAGIC.into(),
        header_crc: 0.into(),
        // The producer's is 0; a leader's batch read by a follower carries
        // its offset, which `Log::append_replicated` keeps.
        base_offset: be_i64(b, 0).into(),
        first_timestamp: be_i64(b, 27).into(),
        max_timestamp: be_i64(b, 35).into(),
        producer_id: be_i64(b, 43).into(),
        last_offset_delta: last_offset_delta.into(),
        record_count: record_count.into(),
        base_sequence: be_i32(b, 53).into(),
        leader_epoch: be_i32(b, 12).into(),
        payload_len: (payload.len() as u32).into(),
        kafka_crc: expected.into(),
        attributes: attributes.into(),
        producer_epoch: be_i16(b, 51).into(),
        reserved: 0.into(),
    };
    header.seal();
    Ok(ValidBatch { header, payload, crc_prefix })
}

/// Decodes a zigzag varint (Kafka's `varint`/`varlong`). Returns the value and
/// the number of bytes read, or `None` if the input ends first or the varint is
/// longer than ten bytes.
pub fn read_varlong(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// Walks the length prefixes of an uncompressed records section. `None` if a
/// length is negative or runs past the end.
fn count_uncompressed_records(mut b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    while !b.is_empty() {
        let (len, used) = read_varlong(b)?;
        if len < 0 || (len as u64) > (b.len() - used) as u64 {
            return None;
        }
        b = &b[used + len as usize..];
        n += 1;
    }
    Some(n)
}

/// For an uncompressed batch, the offset delta and timestamp of the first
/// record whose offset delta is at least `min_delta` and whose timestamp is
/// at or after `ts`. `None` if the records cannot be walked or no record
/// qualifies.
pub fn first_record_at_or_after(
    header: &StoredBatchHeader,
    payload: &[u8],
    ts: i64,
    min_delta: i32,
) -> Option<(i32, i64)> {
    if header.attributes.get() & ATTR_COMPRESSION_MASK != 0 {
        return None;
    }
    let base_ts = header.first_timestamp.get();
    let mut b = payload;
    while !b.is_empty() {
        let (len, used) = read_varlong(b)?;
        if len < 0 || len as usize > b.len() - used {
            return None;
        }
        let rec = &b[used..used + len as usize];
        // record: attributes int8, timestampDelta varlong, offsetDelta varint
        let (ts_delta, n1) = read_varlong(rec.get(1..)?)?;
        let (off_delta, _) = read_varlong(rec.get(1 + n1..)?)?;
        let record_ts = base_ts.saturating_add(ts_delta);
        if record_ts >= ts && off_delta >= min_delta as i64 {
            return Some((off_delta as i32, record_ts));
        }
        b = &b[used + len as usize..];
    }
    None
}

impl StoredBatchHeader {
    pub fn base_offset(&self) -> i64 {
        self.base_offset.get()
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset.get() + self.last_offset_delta.get() as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn stored_len(&self) -> usize {
        STORED_HEADER_BYTES + self.payload_len.get() as usize
    }

    fn compute_header_crc(&self) -> u32 {
        crc32c::crc32c(&self.as_bytes()[8..])
    }

    /// Recomputes the header checksum after a field changed.
    pub fn seal(&mut self) {
        self.header_crc = self.compute_header_crc().into();
    }

    /// Magic and header checksum both match: this is a header we wrote.
    pub fn is_intact(&self) -> bool {
        self.magic.get() == STORED_MAGIC && self.header_crc.get() == self.compute_header_crc()
    }

    /// Assigns the log offset and leader epoch, and re-seals.
    pub fn assign(&mut self, base_offset: i64, leader_epoch: i32) {
        self.base_offset = base_offset.into();
        self.leader_epoch = leader_epoch.into();
        self.seal();
    }

    /// Kafka's 61-byte batch header, rebuilt from ours. Together with the
    /// payload it is byte-identical to what the producer sent, except base
    /// offset and partition leader epoch, which Kafka's CRC does not cover.
    pub fn kafka_header(&self) -> [u8; KAFKA_HEADER_BYTES] {
        let mut h = [0u8; KAFKA_HEADER_BYTES];
        h[0..8].copy_from_slice(&self.base_offset.get().to_be_bytes());
        let batch_len = (KAFKA_HEADER_BYTES - 12) as i32 + self.payload_len.get() as i32;
        h[8..12].copy_from_slice(&batch_len.to_be_bytes());
        h[12..16].copy_from_slice(&self.leader_epoch.get().to_be_bytes());
        h[16] = KAFKA_MAGIC_V2 as u8;
        h[17..21].copy_from_slice(&self.kafka_crc.get().to_be_bytes());
        h[21..23].copy_from_slice(&self.attributes.get().to_be_bytes());
        h[23..27].copy_from_slice(&self.last_offset_delta.get().to_be_bytes());
        h[27..35].copy_from_slice(&self.first_timestamp.get().to_be_bytes());
        h[35..43].copy_from_slice(&self.max_timestamp.get().to_be_bytes());
        h[43..51].copy_from_slice(&self.producer_id.get().to_be_bytes());
        h[51..53].copy_from_slice(&self.producer_epoch.get().to_be_bytes());
        h[53..57].copy_from_slice(&self.base_sequence.get().to_be_bytes());
        h[57..61].copy_from_slice(&self.record_count.get().to_be_bytes());
        h
    }

    /// Kafka's CRC-32C recomputed from this header and `payload`: the check
    /// that stored records came back from disk as they went in.
    pub fn payload_matches(&self, payload: &[u8]) -> bool {
        if payload.len() != self.payload_len.get() as usize {
            return false;
        }
        let h = self.kafka_header();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[KAFKA_CRC_START..]), payload);
        crc == self.kafka_crc.get()
    }
}

/// A stored batch handed to readers: a copy of the 72-byte header and the
/// records as a reference-counted slice (no copy of record bytes).
#[derive(Clone, Debug)]
pub struct BatchView {
    pub header: StoredBatchHeader,
    pub payload: Bytes,
}

impl BatchView {
    /// Size of this batch on the Kafka wire.
    pub fn kafka_len(&self) -> usize {
        KAFKA_HEADER_BYTES + self.payload.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    /// Builds a valid uncompressed Kafka v2 batch, as a producer would.
    pub fn kafka_batch(values: &[&[u8]], base_ts: i64) -> Bytes {
        let mut records = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut r = vec![0u8]; // attributes
            varint(&mut r, i as i64 * 10); // timestamp delta
            varint(&mut r, i as i64); // offset delta
            varint(&mut r, -1); // key: null
            varint(&mut r, v.len() as i64);
            r.extend_from_slice(v);
            varint(&mut r, 0); // headers
            varint(&mut records, r.len() as i64);
            records.extend_from_slice(&r);
        }
        let n = values.len() as i32;
        let mut b = vec![0u8; KAFKA_HEADER_BYTES];
        b[8..12].copy_from_slice(&((KAFKA_HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
        b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
        b[27..35].copy_from_slice(&base_ts.to_be_bytes());
        b[35..43].copy_from_slice(&(base_ts + (n as i64 - 1) * 10).to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[KAFKA_CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    #[test]
    fn valid_batch_round_trips_to_identical_kafka_bytes() {
        let kb = kafka_batch(&[b"a", b"bb", b"ccc"], 1000);
        let v = validate_one(kb.clone()).unwrap();
        assert_eq!(v.header.record_count.get(), 3);
        let mut h = v.header;
        h.assign(0, -1);
        let mut rebuilt = h.kafka_header().to_vec();
        rebuilt.extend_from_slice(&v.payload);
        assert_eq!(rebuilt, kb.to_vec());
        assert!(h.is_intact());
        assert!(h.payload_matches(&v.payload));
    }

    #[test]
    fn assigned_offset_changes_only_offset_and_epoch_bytes() {
        let kb = kafka_batch(&[b"x"], 5);
        let mut h = validate_one(kb.clone()).unwrap().header;
        h.assign(1234, 7);
        let k = h.kafka_header();
        assert_eq!(&k[0..8], &1234i64.to_be_bytes());
        assert_eq!(&k[12..16], &7i32.to_be_bytes());
        assert_eq!(&k[16..], &kb[16..KAFKA_HEADER_BYTES]);
    }

    #[test]
    fn flipped_payload_bit_fails_crc() {
        let mut b = kafka_batch(&[b"hello"], 0).to_vec();
        let last = b.len() - 3;
        b[last] ^= 1;
        assert!(matches!(validate_one(Bytes::from(b)), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut b = kafka_batch(&[b"hello"], 0).to_vec();
        b[16] = 1;
        assert_eq!(validate_one(Bytes::from(b)).unwrap_err(), BatchError::WrongMagic(1));
    }

    #[test]
    fn record_count_not_matching_records_is_invalid_record() {
        let mut b = kafka_batch(&[b"a", b"b"], 0).to_vec();
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[KAFKA_CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let e = validate_one(Bytes::from(b)).unwrap_err();
        assert_eq!(e.kind(), BatchErrorKind::InvalidRecord);
    }

    #[test]
    fn last_offset_delta_disagreeing_with_count_is_invalid_record() {
        let mut b = kafka_batch(&[b"a", b"b"], 0).to_vec();
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[KAFKA_CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate_one(Bytes::from(b)).unwrap_err().kind(), BatchErrorKind::InvalidRecord);
    }

    #[test]
    fn length_field_mismatch_is_corrupt() {
        let mut b = kafka_batch(&[b"a"], 0).to_vec();
        let n = b.len() as i32;
        b[8..12].copy_from_slice(&n.to_be_bytes());
        let e = validate_batches(&Bytes::from(b), u32::MAX).unwrap_err();
        assert!(matches!(e, BatchError::LengthMismatch { .. }));
        assert_eq!(e.kind(), BatchErrorKind::Corrupt);
    }

    #[test]
    fn batch_over_max_message_bytes_is_too_large() {
        let big = vec![7u8; 2000];
        let b = kafka_batch(&[&big], 0);
        let e = validate_batches(&b, 1000).unwrap_err();
        assert_eq!(e.kind(), BatchErrorKind::TooLarge);
    }

    #[test]
    fn two_concatenated_batches_split() {
        let mut both = kafka_batch(&[b"a"], 0).to_vec();
        both.extend_from_slice(&kafka_batch(&[b"b", b"c"], 0));
        let v = validate_batches(&Bytes::from(both), u32::MAX).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].header.record_count.get(), 2);
    }

    #[test]
    fn every_truncated_prefix_is_an_error_not_a_panic() {
        let b = kafka_batch(&[b"abc", b"defg"], 0);
        for n in 0..b.len() {
            assert!(validate_batches(&b.slice(..n), u32::MAX).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn timestamp_lookup_walks_uncompressed_records() {
        let kb = kafka_batch(&[b"a", b"b", b"c"], 100); // timestamps 100, 110, 120
        let v = validate_one(kb).unwrap();
        assert_eq!(first_record_at_or_after(&v.header, &v.payload, 105, 0), Some((1, 110)));
        assert_eq!(first_record_at_or_after(&v.header, &v.payload, 100, 0), Some((0, 100)));
        assert_eq!(first_record_at_or_after(&v.header, &v.payload, 100, 2), Some((2, 120)));
        assert_eq!(first_record_at_or_after(&v.header, &v.payload, 121, 0), None);
    }
}
