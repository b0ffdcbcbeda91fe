//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendOptions, BatchCache, Durability, Log, LogConfig};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

/// A valid uncompressed Kafka v2 batch, as a producer builds it. Record i
/// has timestamp `base_ts + i`, key `k<i>`, and the given value.
pub fn kafka_batch(values: &[Vec<u8>], base_ts: i64) -> Bytes {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        let mut r = vec![0u8];
        varint(&mut r, i as i64);
        varint(&mut r, i as i64);
        varint(&mut r, key.len() as i64);
        r.extend_from_slice(key.as_bytes());
        varint(&mut r, v.len() as i64);
        r.extend_from_slice(v);
        varint(&mut r, 0);
        varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let n = values.len() as i32;
    let mut b = vec![0u8; 61];
    b[8..12].copy_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
    b[27..35].copy_from_slice(&base_ts.to_be_bytes());
    b[35..43].copy_from_slice(&(base_ts + n as i64 - 1).to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// A batch of `n` records whose values encode `tag` (so content is checkable).
pub fn tagged_batch(tag: u64, n: usize, value_len: usize, ts: i64) -> Bytes {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = format!("{tag}:{i}:").into_bytes();
            v.resize(value_len.max(v.len()), b'x');
            v
        })
        .collect();
    kafka_batch(&values, ts)
}

/// The Kafka wire bytes of a read batch: synthesized header plus payload.
pub fn wire(view: &spindle_engine::BatchView) -> Vec<u8> {
    let mut v = view.header.kafka_header().to_vec();
    v.extend_from_slice(&view.payload);
    v
}

/// `sent` with base offset and leader epoch set as the log assigned them.
pub fn expected_wire(sent: &[u8], base_offset: i64, epoch: i32) -> Vec<u8> {
    let mut v = sent.to_vec();
    v[0..8].copy_from_slice(&base_offset.to_be_bytes());
    v[12..16].copy_from_slice(&epoch.to_be_bytes());
    v
}

pub fn opts(durability: Durability) -> AppendOptions {
    AppendOptions { leader_epoch: 0, now_ms: 1_000, durability }
}

pub fn dir() -> PathBuf {
    PathBuf::from("/data/t-0")
}

pub fn open(storage: &MemStorage, config: LogConfig) -> Log<MemStorage> {
    open_at(storage, &dir(), config)
}

pub fn open_at(storage: &MemStorage, dir: &Path, config: LogConfig) -> Log<MemStorage> {
    let cache = Rc::new(BatchCache::new(64 << 20));
    futures_lite::future::block_on(Log::open(storage.clone(), dir, config, cache, 1_000)).expect("open log")
}

/// Reads every batch from `from` to the high watermark.
pub async fn read_all(log: &Log<MemStorage>, from: i64) -> Vec<spindle_engine::BatchView> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let got = log.read(next, 1 << 20, i64::MAX).await.expect("read");
        if got.is_empty() {
            return out;
        }
        next = got.last().unwrap().header.next_offset();
        out.extend(got);
    }
}

pub fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() }
}
