//! Dropping an operation's future half-way (a client that disconnects, a
//! timeout) must never leave the log stuck or acknowledge data after a hole.

mod common;
use common::*;
use futures::FutureExt;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendError, BatchCache, Durability, Log, LogConfig};
use std::rc::Rc;

/// Polls `f` at most `max` times (SlowStorage operations wake themselves at
/// once), so a log that would wait forever fails the test instead of hanging it.
fn bounded<F: std::future::Future>(f: F, max: usize) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..max {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("still pending after {max} polls: the log is stuck");
}

fn slow_log() -> (SlowStorage, Log<SlowStorage>) {
    let s = SlowStorage { mem: MemStorage::new(), ..Default::default() };
    let cache = Rc::new(BatchCache::new(8 << 20));
    let log = block_on(Log::open(s.clone(), &dir(), LogConfig::default(), cache, 1_000)).unwrap();
    (s, log)
}

// Regression: a writer cancelled inside its write round left `writing` set,
// so every later append waited forever for a write that would never end.
#[test]
fn append_cancelled_during_its_write_fences_the_log_instead_of_hanging() {
    let (_s, log) = slow_log();
    block_on(log.append(tagged_batch(0, 1, 10, 1), opts(Durability::Written))).unwrap();
    {
        let mut fut = Box::pin(log.append(tagged_batch(1, 1, 10, 1), opts(Durability::Written)));
        assert!((&mut fut).now_or_never().is_none(), "the write is in flight");
    } // dropped mid-write
    let r = bounded(log.append(tagged_batch(2, 1, 10, 1), opts(Durability::Written)), 1000);
    assert!(matches!(r, Err(AppendError::Fenced(_))), "{r:?}");
    assert_eq!(log.high_watermark(), 1, "nothing past the lost write is readable");
}

// Regression: a sync cancelled mid-way took the dirty segments with it, so
// the next sync skipped them and reported data durable that was not.
#[test]
fn sync_cancelled_half_way_is_redone_by_the_next_one() {
    let (s, log) = slow_log();
    block_on(log.append(tagged_batch(0, 1, 10, 1), opts(Durability::Written))).unwrap();
    let syncs_before = s.mem.counters().syncs;
    {
        let mut fut = Box::pin(log.wait_durable(1));
        assert!((&mut fut).now_or_never().is_none(), "the fdatasync is in flight");
    }
    bounded(log.wait_durable(1), 1000).unwrap();
    assert!(s.mem.counters().syncs > syncs_before, "the segment was synced after the cancelled round");
    s.mem.crash_power(7);
    let log2 = open(&s.mem, LogConfig::default());
    assert_eq!(log2.log_end_offset(), 1, "the durable record survived a power loss");
}

/// Polls `f` again only after it woke itself, so a wakeup that never comes
/// fails the test instead of hanging it (SlowStorage operations wake
/// themselves at once).
fn woken_only<F: std::future::Future>(f: F, max: usize) -> F::Output {
    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    let waker = std::task::Waker::from(flag.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    for _ in 0..max {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(flag.0.swap(false, std::sync::atomic::Ordering::SeqCst), "pending and never woken: a lost wakeup");
    }
    panic!("still pending after {max} polls: the log is stuck");
}

// Regression: writes wait at the I/O gate while an fdatasync is in flight;
// a sync cancelled there released the gate without waking them, and they
// waited forever.
#[test]
fn sync_cancelled_in_flight_wakes_the_writes_waiting_for_it() {
    let (_s, log) = slow_log();
    block_on(log.append(tagged_batch(0, 1, 10, 1), opts(Durability::Written))).unwrap();
    let mut sync = Box::pin(log.wait_durable(1));
    assert!((&mut sync).now_or_never().is_none(), "the fdatasync is in flight");
    let mut append = Box::pin(log.append(tagged_batch(1, 1, 10, 1), opts(Durability::Written)));
    assert!((&mut append).now_or_never().is_none(), "the write waits at the gate");
    drop(sync);
    let info = woken_only(append, 1000).expect("append");
    assert_eq!(info.base_offset, 1);
    woken_only(log.wait_durable(2), 1000).expect("durable");
}
