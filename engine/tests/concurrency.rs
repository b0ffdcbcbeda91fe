//! Everything at once: appends, reads, lookups, flushes, retention,
//! DeleteRecords and truncations interleaved on storage whose I/O yields, as
//! tasks on one core interleave. The outcome depends on the interleaving, so
//! instead of a model this checks what must hold for any of them: nothing
//! panics, every error is one the call documents, the log afterwards is a
//! contiguous run of batches each byte-identical to one that was appended,
//! and a process crash changes nothing of it.

mod common;
use common::*;
use futures::future::join_all;
use futures_lite::future::{block_on, yield_now};
use spindle_engine::{AdminError, Durability, Log, LogConfig, ReadError};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

async fn after(yields: u64) {
    for _ in 0..yields {
        yield_now().await;
    }
}

/// A read that raced the deletion (retention, DeleteRecords) or truncation
/// of the segment it was reading may fail: the in-memory disk forgets a
/// removed file at once, and a real one returns a short read past a
/// truncation. It must fail cleanly, never panic or return other bytes.
fn raced(e: ReadError) {
    match &e {
        ReadError::Io(io) if io.source.kind() == std::io::ErrorKind::NotFound => {}
        ReadError::Corrupt { what: "segment shorter than its recorded end", .. } => {}
        _ => panic!("read failed: {e}"),
    }
}

fn tasks<'a>(log: &'a Log<SlowStorage>, rng: &mut TestRng, batches: &'a HashMap<u64, bytes::Bytes>) -> Vec<Task<'a>> {
    let mut out: Vec<Task<'a>> = Vec::new();
    for tag in batches.keys() {
        let delay = rng.below(20);
        let d = if rng.below(3) == 0 { Durability::Durable } else { Durability::Written };
        out.push(Box::pin(async move {
            after(delay).await;
            log.append(batches[tag].clone(), opts_at(0, 1_000 + delay as i64 * 500, d)).await.expect("append");
        }));
    }
    for _ in 0..12 {
        let delay = rng.below(25);
        let kind = rng.below(7);
        let pick = rng.below(1_000) as i64;
        out.push(Box::pin(async move {
            after(delay).await;
            let end = log.log_end_offset();
            let start = log.log_start_offset();
            let off = start + pick % (end - start + 1);
            match kind {
                0 => match log.read(off, 1 + pick as usize * 50, i64::MAX).await {
                    Ok(_) | Err(ReadError::OffsetOutOfRange { .. }) => {}
                    Err(e) => raced(e),
                },
                1 => log.flush_if_due(i64::MAX).await.expect("flush"),
                2 => match log.delete_records(off).await {
                    Ok(_) | Err(AdminError::OffsetOutOfRange { .. }) => {}
                    Err(e) => panic!("delete_records: {e}"),
                },
                3 => drop(log.enforce_retention(i64::MAX).await.expect("retention")),
                4 => drop(log.truncate_to(off).await.expect("truncate")),
                5 => drop(log.offset_for_timestamp(pick * 10).await.map_err(raced)),
                _ => drop(log.max_timestamp_offset().await.map_err(raced)),
            }
        }));
    }
    out
}

/// Seeds to run; `STRESS_SEEDS` overrides for a longer run.
fn seeds() -> u64 {
    std::env::var("STRESS_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

#[test]
fn interleaved_operations_leave_a_consistent_log() {
    for seed in 0..seeds() {
        let mut rng = TestRng(seed);
        let cfg = LogConfig {
            segment_bytes: 4_096,
            segment_ms: 2_000,
            retention_ms: 5_000,
            retention_bytes: 8_000,
            ..LogConfig::default()
        };
        let s = SlowStorage::default();
        let log = open_at(&s, &dir(), cfg.clone());
        let batches: HashMap<u64, bytes::Bytes> =
            (0..30u64).map(|tag| (tag, tagged_batch(tag, 1 + tag as usize % 4, 200, 1_000 + tag as i64))).collect();
        let mut all = tasks(&log, &mut rng, &batches);
        // Shuffle the order the tasks are first polled in.
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i as u64 + 1) as usize);
        }
        block_on(join_all(all));

        let check = |log: &Log<SlowStorage>| -> Vec<Vec<u8>> {
            let o = log.offsets();
            assert_eq!(o.written, o.log_end, "seed {seed}: everything acknowledged is written");
            let got = block_on(read_all(log, o.log_start));
            let mut next = got.first().map(|v| v.header.base_offset());
            for v in &got {
                assert_eq!(Some(v.header.base_offset()), next, "seed {seed}: contiguous");
                next = Some(v.header.next_offset());
                // The value of record 0 starts with "<tag>:0:".
                let w = wire(v);
                let tag =
                    batches.iter().find(|(_, b)| expected_wire(b, v.header.base_offset(), 0) == w).map(|(t, _)| *t);
                assert!(tag.is_some(), "seed {seed}: batch at {} is not one that was appended", v.header.base_offset());
            }
            if let Some(n) = next {
                assert_eq!(n, o.log_end, "seed {seed}");
            }
            got.iter().map(wire).collect()
        };
        let before = check(&log);
        let start = log.log_start_offset();
        drop(log);
        s.mem.crash_process();
        let log = open_at(&s, &dir(), cfg);
        assert_eq!(log.log_start_offset(), start, "seed {seed}");
        assert_eq!(check(&log), before, "seed {seed}: a process crash changed the log");
    }
}
