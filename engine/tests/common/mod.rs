//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use spindle_engine::storage::memory::{MemBuf, MemFileHandle, MemStorage};
use spindle_engine::storage::{Storage, StorageFile};
use spindle_engine::{AppendOptions, BatchCache, Durability, Log, LogConfig, RecoveryError};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub mod recover;

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
    let deltas: Vec<i64> = (0..values.len() as i64).collect();
    kafka_batch_ts(values, base_ts, &deltas)
}

/// Like [`kafka_batch`], but record i has timestamp `base_ts + ts_deltas[i]`
/// (deltas may be unordered, as producers with caller-set timestamps send).
/// The header's max timestamp is the largest record timestamp.
pub fn kafka_batch_ts(values: &[Vec<u8>], base_ts: i64, ts_deltas: &[i64]) -> Bytes {
    assert_eq!(values.len(), ts_deltas.len());
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        let mut r = vec![0u8];
        varint(&mut r, ts_deltas[i]);
        varint(&mut r, i as i64);
        varint(&mut r, key.len() as i64);
        r.extend_from_slice(key.as_bytes());
        varint(&mut r, v.len() as i64);
        r.extend_from_slice(v);
        varint(&mut r, 0);
        varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let max_ts = base_ts + ts_deltas.iter().copied().max().unwrap_or(0);
    raw_batch(values.len() as i32, 0, base_ts, max_ts, &records)
}

/// A batch with the given attributes (low 3 bits: compression codec) and an
/// opaque records section, as a producer sends compressed data: the engine
/// never decompresses, so any bytes do.
pub fn compressed_batch(record_count: i32, codec: i16, base_ts: i64, max_ts: i64, records: &[u8]) -> Bytes {
    raw_batch(record_count, codec, base_ts, max_ts, records)
}

fn raw_batch(n: i32, attributes: i16, base_ts: i64, max_ts: i64, records: &[u8]) -> Bytes {
    let mut b = vec![0u8; 61];
    b[8..12].copy_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
    b[27..35].copy_from_slice(&base_ts.to_be_bytes());
    b[35..43].copy_from_slice(&max_ts.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&n.to_be_bytes());
    b.extend_from_slice(records);
    reseal(&mut b);
    Bytes::from(b)
}

/// Recomputes a Kafka batch's CRC-32C after a test edited it.
pub fn reseal(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
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

pub fn opts_at(leader_epoch: i32, now_ms: i64, durability: Durability) -> AppendOptions {
    AppendOptions { leader_epoch, now_ms, durability }
}

pub fn dir() -> PathBuf {
    PathBuf::from("/data/t-0")
}

/// Path of a segment file (`ext`: "log", "index", "timeindex") in [`dir`].
pub fn seg_path(base: i64, ext: &str) -> PathBuf {
    dir().join(format!("{base:020}.{ext}"))
}

/// Base offsets of the segment files in [`dir`], ascending.
pub fn segment_bases(storage: &MemStorage) -> Vec<i64> {
    let mut v: Vec<i64> = storage
        .file_names()
        .iter()
        .filter(|p| p.parent() == Some(dir().as_path()))
        .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

pub fn open(storage: &MemStorage, config: LogConfig) -> Log<MemStorage> {
    open_at(storage, &dir(), config)
}

pub fn open_at<S: Storage>(storage: &S, dir: &Path, config: LogConfig) -> Log<S> {
    try_open_at(storage, dir, config).expect("open log")
}

pub fn try_open_at<S: Storage>(storage: &S, dir: &Path, config: LogConfig) -> Result<Log<S>, RecoveryError> {
    let cache = Rc::new(BatchCache::new(64 << 20));
    futures_lite::future::block_on(Log::open(storage.clone(), dir, config, cache, 1_000))
}

/// Opens with a batch cache of `cache_bytes` (0: every read goes to disk).
pub fn open_with_cache(storage: &MemStorage, config: LogConfig, cache_bytes: usize) -> Log<MemStorage> {
    let cache = Rc::new(BatchCache::new(cache_bytes));
    futures_lite::future::block_on(Log::open(storage.clone(), &dir(), config, cache, 1_000)).expect("open log")
}

/// Reads every batch from `from` to the high watermark.
pub async fn read_all<S: Storage>(log: &Log<S>, from: i64) -> Vec<spindle_engine::BatchView> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let got = log.read(next, 1 << 20, i64::MAX).await.expect("read");
        if got.is_empty() {
            return out;
        }
        // Each read must continue exactly where the last one ended.
        assert!(got[0].header.base_offset() <= next && got[0].header.last_offset() >= next, "read({next}) skipped");
        next = got.last().unwrap().header.next_offset();
        out.extend(got);
    }
}

pub fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() }
}

/// One appended batch as the tests remember it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub base: i64,
    pub epoch: i32,
    pub bytes: Bytes,
}

impl Sent {
    pub fn records(&self) -> i64 {
        i32::from_be_bytes(self.bytes[57..61].try_into().unwrap()) as i64
    }
    pub fn next(&self) -> i64 {
        self.base + self.records()
    }
    pub fn wire(&self) -> Vec<u8> {
        expected_wire(&self.bytes, self.base, self.epoch)
    }
}

/// Asserts that reading the whole log from `from` yields exactly `sent`
/// (byte for byte on the Kafka wire), and nothing more.
pub async fn assert_log_is<S: Storage>(log: &Log<S>, from: i64, sent: &[Sent]) {
    let got = read_all(log, from).await;
    let got_offsets: Vec<i64> = got.iter().map(|v| v.header.base_offset()).collect();
    let want_offsets: Vec<i64> = sent.iter().map(|s| s.base).collect();
    assert_eq!(got_offsets, want_offsets, "batch base offsets");
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(wire(g), s.wire(), "content of batch at offset {}", s.base);
    }
}

/// A [`MemStorage`] whose segment reads, writes and fdatasyncs each yield
/// once before they complete, as real I/O does, so concurrent operations
/// actually overlap (with plain `MemStorage` every operation is ready at once
/// and each append runs to completion alone). Everything else is passed
/// through.
#[derive(Clone, Default)]
pub struct SlowStorage {
    pub mem: MemStorage,
    /// Length of the largest `read_at` asked of any segment file.
    pub largest_read: Rc<std::cell::Cell<usize>>,
    /// `None`: a write and an fdatasync of one file in flight together fail
    /// the test, as they must for a log that is not backlogged. `Some`:
    /// they are counted here instead (a backlogged log lets writes pass
    /// its syncs).
    pub sync_overlaps: Option<Rc<std::cell::Cell<u64>>>,
}

/// A segment file whose operations yield once, so they overlap as on
/// io_uring. It checks the log's ordering rules as they happen: two writes
/// of one sector are never in flight together, no write is submitted while
/// a growth (fallocate) of the file is in flight, a growth and an
/// fdatasync never overlap, and, unless the storage counts
/// `sync_overlaps`, no write is submitted while an fdatasync is in flight
/// and an fdatasync starts only once the file's writes in flight have
/// completed.
pub struct SlowFile {
    mem: MemFileHandle,
    largest_read: Rc<std::cell::Cell<usize>>,
    /// Writes in flight, as [start, end) byte ranges.
    writes: std::cell::RefCell<Vec<(u64, u64)>>,
    syncs: std::cell::Cell<u32>,
    growths: std::cell::Cell<u32>,
    sync_overlaps: Option<Rc<std::cell::Cell<u64>>>,
}

impl SlowFile {
    /// Runs `op` counted in `count` while in flight.
    async fn counted<T>(count: &std::cell::Cell<u32>, op: impl std::future::Future<Output = T>) -> T {
        // Counted out however it ends: a dropped (cancelled) operation
        // is no longer in flight either.
        struct InFlight<'a>(&'a std::cell::Cell<u32>);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        count.set(count.get() + 1);
        let _in_flight = InFlight(count);
        futures_lite::future::yield_now().await;
        op.await
    }

    /// A write and a sync in flight together: a failure, or counted.
    fn sync_overlap(&self, what: std::fmt::Arguments<'_>) {
        match &self.sync_overlaps {
            Some(n) => n.set(n.get() + 1),
            None => panic!("{what}"),
        }
    }
}

impl StorageFile for SlowFile {
    type Buf = MemBuf;
    fn alloc_buf(&self, len: usize) -> MemBuf {
        self.mem.alloc_buf(len)
    }
    async fn write_at(&self, buf: MemBuf, pos: u64, rewritten: usize) -> (io::Result<()>, MemBuf) {
        // The log's ordering rule: two writes of one sector (the rewrite of
        // a partial tail sector) are never in flight together.
        let end = pos + buf.as_ref().len() as u64;
        assert_eq!(self.growths.get(), 0, "write [{pos}, {end}) submitted while an fallocate is in flight");
        if self.syncs.get() > 0 {
            self.sync_overlap(format_args!("write [{pos}, {end}) submitted while an fdatasync is in flight"));
        }
        for &(p, e) in self.writes.borrow().iter() {
            assert!(end <= p || pos >= e, "write [{pos}, {end}) overlaps write [{p}, {e}) still in flight");
        }
        self.writes.borrow_mut().push((pos, end));
        futures_lite::future::yield_now().await;
        let r = self.mem.write_at(buf, pos, rewritten).await;
        self.writes.borrow_mut().retain(|&w| w != (pos, end));
        r
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.largest_read.set(self.largest_read.get().max(len));
        futures_lite::future::yield_now().await;
        self.mem.read_at(pos, len).await
    }
    async fn fdatasync(&self) -> io::Result<()> {
        assert_eq!(self.growths.get(), 0, "fdatasync started while an fallocate is in flight");
        if !self.writes.borrow().is_empty() {
            self.sync_overlap(format_args!("fdatasync started with writes in flight: {:?}", self.writes.borrow()));
        }
        Self::counted(&self.syncs, self.mem.fdatasync()).await
    }
    async fn allocate(&self, size: u64) -> io::Result<()> {
        assert_eq!(self.syncs.get(), 0, "fallocate started while an fdatasync is in flight");
        Self::counted(&self.growths, self.mem.allocate(size)).await
    }
    async fn truncate(&self, size: u64) -> io::Result<()> {
        self.mem.truncate(size).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.mem.size().await
    }
    async fn close(self) -> io::Result<()> {
        self.mem.close().await
    }
}

impl Storage for SlowStorage {
    type File = SlowFile;
    async fn open(&self, path: &Path, create: bool) -> io::Result<SlowFile> {
        let f = self.mem.open(path, create).await?;
        Ok(SlowFile {
            mem: f,
            largest_read: self.largest_read.clone(),
            writes: Default::default(),
            syncs: Default::default(),
            growths: Default::default(),
            sync_overlaps: self.sync_overlaps.clone(),
        })
    }
    async fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.mem.read_file(path).await
    }
    async fn write_file_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.mem.write_file_atomic(path, data).await
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.mem.remove(path).await
    }
    fn unlink(&self, path: &Path) -> io::Result<()> {
        self.mem.unlink(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mem.rename(from, to)
    }
    fn discard(&self, path: PathBuf) {
        self.mem.discard(path)
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Yields like the file operations, so a test can cancel a roll here.
        futures_lite::future::yield_now().await;
        self.mem.sync_dir(dir).await
    }
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.mem.create_dir_all(path).await
    }
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.mem.list_dir(dir).await
    }
}

/// A small deterministic generator for tests that must replay (splitmix64).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
