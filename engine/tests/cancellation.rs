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

// A roll into a recycled file, cancelled after the file took the new
// segment's name but before the directory was synced: the next roll at the
// same base must take that file as a new, empty segment, and nothing
// acknowledged may be lost or joined by the file's old batches.
#[test]
fn roll_into_a_recycled_file_cancelled_after_its_rename_loses_nothing() {
    let s = SlowStorage { mem: MemStorage::new(), ..Default::default() };
    let config = LogConfig { segment_bytes: 32 * 1024, ..LogConfig::default() };
    let open = |s: &SlowStorage| {
        let cache = Rc::new(BatchCache::new(8 << 20));
        block_on(Log::open(s.clone(), &dir(), config.clone(), cache, 1_000)).unwrap()
    };
    let log = open(&s);
    let mut sent = Vec::new();
    let append = |log: &Log<SlowStorage>, tag: u64, sent: &mut Vec<Sent>| {
        let bytes = tagged_batch(tag, 2, 300, 1_000 * tag as i64);
        let info = block_on(log.append(bytes.clone(), opts(Durability::Durable))).unwrap();
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
    };
    for tag in 0..200 {
        append(&log, tag, &mut sent);
    }
    let bases = segment_bases(&s.mem);
    block_on(log.delete_records(bases[2])).unwrap();
    let first = sent.iter().position(|x| x.base == bases[2]).unwrap();
    let mut sent = sent.split_off(first);

    // Append until an append stops inside a roll (a file named after the
    // log end appears), then cancel it there: after the rename of a kept
    // file, in the directory sync.
    let kept =
        |s: &SlowStorage| s.mem.file_names().iter().filter(|p| p.extension().is_some_and(|e| e == "recycled")).count();
    let mut tag = 1_000;
    loop {
        let end = log.log_end_offset();
        let kept_before = kept(&s);
        let bytes = tagged_batch(tag, 2, 300, 1);
        let mut fut = Box::pin(log.append(bytes.clone(), opts(Durability::Durable)));
        let first = (&mut fut).now_or_never();
        if first.is_none() && s.mem.file_names().contains(&seg_path(end, "log")) {
            drop(fut);
            assert_eq!(kept(&s), kept_before - 1, "the roll took a kept file");
            break;
        }
        let info = match first {
            Some(r) => r.unwrap(),
            None => block_on(fut).unwrap(),
        };
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
        tag += 1;
        assert!(tag < 1_200, "no roll");
    }
    for t in 2_000..2_100 {
        append(&log, t, &mut sent);
    }
    block_on(assert_log_is(&log, bases[2], &sent));
    drop(log);
    s.mem.crash_process();
    let log = open(&s);
    block_on(assert_log_is(&log, bases[2], &sent));
}
