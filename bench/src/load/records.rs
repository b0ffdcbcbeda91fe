//! Record batches for the generator: built directly (uncompressed) or with
//! `kafka-protocol`'s encoder (compressed), each record's value starting
//! with its intended send time in Unix nanoseconds so a consumer can
//! measure end-to-end latency; and the walk back over fetched batches.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spindle_engine::records::{frame_v2_batch_in_place, put_varlong};

/// Bytes at the start of every value: the intended send time (ns since epoch).
pub const STAMP_BYTES: usize = 8;
const HEADER_BYTES: usize = 61;

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

pub fn parse_compression(s: &str) -> Result<Compression, String> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => return Err(format!("unknown compression {other} (none, gzip, snappy, lz4, zstd)")),
    })
}

/// Accumulates records for one partition until it is sent.
pub struct BatchBuilder {
    compression: Compression,
    /// The batch being built, uncompressed: room for the 61-byte header,
    /// then the records section, so finishing copies nothing.
    body: Vec<u8>,
    /// For compressed batches: the records, encoded at `finish`.
    pending: Vec<Record>,
    pub count: usize,
    pub bytes: usize,
    first_ts_ms: i64,
    max_ts_ms: i64,
    /// Intended send time of each record (ns since epoch).
    pub intended_ns: Vec<i64>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            body: vec![0; HEADER_BYTES],
            pending: Vec::new(),
            count: 0,
            bytes: 0,
            first_ts_ms: 0,
            max_ts_ms: 0,
            intended_ns: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a record whose value is `STAMP` + `filler[..value_len - STAMP]`.
    pub fn push(&mut self, key: Option<&[u8]>, value_len: usize, filler: &[u8], intended_ns: i64) {
        let ts_ms = intended_ns / 1_000_000;
        if self.count == 0 {
            self.first_ts_ms = ts_ms;
        }
        self.max_ts_ms = self.max_ts_ms.max(ts_ms);
        let value_len = value_len.max(STAMP_BYTES);
        let stamp = intended_ns.to_be_bytes();
        let rest = &filler[..value_len - STAMP_BYTES];
        if self.compression == Compression::None {
            // Written in place: the generator must not be what it measures.
            let ts_delta = ts_ms - self.first_ts_ms;
            let key_part = key.map_or(varint_len(-1), |k| varint_len(k.len() as i64) + k.len());
            let rec_len = 1
                + varint_len(ts_delta)
                + varint_len(self.count as i64)
                + key_part
                + varint_len(value_len as i64)
                + value_len
                + 1;
            self.body.reserve(rec_len + 5);
            put_varlong(&mut self.body, rec_len as i64);
            self.body.push(0);
            put_varlong(&mut self.body, ts_delta);
            put_varlong(&mut self.body, self.count as i64);
            match key {
                Some(k) => {
                    put_varlong(&mut self.body, k.len() as i64);
                    self.body.extend_from_slice(k);
                }
                None => put_varlong(&mut self.body, -1),
            }
            put_varlong(&mut self.body, value_len as i64);
            self.body.extend_from_slice(&stamp);
            self.body.extend_from_slice(rest);
            put_varlong(&mut self.body, 0);
        } else {
            let mut value = Vec::with_capacity(value_len);
            value.extend_from_slice(&stamp);
            value.extend_from_slice(rest);
            self.pending.push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: self.count as i64,
                // The encoder starts a new batch whenever offset - sequence
                // changes; this keeps one batch and a base sequence of -1
                // (no idempotence).
                sequence: self.count as i32 - 1,
                timestamp: ts_ms,
                key: key.map(Bytes::copy_from_slice),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            });
        }
        self.count += 1;
        self.bytes += value_len + key.map_or(0, |k| k.len()) + 8;
        self.intended_ns.push(intended_ns);
    }

    /// The Kafka v2 batch, and the intended send times of its records.
    pub fn finish(&mut self) -> (Bytes, Vec<i64>) {
        let intended = std::mem::take(&mut self.intended_ns);
        let batch = if self.compression == Compression::None {
            frame_v2_batch_in_place(&mut self.body, self.count as i32, self.first_ts_ms, self.max_ts_ms);
            // The next batch starts with the capacity this one needed.
            let mut next = Vec::with_capacity(self.body.capacity());
            next.resize(HEADER_BYTES, 0);
            Bytes::from(std::mem::replace(&mut self.body, next))
        } else {
            let mut buf = BytesMut::new();
            let opts = RecordEncodeOptions { version: 2, compression: self.compression };
            RecordBatchEncoder::encode(&mut buf, self.pending.iter(), &opts).expect("encoding a record batch");
            self.pending.clear();
            buf.freeze()
        };
        self.count = 0;
        self.bytes = 0;
        (batch, intended)
    }
}

/// What a consumer saw in one partition's fetched records.
#[derive(Default, Debug)]
pub struct Walked {
    pub records: u64,
    pub bytes: u64,
    pub next_offset: Option<i64>,
    /// Intended send time (ns since epoch) of each record with a stamp.
    pub stamps: Vec<i64>,
}

/// Walks the batches of a fetch response's records bytes.
pub fn walk(records: &Bytes) -> Walked {
    let mut w = Walked::default();
    let mut at = 0usize;
    while records.len() >= at + HEADER_BYTES {
        let b = &records[at..];
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize + 12;
        if len < HEADER_BYTES || b.len() < len {
            break; // a partial batch at the end of a fetch
        }
        let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
        let last_delta = i32::from_be_bytes(b[23..27].try_into().unwrap()) as i64;
        let attributes = i16::from_be_bytes(b[21..23].try_into().unwrap());
        w.next_offset = Some(base + last_delta + 1);
        w.bytes += len as u64;
        if attributes & 0x7 == 0 {
            let mut r = &b[HEADER_BYTES..len];
            while !r.is_empty() {
                let Some((rlen, n)) = read_varint(r) else { break };
                let Some(rec) = usize::try_from(rlen).ok().and_then(|l| r.get(n..n + l)) else { break };
                r = &r[n + rec.len()..];
                w.records += 1;
                if let Some(v) = record_value(rec) {
                    if v.len() >= STAMP_BYTES {
                        w.stamps.push(i64::from_be_bytes(v[..8].try_into().unwrap()));
                    }
                }
            }
        } else {
            let mut one = records.slice(at..at + len);
            if let Ok(set) = RecordBatchDecoder::decode(&mut one) {
                for rec in set.records {
                    w.records += 1;
                    if let Some(v) = rec.value.filter(|v| v.len() >= STAMP_BYTES) {
                        w.stamps.push(i64::from_be_bytes(v[..8].try_into().unwrap()));
                    }
                }
            }
        }
        at += len;
    }
    w
}

fn record_value(rec: &[u8]) -> Option<&[u8]> {
    let mut p = 1; // attributes
    for _ in 0..2 {
        let (_, n) = read_varint(rec.get(p..)?)?;
        p += n;
    }
    let (klen, n) = read_varint(rec.get(p..)?)?;
    p += n + klen.max(0) as usize;
    let (vlen, n) = read_varint(rec.get(p..)?)?;
    p += n;
    if vlen < 0 {
        return None;
    }
    rec.get(p..p + vlen as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_is_valid_and_walks_back_to_its_stamps() {
        let filler = vec![7u8; 2048];
        for c in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let mut b = BatchBuilder::new(parse_compression(c).unwrap());
            for i in 0..10 {
                b.push(if i % 2 == 0 { Some(b"key") } else { None }, 100, &filler, 1_000_000_000 + i);
            }
            let (batch, intended) = b.finish();
            assert_eq!(intended.len(), 10);
            let declared = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize + 12;
            assert_eq!(declared, batch.len(), "{c}: one batch");
            assert_eq!(i32::from_be_bytes(batch[53..57].try_into().unwrap()), -1, "{c}: no base sequence");
            // Kafka's CRC covers attributes..end.
            let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
            assert_eq!(crc, crc32c::crc32c(&batch[21..]), "{c}");
            let w = walk(&batch);
            assert_eq!(w.records, 10, "{c}");
            assert_eq!(w.next_offset, Some(10));
            assert_eq!(w.stamps, (0..10).map(|i| 1_000_000_000 + i).collect::<Vec<_>>(), "{c}");
            assert!(b.is_empty());
            // The builder starts the next batch afresh.
            b.push(None, 300, &filler, 2_000_000_000);
            let (again, _) = b.finish();
            assert_eq!(i32::from_be_bytes(again[8..12].try_into().unwrap()) as usize + 12, again.len(), "{c}");
            assert_eq!(u32::from_be_bytes(again[17..21].try_into().unwrap()), crc32c::crc32c(&again[21..]), "{c}");
            assert_eq!(walk(&again).stamps, vec![2_000_000_000], "{c}");
        }
    }

    #[test]
    fn partial_batch_at_the_end_of_a_fetch_is_skipped() {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(None, 50, &[0u8; 64], 5);
        let (batch, _) = b.finish();
        let mut two = batch.to_vec();
        two.extend_from_slice(&batch[..batch.len() - 3]);
        let w = walk(&Bytes::from(two));
        assert_eq!(w.records, 1);
    }
}
