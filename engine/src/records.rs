//! Building and walking the records inside an uncompressed Kafka v2 batch.
//!
//! The data path never does this (client batches are stored as sent). It
//! serves the broker's own internal records, such as consumer-group offset
//! commits in `__consumer_offsets`, which the broker writes and replays.

use crate::batch::read_varlong;
use bytes::{Bytes, BytesMut};

/// Appends `v` as a zigzag varint (Kafka's `varint`/`varlong`).
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

/// One record to encode: key and value (`None` is null: a value of `None`
/// is a tombstone).
pub struct NewRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// An uncompressed Kafka v2 record batch holding `records`, all stamped with
/// `timestamp_ms`, base offset 0 (the log assigns offsets), no producer id.
pub fn encode_batch(records: &[NewRecord<'_>], timestamp_ms: i64) -> Bytes {
    encode_batch_at(0, -1, records, timestamp_ms)
}

/// [`encode_batch`] with a base offset and partition leader epoch already
/// set, as a leader's log holds it: what a follower's
/// [`crate::Log::append_replicated`] takes (tests, and Raft entries).
pub fn encode_batch_at(base_offset: i64, leader_epoch: i32, records: &[NewRecord<'_>], timestamp_ms: i64) -> Bytes {
    let mut b = BytesMut::from(encode_records(records, timestamp_ms));
    // Neither field is covered by Kafka's CRC (it starts at attributes).
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    b.freeze()
}

fn encode_records(records: &[NewRecord<'_>], timestamp_ms: i64) -> Bytes {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        put_varlong(&mut rec, 0); // timestamp delta
        put_varlong(&mut rec, i as i64); // offset delta
        put_bytes(&mut rec, r.key);
        put_bytes(&mut rec, r.value);
        put_varlong(&mut rec, 0); // headers
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    frame_v2_batch(&body, records.len() as i32, timestamp_ms, timestamp_ms)
}

/// Frames an uncompressed records section as a Kafka v2 batch: base offset
/// 0 (the log assigns offsets), no producer id or sequence, partition leader
/// epoch -1, offset deltas `0..count`, Kafka's CRC-32C. The one place the
/// 61-byte header is laid out for batches we build ourselves.
pub fn frame_v2_batch(records: &[u8], count: i32, first_timestamp_ms: i64, max_timestamp_ms: i64) -> Bytes {
    use crate::batch::KAFKA_HEADER_BYTES;
    let mut b = Vec::with_capacity(KAFKA_HEADER_BYTES + records.len());
    b.resize(KAFKA_HEADER_BYTES, 0);
    b.extend_from_slice(records);
    frame_v2_batch_in_place(&mut b, count, first_timestamp_ms, max_timestamp_ms);
    Bytes::from(b)
}

/// [`frame_v2_batch`] for a buffer whose first 61 bytes were left for the
/// header and whose records section follows: fills the header in place, so
/// a builder that reserved it copies the records no second time.
pub fn frame_v2_batch_in_place(b: &mut [u8], count: i32, first_timestamp_ms: i64, max_timestamp_ms: i64) {
    use crate::batch::{KAFKA_HEADER_BYTES, KAFKA_MAGIC_V2};
    assert!(b.len() >= KAFKA_HEADER_BYTES, "no room for the batch header");
    b[..8].fill(0);
    let len = b.len();
    b[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = KAFKA_MAGIC_V2 as u8;
    b[21..23].fill(0);
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&first_timestamp_ms.to_be_bytes());
    b[35..43].copy_from_slice(&max_timestamp_ms.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A record read back from an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Walks the records of an uncompressed batch payload (the bytes after the
/// 61-byte header). `None` at the first malformed record.
pub fn iter_records(payload: &Bytes) -> impl Iterator<Item = RecordView> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = payload.get(at..)?;
        if rest.is_empty() {
            return None;
        }
        let (len, n) = read_varlong(rest)?;
        let start = at + n;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > payload.len() {
            return None;
        }
        at = end;
        let rec = payload.slice(start..end);
        let mut p = 1usize; // attributes
        let mut next = || -> Option<i64> {
            let (v, n) = read_varlong(rec.get(p..)?)?;
            p += n;
            Some(v)
        };
        let timestamp_delta = next()?;
        let offset_delta = next()?;
        let key_len = next()?;
        let key = if key_len < 0 {
            None
        } else {
            let k = rec.get(p..p + key_len as usize).map(|_| rec.slice(p..p + key_len as usize))?;
            p += key_len as usize;
            Some(k)
        };
        let (value_len, n) = read_varlong(rec.get(p..)?)?;
        p += n;
        let value = if value_len < 0 {
            None
        } else {
            rec.get(p..p + value_len as usize)?;
            Some(rec.slice(p..p + value_len as usize))
        };
        Some(RecordView { offset_delta, timestamp_delta, key, value })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_one;

    #[test]
    fn encoded_batch_validates_and_walks_back() {
        let recs = [
            NewRecord { key: Some(b"k1"), value: Some(b"v1") },
            NewRecord { key: Some(b"k2"), value: None },
            NewRecord { key: None, value: Some(b"") },
        ];
        let b = encode_batch(&recs, 1234);
        let v = validate_one(b).expect("valid batch");
        assert_eq!(v.header.record_count.get(), 3);
        let back: Vec<_> = iter_records(&v.payload).collect();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(back[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(back[1].value, None);
        assert_eq!(back[2].key, None);
        assert_eq!(back[2].value.as_deref(), Some(&b""[..]));
        assert_eq!(back[2].offset_delta, 2);
    }

    #[test]
    fn truncated_payload_stops_the_walk_without_panic() {
        let b = encode_batch(&[NewRecord { key: Some(b"key"), value: Some(b"value") }], 0);
        let payload = b.slice(crate::batch::KAFKA_HEADER_BYTES..);
        for n in 0..payload.len() {
            let cut = payload.slice(..n);
            assert_eq!(iter_records(&cut).count(), 0, "prefix {n}");
        }
    }
}
