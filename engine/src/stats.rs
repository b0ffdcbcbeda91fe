//! Per-core disk I/O statistics: fdatasync and segment write latency
//! (HdrHistogram) and write counts. Thread-local because each core is one
//! thread and owns its logs; the broker reads each core's copy on that core.

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::time::Duration;

/// Latency range recorded: 1 µs to 1 minute.
const LATENCY_MAX_US: u64 = 60_000_000;

#[derive(Clone, Debug)]
pub struct IoStats {
    pub fsync_us: Histogram<u64>,
    /// Each segment write, from submission to completion.
    pub write_us: Histogram<u64>,
    pub writes: u64,
    pub write_bytes: u64,
    pub fsyncs_failed: u64,
    pub writes_failed: u64,
    /// Write rounds submitted while an fdatasync of their log was in
    /// flight: the log lets writes pass a sync only when it is backlogged
    /// (`engine/src/log.rs`, "Writes pass a gate").
    pub rounds_beside_fsync: u64,
    /// Segments rolled into the file of a segment retention deleted,
    /// whose blocks are written already (`engine/src/log.rs`, "Recycled
    /// segment files").
    pub segments_recycled: u64,
}

impl Default for IoStats {
    fn default() -> Self {
        IoStats {
            fsync_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("histogram bounds"),
            write_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("histogram bounds"),
            writes: 0,
            write_bytes: 0,
            fsyncs_failed: 0,
            writes_failed: 0,
            rounds_beside_fsync: 0,
            segments_recycled: 0,
        }
    }
}

thread_local! {
    static IO: RefCell<IoStats> = RefCell::new(IoStats::default());
}

pub(crate) fn record_fsync(took: Duration, ok: bool) {
    IO.with(|s| {
        let mut s = s.borrow_mut();
        if ok {
            let _ = s.fsync_us.record(micros(took));
        } else {
            s.fsyncs_failed += 1;
        }
    });
}

/// `took` in whole µs, within the recorded range.
fn micros(took: Duration) -> u64 {
    (took.as_micros() as u64).clamp(1, LATENCY_MAX_US)
}

pub(crate) fn record_write_latency(took: Duration) {
    IO.with(|s| {
        let _ = s.borrow_mut().write_us.record(micros(took));
    });
}

pub(crate) fn record_writes(count: u64, bytes: u64, ok: bool) {
    IO.with(|s| {
        let mut s = s.borrow_mut();
        if ok {
            s.writes += count;
            s.write_bytes += bytes;
        } else {
            s.writes_failed += count;
        }
    });
}

pub(crate) fn record_round_beside_fsync() {
    IO.with(|s| s.borrow_mut().rounds_beside_fsync += 1);
}

pub(crate) fn record_segment_recycled() {
    IO.with(|s| s.borrow_mut().segments_recycled += 1);
}

/// This core's statistics so far.
pub fn snapshot() -> IoStats {
    IO.with(|s| s.borrow().clone())
}
