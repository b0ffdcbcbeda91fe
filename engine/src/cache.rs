//! Per-core batch cache.
//!
//! Direct I/O bypasses the kernel page cache, so tail reads by caught-up
//! consumers would hit the disk without this. Appended batches go in as the
//! client's bytes (a `Bytes` slice of the request buffer, no copy); cold
//! reads put in what their read-ahead brought. One cache per core, shared by
//! every partition on that core, with one byte budget.
//!
//! Eviction is FIFO by insertion, which for a log is nearly LRU: the newest
//! batches are the ones consumers want. Inserting evicts synchronously by
//! dropping references, so it never waits on anything and never blocks an
//! append. Only readers of the batch keep its memory alive after eviction.
//!
//! Accounting counts header plus payload length. A payload slice keeps its
//! whole request buffer alive, so with multi-partition produce requests the
//! resident memory can exceed the budget by up to one request per cached
//! batch's owner; budgets are sized with that in mind.

use crate::batch::{BatchView, STORED_HEADER_BYTES};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Identifies a log within a core's cache.
pub type LogId = u64;

struct Entry {
    view: BatchView,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    logs: HashMap<LogId, BTreeMap<i64, Entry>>,
    fifo: VecDeque<(LogId, i64, u64)>,
    bytes: usize,
    seq: u64,
}

pub struct BatchCache {
    budget_bytes: usize,
    inner: RefCell<Inner>,
    hits: Cell<u64>,
    misses: Cell<u64>,
    next_log_id: Cell<LogId>,
}

/// Hit and miss counts, and bytes held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: usize,
    pub budget_bytes: usize,
}

fn cost(v: &BatchView) -> usize {
    STORED_HEADER_BYTES + v.payload.len()
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> Self {
        BatchCache {
            budget_bytes,
            inner: RefCell::default(),
            hits: Cell::new(0),
            misses: Cell::new(0),
            next_log_id: Cell::new(1),
        }
    }

    /// A fresh id for a log opened on this core.
    pub fn register_log(&self) -> LogId {
        let id = self.next_log_id.get();
        self.next_log_id.set(id + 1);
        id
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            bytes: self.inner.borrow().bytes,
            budget_bytes: self.budget_bytes,
        }
    }

    pub fn insert(&self, log: LogId, view: BatchView) {
        let c = cost(&view);
        if c > self.budget_bytes {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let base = view.header.base_offset();
        inner.seq += 1;
        let seq = inner.seq;
        let map = inner.logs.entry(log).or_default();
        if map.contains_key(&base) {
            return;
        }
        map.insert(base, Entry { view, seq });
        inner.fifo.push_back((log, base, seq));
        inner.bytes += c;
        while inner.bytes > self.budget_bytes {
            let Some((l, b, s)) = inner.fifo.pop_front() else { break };
            if let Some(m) = inner.logs.get_mut(&l) {
                if m.get(&b).is_some_and(|e| e.seq == s) {
                    let e = m.remove(&b).unwrap();
                    inner.bytes -= cost(&e.view);
                }
            }
        }
    }

    /// The cached batch containing `offset` and the contiguous cached batches
    /// after it, below `upper` (exclusive), up to `max_bytes` of Kafka wire
    /// size (at least one batch). Empty on a miss.
    pub fn read(&self, log: LogId, offset: i64, upper: i64, max_bytes: usize) -> Vec<BatchView> {
        let inner = self.inner.borrow();
        let mut out = Vec::new();
        if let Some(map) = inner.logs.get(&log) {
            let mut total = 0usize;
            let mut expect: Option<i64> = None;
            let first = map.range(..=offset).next_back().map(|(k, _)| *k);
            if let Some(first) = first {
                for (_, e) in map.range(first..) {
                    let h = &e.view.header;
                    if h.base_offset() >= upper {
                        break;
                    }
                    if expect.is_some_and(|x| x != h.base_offset()) {
                        break;
                    }
                    if expect.is_none() && h.last_offset() < offset {
                        break;
                    }
                    if !out.is_empty() && total + e.view.kafka_len() > max_bytes {
                        break;
                    }
                    total += e.view.kafka_len();
                    expect = Some(h.next_offset());
                    out.push(e.view.clone());
                }
            }
        }
        if out.is_empty() {
            self.misses.set(self.misses.get() + 1);
        } else {
            self.hits.set(self.hits.get() + 1);
        }
        out
    }

    /// Drops batches at or after `offset` (log truncated).
    pub fn truncate_from(&self, log: LogId, offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        if let Some(map) = inner.logs.get_mut(&log) {
            for (_, e) in map.split_off(&offset) {
                inner.bytes -= cost(&e.view);
            }
            // A batch straddling `offset` goes too.
            if let Some((&k, e)) = map.iter().next_back() {
                if e.view.header.last_offset() >= offset {
                    inner.bytes -= cost(&e.view);
                    map.remove(&k);
                }
            }
        }
    }

    /// Drops batches wholly below `offset` (log start advanced).
    pub fn remove_below(&self, log: LogId, offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        if let Some(map) = inner.logs.get_mut(&log) {
            let keep = map.split_off(&offset);
            let old = std::mem::replace(map, keep);
            for (k, e) in old {
                if e.view.header.last_offset() >= offset {
                    map.insert(k, e);
                } else {
                    inner.bytes -= cost(&e.view);
                }
            }
        }
    }

    pub fn remove_log(&self, log: LogId) {
        let mut inner = self.inner.borrow_mut();
        if let Some(map) = inner.logs.remove(&log) {
            let freed: usize = map.values().map(|e| cost(&e.view)).sum();
            inner.bytes -= freed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::kafka_batch;
    use crate::batch::validate_one;

    fn view(base: i64, n: usize, size: usize) -> BatchView {
        let v = vec![1u8; size];
        let vals: Vec<&[u8]> = (0..n).map(|_| &v[..]).collect();
        let mut b = validate_one(kafka_batch(&vals, 0)).unwrap();
        b.header.assign(base, 0);
        BatchView { header: b.header, payload: b.payload }
    }

    #[test]
    fn reads_contiguous_run_from_containing_batch() {
        let c = BatchCache::new(1 << 20);
        c.insert(1, view(0, 3, 10));
        c.insert(1, view(3, 2, 10));
        c.insert(1, view(5, 1, 10));
        let r = c.read(1, 4, 100, 1 << 20);
        assert_eq!(r.iter().map(|v| v.header.base_offset()).collect::<Vec<_>>(), vec![3, 5]);
        assert!(c.read(1, 6, 100, 1 << 20).is_empty());
        assert!(c.read(2, 0, 100, 1 << 20).is_empty());
        let upper = c.read(1, 0, 5, 1 << 20);
        assert_eq!(upper.len(), 2);
        let one = c.read(1, 0, 100, 1);
        assert_eq!(one.len(), 1, "at least one batch even over max_bytes");
    }

    #[test]
    fn eviction_keeps_bytes_within_budget() {
        let c = BatchCache::new(2000);
        for i in 0..100 {
            c.insert(1, view(i, 1, 100));
            assert!(c.stats().bytes <= 2000);
        }
        assert!(c.read(1, 0, 1000, 1 << 20).is_empty(), "oldest evicted");
        assert_eq!(c.read(1, 99, 1000, 1 << 20).len(), 1, "newest kept");
    }

    #[test]
    fn truncation_and_removal_release_bytes() {
        let c = BatchCache::new(1 << 20);
        for i in 0..10 {
            c.insert(1, view(i * 2, 2, 10));
        }
        c.truncate_from(1, 11);
        assert!(c.read(1, 10, 100, 1 << 20).is_empty());
        assert_eq!(c.read(1, 8, 100, 1 << 20).len(), 1);
        c.remove_below(1, 4);
        assert!(c.read(1, 3, 100, 1 << 20).is_empty());
        c.remove_log(1);
        assert_eq!(c.stats().bytes, 0);
    }
}
