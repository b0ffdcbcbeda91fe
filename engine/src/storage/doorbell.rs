//! Prompt submission of disk I/O under glommio.
//!
//! glommio 0.9 queues a disk request (read, write, fdatasync, fallocate) in
//! its main ring when the request's future is first polled, but hands the
//! queue to the kernel only when the executor polls its rings: when every
//! task queue has run dry, or when the running queue is preempted. Preemption
//! comes from the latency ring's completion queue holding an entry, which is
//! how the task-quota timer (`preempt_timer`, glommio's default 100 ms)
//! fires. Network receives do not help: glommio's TCP reads try the syscall
//! and then arm a poll in the main ring, not the latency ring. So a core
//! that keeps finding work (copying appends into the next write buffer) holds
//! a finished buffer's write in user space until it runs out of work or its
//! quota ends, and the disk idles meanwhile. The engine benchmark showed it:
//! at the default quota the device had 1.25 writes in flight on average and
//! was busy half the time; a 200 us quota nearly closed the gap, but a short
//! quota preempts every task all the time, and the broker measured worse with
//! it (bench/RESULTS.md, session 9).
//!
//! glommio has no public "submit now". The doorbell gets the same effect
//! through its public API: datagram socket pairs ("bells"), each with a task
//! that keeps a receive pending on one end. glommio puts socket receives in
//! the latency ring. [`ring`] sends one byte on the other end of a bell,
//! without blocking; the kernel completes the pending receive before the
//! send returns (task work runs on the way back to user space), the latency
//! ring's completion queue is no longer empty, and glommio preempts the
//! running task queue after its current task, polls every ring and submits
//! what was queued. A ring costs one send, one receive and one poll, and
//! nothing when a poll is already due; the engine benchmark at about
//! 1 GiB/s rang about 260 times a second.
//!
//! A bell's receive is itself only queued when its task re-arms it, and
//! reaches the kernel at the executor's next poll; a byte sent before that
//! completes nothing. So a bell counts as armed only once a poll has
//! followed its re-arm. The executor's statistics show that: glommio adds to
//! `total_runtime` once per loop, between running the task queues and
//! polling, so a non-zero value taken (and reset) by
//! [`ExecutorStats`](glommio::ExecutorStats) means at least one poll happened
//! since the last take. The doorbell is that statistic's only reader here.
//! One ring per poll is all that is needed (after a ring a poll is due). A
//! rung bell's task wakes at that poll and re-arms when it next runs, which
//! can be a run or two later when other tasks ring first; with several bells
//! one is almost always armed (two left about 30% of rings without one in
//! the engine benchmark, four 0-1.5%, but up to a third in one run of four
//! once nudges quadrupled the rings; none with eight). A ring that finds
//! none is counted as missed, and the request goes at the next poll, as it
//! would without a doorbell. Rings are also spaced at least
//! [`RING_INTERVAL_MIN`] apart, because each costs a poll the executor
//! would not have made yet; a request queued in between goes at the next
//! poll.
//!
//! Completions have the same problem: glommio reaps them only when it
//! polls, so a busy core noticed a finished write, or the fdatasync the
//! next write waited for, only at the end of its quota. [`nudge`], which the
//! log calls for every append it stages, rings when disk I/O has been in
//! flight for [`NUDGE_AFTER`] without a poll. In the engine benchmark that
//! was 7-24% more throughput in each of eight pairs, at the same CPU per
//! MiB; the broker measured no difference (bench/RESULTS.md, session 11).
//! A shorter task quota has the same effect on the engine, but it preempts
//! whatever runs, and at 200 MiB/s it raised the broker's median latency in
//! five pairs of five.
//!
//! Each executor gets its own doorbell, created by [`install`] (which
//! [`DmaStorage::new`](super::dma::DmaStorage::new) calls) or on first use.
//! If the sockets cannot be made, ringing does nothing and I/O is submitted
//! as glommio would anyway. `SPINDLE_IO_DOORBELL=0` in the environment turns
//! it off, and `SPINDLE_IO_NUDGE=0` only the nudges, for A/B measurements
//! (bench/RESULTS.md).

use futures::FutureExt;
use glommio::net::UnixDatagram;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Bells per executor: rung bells re-arm while others are rung (module
/// docs). Each holds two sockets and one pending receive.
const BELLS: usize = 8;

/// Rings come at most this often. Every ring costs a poll that the executor
/// would not have made yet, and the broker, which issues a write for about
/// every 70 KB it receives at its peak, lost 3-39% of it in six runs of six
/// when each of them rang (bench/RESULTS.md, session 10); with this spacing
/// the difference was within the runs' spread. A request queued within this
/// interval after a ring is not rung for: it goes at the next poll, which on
/// a busy core can still be a task quota away. In the engine benchmark
/// (about 1 GiB/s of 1 MiB rounds) the spacing cut rings from about 1,460
/// to 545 a run and kept its gain.
pub const RING_INTERVAL_MIN: Duration = Duration::from_micros(500);

/// A busy executor that has had disk I/O in flight this long without a
/// poll is made to poll ([`nudge`]), so a completed write or fdatasync is
/// noticed and the next one submitted. About the latency of one 1 MiB
/// write on this host's disk at queue depth one (bench/RESULTS.md,
/// session 11); the rings themselves are still spaced by
/// [`RING_INTERVAL_MIN`].
pub const NUDGE_AFTER: Duration = Duration::from_micros(500);

struct Bell {
    tx: UnixDatagram,
    /// The executor epoch in which this bell's receive was queued; `None`
    /// once rung, until its task queues the next receive.
    armed_at: Cell<Option<u64>>,
}

struct Doorbell {
    /// The executor this doorbell belongs to (a thread may run several in
    /// turn, as tests do).
    executor_id: usize,
    bells: Vec<Bell>,
    /// Polls seen so far, at least one per loop of the executor that the
    /// doorbell looked at (module docs).
    epoch: Cell<u64>,
    last_ring: Cell<Option<Instant>>,
    rings: Cell<u64>,
    missed: Cell<u64>,
    /// Disk requests submitted through [`submitted`] and not completed.
    in_flight: Cell<u32>,
    /// When [`Doorbell::epoch`] last saw that the executor had polled.
    last_poll_seen: Cell<Instant>,
    /// Whether [`nudge`] rings; `SPINDLE_IO_NUDGE=0` turns it off.
    nudging: bool,
    nudges: Cell<u64>,
}

thread_local! {
    static DOORBELL: RefCell<Option<Rc<Doorbell>>> = const { RefCell::new(None) };
}

impl Doorbell {
    fn install() -> Option<Rc<Doorbell>> {
        if std::env::var_os("SPINDLE_IO_DOORBELL").is_some_and(|v| v == "0") {
            return None;
        }
        let mut bells = Vec::with_capacity(BELLS);
        let mut receivers = Vec::with_capacity(BELLS);
        for _ in 0..BELLS {
            match UnixDatagram::pair() {
                Ok((tx, rx)) => {
                    bells.push(Bell { tx, armed_at: Cell::new(None) });
                    receivers.push(rx);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no I/O doorbell: disk requests wait for the executor's next poll");
                    return None;
                }
            }
        }
        let bell = Rc::new(Doorbell {
            executor_id: glommio::executor().id(),
            bells,
            epoch: Cell::new(0),
            last_ring: Cell::new(None),
            rings: Cell::new(0),
            missed: Cell::new(0),
            in_flight: Cell::new(0),
            last_poll_seen: Cell::new(Instant::now()),
            nudging: std::env::var_os("SPINDLE_IO_NUDGE").is_none_or(|v| v != "0"),
            nudges: Cell::new(0),
        });
        for (i, rx) in receivers.into_iter().enumerate() {
            let weak = Rc::downgrade(&bell);
            glommio::spawn_local(async move {
                let mut byte = [0u8; 16];
                loop {
                    let mut recv = pin!(rx.recv(&mut byte));
                    // A first poll either takes a byte already waiting
                    // (glommio tries the syscall first) or queues the receive.
                    let got = match futures::poll!(recv.as_mut()) {
                        Poll::Ready(got) => got,
                        Poll::Pending => {
                            let Some(d) = weak.upgrade() else { return };
                            d.bells[i].armed_at.set(Some(d.epoch()));
                            drop(d);
                            recv.await
                        }
                    };
                    if let Err(e) = got {
                        tracing::warn!(error = %e, "I/O doorbell receive failed; bell off");
                        return;
                    }
                }
            })
            .detach();
        }
        Some(bell)
    }

    /// The current epoch: advanced if the executor polled since the last
    /// look.
    fn epoch(&self) -> u64 {
        if !glommio::executor().executor_stats().total_runtime().is_zero() {
            self.epoch.set(self.epoch.get() + 1);
            self.last_poll_seen.set(Instant::now());
        }
        self.epoch.get()
    }

    /// Rings an armed bell unless the last ring is too recent; whether it
    /// rang.
    fn ring(&self) -> bool {
        let now = Instant::now();
        if self.last_ring.get().is_some_and(|t| now.duration_since(t) < RING_INTERVAL_MIN) {
            return false;
        }
        let epoch = self.epoch();
        match self.bells.iter().find(|b| b.armed_at.get().is_some_and(|at| at < epoch)) {
            Some(bell) => {
                self.last_ring.set(Some(now));
                bell.armed_at.set(None);
                self.rings.set(self.rings.get() + 1);
                // glommio sends with the syscall first, and a datagram socket
                // with room completes at once. If it could not (a full buffer,
                // which the receiver taking every byte rules out), the ring is
                // lost and the request goes at the next poll.
                let _ = bell.tx.send(&[1]).now_or_never();
                true
            }
            None => {
                self.missed.set(self.missed.get() + 1);
                false
            }
        }
    }
}

fn current() -> Option<Rc<Doorbell>> {
    let id = glommio::executor().id();
    DOORBELL.with(|b| {
        let mut b = b.borrow_mut();
        if b.as_ref().is_none_or(|bell| bell.executor_id != id) {
            *b = Doorbell::install();
        }
        b.clone()
    })
}

/// Sets up this executor's doorbell, if it has none yet. Its bells are armed
/// after the executor has run its tasks and polled once, so call this early,
/// before the first request that should be submitted promptly.
pub fn install() {
    let _ = current();
}

/// Makes the executor submit the I/O queued so far at the end of the running
/// task, instead of at its next poll.
pub fn ring() {
    if glommio::executor().need_preempt() {
        // The executor polls its rings after the running task anyway.
        return;
    }
    if let Some(d) = current() {
        d.ring();
    }
}

/// Makes a busy executor poll if it has had disk I/O in flight for
/// [`NUDGE_AFTER`] without polling, so that the completion is noticed now
/// rather than when the executor runs out of work or its quota ends.
///
/// glommio reaps completions only when it polls, and a core that keeps
/// finding work polls only at the end of its task quota. The engine calls
/// this for every append it stages ([`Storage::nudge`](super::Storage::nudge)):
/// a busy core is then one that is copying appends into the next buffer
/// while the previous write, or the fdatasync the next write waits for, has
/// long finished. The ring is subject to the same spacing as every other.
pub fn nudge() {
    if glommio::executor().need_preempt() {
        return;
    }
    let Some(d) = current() else { return };
    if !d.nudging || d.in_flight.get() == 0 {
        return;
    }
    d.epoch();
    if d.last_poll_seen.get().elapsed() < NUDGE_AFTER {
        return;
    }
    if d.ring() {
        d.nudges.set(d.nudges.get() + 1);
    }
}

/// This executor's rings so far, and rings that found no bell armed.
pub fn counts() -> (u64, u64) {
    DOORBELL.with(|b| b.borrow().as_ref().map_or((0, 0), |d| (d.rings.get(), d.missed.get())))
}

/// Of this executor's rings so far, those that [`nudge`] made.
pub fn nudges() -> u64 {
    DOORBELL.with(|b| b.borrow().as_ref().map_or(0, |d| d.nudges.get()))
}

/// Awaits `io`, a glommio disk request, ringing the doorbell once the first
/// poll has queued it, and counting it as in flight until it completes or
/// is dropped.
pub async fn submitted<F: Future>(io: F) -> F::Output {
    let mut io = pin!(io);
    if let Poll::Ready(v) = futures::poll!(io.as_mut()) {
        return v;
    }
    ring();
    let _in_flight = current().map(InFlight::new);
    io.await
}

/// One disk request counted in [`Doorbell::in_flight`].
struct InFlight(Rc<Doorbell>);

impl InFlight {
    fn new(d: Rc<Doorbell>) -> Self {
        d.in_flight.set(d.in_flight.get() + 1);
        InFlight(d)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}
