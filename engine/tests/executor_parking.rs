//! Tests of the glommio 0.9.0 executor as Spindle patches it
//! (`vendor/glommio-0.9.0`, see its `SPINDLE-PATCH.md`).
//!
//! The first is the regression test for a bug that Spindle carries a fix
//! for.
//! glommio's run loop parks the thread when `run_task_queues` reports that
//! it ran nothing. That function also reported nothing run when it was
//! preempted before its first task: a completion in the latency ring (the
//! preempt timer, an I/O doorbell receive) arriving between the poll and
//! the first preemption check. The executor then slept in `io_uring_enter`
//! with runnable tasks in its queues until some unrelated I/O completed,
//! or for ever. In the engine benchmark with a 200 us task quota it showed
//! as pauses of 1.5 and 1.9 s in two of six runs, and as hangs without a
//! timer to end them (bench/RESULTS.md, session 11).
//!
//! A one-nanosecond preempt timer makes the first preemption check fire on
//! almost every loop, so the old code parks within a few iterations.

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn an_executor_preempted_before_its_first_task_does_not_sleep_on_runnable_work() {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::default()
            .preempt_timer(Duration::from_nanos(1))
            .make()
            .expect("an executor");
        for _ in 0..1_000 {
            ex.run(async {
                // Runnable work besides the main future: a spawned task.
                glommio::spawn_local(async {}).await;
            });
        }
        let _ = done_tx.send(());
    });
    // Each run takes microseconds; a parked executor never finishes.
    done_rx.recv_timeout(Duration::from_secs(20)).expect("the executor stopped making progress with runnable work");
    worker.join().expect("the executor thread");
}

// The patch also keeps a preemption timer that has not fired and was armed
// less than an eighth of the quota ago, instead of cancelling it and arming
// a new one on every loop. Preemption must still come once per quota: with
// a task that never waits hogging the core, a timer (noticed only when the
// executor polls, after a preemption) still fires, every time.
#[test]
fn a_task_that_never_waits_is_still_preempted_every_quota() {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Instant;
    const QUOTA: Duration = Duration::from_millis(5);
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::default().preempt_timer(QUOTA).make().expect("an executor");
        let longest = ex.run(async {
            let stop = Rc::new(Cell::new(false));
            let spinner = {
                let stop = stop.clone();
                glommio::spawn_local(async move {
                    while !stop.get() {
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_micros(50) {
                            std::hint::spin_loop();
                        }
                        glommio::yield_if_needed().await;
                    }
                })
            };
            let mut longest = Duration::ZERO;
            for _ in 0..50 {
                let t = Instant::now();
                glommio::timer::sleep(Duration::from_millis(1)).await;
                longest = longest.max(t.elapsed());
            }
            stop.set(true);
            spinner.await;
            longest
        });
        let _ = done_tx.send(longest);
    });
    let longest = done_rx.recv_timeout(Duration::from_secs(20)).expect("a task that never waits kept the executor");
    worker.join().expect("the executor thread");
    // The faults this guards against never preempt at all (a timer pushed
    // forward on every loop, or never re-armed): the sleep then never ends.
    // The bound leaves room for this shared host descheduling the thread
    // (40 ms, eight quotas, failed once under a parallel test run).
    assert!(longest < QUOTA * 100, "a 1 ms sleep took {longest:?} with a {QUOTA:?} quota");
}

// Patch 4: a blocking-pool job still running when its executor shuts down
// (its future dropped after a first poll, as a cancelled task leaves it)
// used to panic the worker ("failed to send response") once it finished.
#[test]
fn a_blocking_job_that_outlives_its_executor_does_not_panic_its_worker() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static POOL_PANICS: AtomicUsize = AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().ends_with("sys/blocking.rs")) {
            POOL_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    let (started_tx, started_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::default().make().expect("an executor");
        ex.run(async move {
            let job = glommio::executor().spawn_blocking(move || {
                let _ = started_tx.send(());
                std::thread::sleep(Duration::from_millis(200));
            });
            let mut job = Box::pin(job);
            assert!(futures_lite::future::poll_once(&mut job).await.is_none());
            drop(job);
            // The executor ends here, with the job still running.
        });
    })
    .join()
    .expect("the executor thread");
    started_rx.recv_timeout(Duration::from_secs(20)).expect("the blocking job ran");
    // Long past the job's end.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(POOL_PANICS.load(Ordering::SeqCst), 0, "the pool worker panicked");
}
