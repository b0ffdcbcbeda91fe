//! Appends stage in the order `Log::append` is called, whatever each waits
//! for on the way (a new leader epoch persisted, a segment roll, staging
//! room) and whatever order their futures are first polled in. The broker
//! calls it in a connection's request order, and Kafka clients pipelining
//! produce requests to a partition rely on getting offsets in that order.

mod common;
use common::*;
use futures::future::join_all;
use futures_lite::future::{block_on, yield_now};
use spindle_engine::{Durability, LogConfig};
use std::future::Future;
use std::pin::Pin;

/// An append's future, answering its tag and base offset.
type Acked<'a> = Pin<Box<dyn Future<Output = (u64, i64)> + 'a>>;

fn seeds() -> u64 {
    std::env::var("STRESS_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

/// `shuffle`: the appends' futures are first polled in a random order,
/// each after a random number of yields; otherwise in call order, all at
/// once, as a connection's pipelined requests arrive.
fn appends_keep_call_order(shuffle: bool) {
    for seed in 0..seeds() {
        let mut rng = TestRng(seed);
        // Segments of a few batches, so appends roll them often.
        let cfg = LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() };
        let s = SlowStorage::default();
        let log = open_at(&s, &dir(), cfg);
        let mut epoch = 0;
        let mut sent = Vec::new();
        for tag in 0..48u64 {
            // Up to 900 KiB: a few such fill the staging room (4 MiB), so
            // later appends wait for it.
            let len = 1 + rng.below(900 * 1024) as usize;
            let records = 1 + rng.below(3) as usize;
            if rng.below(8) == 0 {
                // A new epoch: its first append persists the history first.
                epoch += 1;
            }
            let d = if rng.below(4) == 0 { Durability::Durable } else { Durability::Written };
            sent.push((tag, epoch, d, tagged_batch(tag, records, len / records, 1_000 + tag as i64)));
        }
        // Called in tag order.
        let mut all: Vec<Acked<'_>> = Vec::new();
        for (tag, epoch, d, batch) in &sent {
            let append = log.append(batch.clone(), opts_at(*epoch, 1_000, *d));
            let delay = if shuffle { rng.below(30) } else { 0 };
            let tag = *tag;
            all.push(Box::pin(async move {
                for _ in 0..delay {
                    yield_now().await;
                }
                (tag, append.await.expect("append").base_offset)
            }));
        }
        if shuffle {
            for i in (1..all.len()).rev() {
                all.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let mut acked = block_on(join_all(all));
        acked.sort_by_key(|&(tag, _)| tag);
        let bases: Vec<i64> = acked.iter().map(|&(_, base)| base).collect();
        let mut sorted = bases.clone();
        sorted.sort();
        assert_eq!(bases, sorted, "seed {seed}: offsets in call order");

        let got = block_on(read_all(&log, 0));
        let tags: Vec<u64> = got
            .iter()
            .map(|v| {
                let value = &v.payload[..];
                let tag = sent.iter().position(|(_, _, _, b)| b[61..] == *value).expect("a batch that was appended");
                tag as u64
            })
            .collect();
        assert_eq!(tags, (0..sent.len() as u64).collect::<Vec<_>>(), "seed {seed}: stored in call order");
    }
}

#[test]
fn pipelined_appends_get_offsets_in_call_order() {
    appends_keep_call_order(false);
}

#[test]
fn appends_polled_out_of_order_still_stage_in_call_order() {
    appends_keep_call_order(true);
}
