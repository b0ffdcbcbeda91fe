//! Criterion benches of the engine's hot paths, one function each, no disk:
//! what one core spends per batch before and after the I/O. End-to-end
//! numbers on a real disk are `spindle-bench engine` (bench/).
//!
//! `cargo bench -p spindle-engine` runs them all in a few minutes (each
//! measures for 3 s, 20 samples). Values are pseudo-random so that nothing
//! benefits from repetitive input.

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spindle_engine::batch::{validate_batches, validate_one, BatchView, StoredBatchHeader};
use spindle_engine::index::SegmentIndex;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendOptions, BatchCache, Durability, Log, LogConfig};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

const MEASURE: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(1);
const SAMPLES: usize = 20;

/// xorshift64*: incompressible filler.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A Kafka v2 batch of about `bytes` with 1 KiB records (one record if
/// smaller), as a producer with `batch.size` = `bytes` would send.
fn batch(bytes: usize, seed: u64) -> Bytes {
    let record = 1024.min(bytes - 100);
    let n = ((bytes - 61) / (record + 12)).max(1);
    let values: Vec<Vec<u8>> = (0..n).map(|i| random_bytes(record, seed * 1000 + i as u64)).collect();
    common::kafka_batch(&values, 1_700_000_000_000)
}

fn view(bytes: usize, seed: u64, base: i64) -> BatchView {
    let mut v = validate_one(batch(bytes, seed)).expect("valid batch");
    v.header.assign(base, 0);
    BatchView { header: v.header, payload: v.payload }
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(MEASURE).warm_up_time(WARM_UP).sample_size(SAMPLES);
    g
}

/// Validation of a produce request's records: framing, CRC-32C over the
/// batch, record count walk, header build. Bounded by the CRC.
fn bench_validate(c: &mut Criterion) {
    let mut g = group(c, "validate_batches");
    for size in [16 << 10, 1 << 20] {
        let b = batch(size, 1);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{}KiB", size >> 10)), &b, |bench, b| {
            bench.iter(|| validate_batches(black_box(b), u32::MAX).expect("valid"))
        });
    }
    g.finish();
}

/// Raw CRC-32C, the floor under validation, reads from disk and recovery.
fn bench_crc32c(c: &mut Criterion) {
    let mut g = group(c, "crc32c");
    for size in [4 << 10, 16 << 10, 1 << 20] {
        let data = random_bytes(size, 2);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{}KiB", size >> 10)), &data, |bench, d| {
            bench.iter(|| crc32c::crc32c(black_box(d)))
        });
    }
    g.finish();
}

/// Rebuilding Kafka's 61-byte header from ours, once per batch on every
/// fetch; and the header checksum check done on every batch read from disk.
fn bench_header(c: &mut Criterion) {
    let h: StoredBatchHeader = view(16 << 10, 3, 123_456).header;
    let mut g = group(c, "stored_header");
    g.bench_function("kafka_header", |b| b.iter(|| black_box(&h).kafka_header()));
    g.bench_function("is_intact", |b| b.iter(|| black_box(&h).is_intact()));
    g.finish();
}

/// Offset lookup in the sparse index of a full 1 GiB segment. Small
/// (1 KiB) batches give the densest index: one entry per 4 KiB of log,
/// 262,144 entries.
fn bench_index(c: &mut Criterion) {
    const SEGMENT: u64 = 1 << 30;
    const BATCH: u32 = 1024;
    let mut idx = SegmentIndex::new();
    let mut pos = 0u32;
    let mut rel = 0u32;
    while (pos as u64) + (BATCH as u64) <= SEGMENT {
        idx.on_batch(rel, pos, BATCH, 1_700_000_000_000 + rel as i64);
        pos += BATCH;
        rel += 10;
    }
    let last = rel;
    let probes: Vec<u32> =
        random_bytes(4096 * 4, 4).chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) % last).collect();
    let mut g = group(c, "index");
    g.bench_function(format!("position_for_offset_1GiB_{}_entries", idx.offsets.len()), |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % probes.len();
            idx.position_for_offset(black_box(probes[i]))
        })
    });
    g.finish();
}

/// A tail read that hits the batch cache: the fetch path of a caught-up
/// consumer. One read returns up to 1 MiB (a consumer's fetch size): 64
/// batches of 16 KiB or about 1000 of 1 KiB. No payload is copied, so the
/// cost is per batch, not per byte.
fn bench_cache(c: &mut Criterion) {
    let mut g = group(c, "batch_cache_read_hit");
    for size in [1 << 10, 16 << 10] {
        let cache = BatchCache::new(256 << 20);
        let log = cache.register_log();
        let mut base = 0i64;
        let mut bases = Vec::new();
        for i in 0..(64 << 20) / size {
            let v = view(size, 10 + i as u64 % 16, base);
            bases.push(base);
            base = v.header.next_offset();
            cache.insert(log, v);
        }
        let end = base;
        let per_read = cache.read(log, 0, end, 1 << 20).iter().map(|v| v.kafka_len() as u64).sum();
        g.throughput(Throughput::Bytes(per_read));
        g.bench_function(format!("{}KiB_batches_fetch_1MiB", size >> 10), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7) % (bases.len() / 2);
                cache.read(log, black_box(bases[i]), end, 1 << 20)
            })
        });
    }
    g.finish();
}

/// `Log::append` and `Log::read` through the whole engine on the in-memory
/// disk: validation, offset assignment, staging copy, the write round, the
/// cache. The disk is a `Vec`, so this is the engine's CPU cost per batch.
/// `sequential` awaits each append before the next (one write round per
/// append); `concurrent_64` runs 64 appends at once, so one write round
/// carries them all (group commit). A fresh log every 64 MiB (not timed)
/// keeps memory bounded.
fn bench_log_mem(c: &mut Criterion) {
    // Small: MemStorage keeps every unsynced write buffer (1 MiB capacity
    // each) until fdatasync, and this bench never syncs.
    const REOPEN_BYTES: usize = 4 << 20;
    let size = 16 << 10;
    let batches: Vec<Bytes> = (0..64).map(|i| batch(size, 100 + i)).collect();
    let opts = AppendOptions { leader_epoch: 0, now_ms: 1_000, durability: Durability::Written };
    let fresh = || {
        let s = MemStorage::new();
        let cache = Rc::new(BatchCache::new(256 << 20));
        futures_lite::future::block_on(Log::open(s, Path::new("/bench/t-0"), LogConfig::default(), cache, 1))
            .expect("open")
    };
    let mut g = group(c, "log_mem");
    for (name, per_iter, read_back) in [
        ("append_16KiB_sequential", 1usize, false),
        ("append_then_read_16KiB_sequential", 1, true),
        ("append_16KiB_concurrent_64", 64, false),
    ] {
        g.throughput(Throughput::Bytes((size * per_iter) as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut log = fresh();
                let mut bytes = 0usize;
                let mut i = 0usize;
                let mut left = iters;
                while left > 0 {
                    if bytes >= REOPEN_BYTES {
                        log = fresh();
                        bytes = 0;
                    }
                    let run = left.min(((REOPEN_BYTES - bytes) / (size * per_iter)).max(1) as u64);
                    let start = Instant::now();
                    futures_lite::future::block_on(async {
                        for _ in 0..run {
                            if per_iter == 1 {
                                let bt = batches[i % batches.len()].clone();
                                i += 1;
                                let info = log.append(bt, opts).await.expect("append");
                                if read_back {
                                    black_box(log.read(info.base_offset, 1 << 20, i64::MAX).await.expect("read"));
                                }
                            } else {
                                let all = batches.iter().take(per_iter).map(|bt| log.append(bt.clone(), opts));
                                for r in futures::future::join_all(all).await {
                                    black_box(r.expect("append"));
                                }
                            }
                        }
                    });
                    total += start.elapsed();
                    bytes += run as usize * size * per_iter;
                    left -= run;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_validate, bench_crc32c, bench_header, bench_index, bench_cache, bench_log_mem);
criterion_main!(benches);
