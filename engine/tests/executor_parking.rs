//! Regression test for a glommio 0.9.0 executor bug that Spindle carries a
//! fix for (`vendor/glommio-0.9.0`, see its `SPINDLE-PATCH.md`).
//!
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
