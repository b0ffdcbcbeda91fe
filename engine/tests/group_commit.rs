//! Group commit: appends that arrive while a write (or fdatasync) is in
//! flight share the next one. Runs on `SlowStorage`, whose writes and syncs
//! yield once, so concurrent appends really overlap as they do on io_uring.

mod common;
use common::*;
use futures::future::join_all;
use futures_lite::future::block_on;
use spindle_engine::{Durability, LogConfig};

const APPENDS: usize = 64;

fn concurrent_appends(durability: Durability, config: LogConfig) -> (SlowStorage, Vec<Sent>, u64, u64) {
    let s = SlowStorage::default();
    let log = open_at(&s, &dir(), config.clone());
    let before = s.mem.counters();
    let batches: Vec<_> = (0..APPENDS).map(|i| tagged_batch(i as u64, 2, 200, 1_000 + i as i64)).collect();
    let infos = block_on(join_all(batches.iter().map(|b| log.append(b.clone(), opts(durability)))));
    let after = s.mem.counters();
    let mut sent = Vec::new();
    for (i, (info, b)) in infos.into_iter().zip(&batches).enumerate() {
        let info = info.unwrap_or_else(|e| panic!("append {i}: {e}"));
        // Offsets follow the order in which the appends were issued.
        assert_eq!(info.base_offset, 2 * i as i64);
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes: b.clone() });
    }
    block_on(assert_log_is(&log, 0, &sent));
    let o = log.offsets();
    assert_eq!(o.written, 2 * APPENDS as i64);
    if durability == Durability::Durable {
        assert_eq!(o.durable, 2 * APPENDS as i64);
    }
    (s, sent, after.writes - before.writes, after.syncs - before.syncs)
}

#[test]
fn concurrent_appends_share_a_few_writes() {
    let (_, _, writes, syncs) = concurrent_appends(Durability::Written, LogConfig::default());
    assert!(writes <= 4, "{APPENDS} concurrent appends took {writes} writes");
    assert_eq!(syncs, 0, "Written appends never fdatasync");
}

#[test]
fn concurrent_durable_appends_share_a_few_fdatasyncs() {
    let (s, sent, writes, syncs) = concurrent_appends(Durability::Durable, LogConfig::default());
    assert!(writes <= 4, "{APPENDS} concurrent appends took {writes} writes");
    assert!(syncs <= 4, "{APPENDS} concurrent durable appends took {syncs} fdatasyncs");
    // Every one of them was acknowledged durable: all survive a power loss.
    s.mem.crash_power(42);
    let log = open_at(&s, &dir(), LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn concurrent_appends_across_segment_rolls_keep_order_and_content() {
    // 8 KiB segments: the 64 appends of ~500 bytes roll several times mid-group.
    let cfg = LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() };
    let (s, sent, writes, _) = concurrent_appends(Durability::Durable, cfg.clone());
    assert!(writes < APPENDS as u64 / 2, "{writes} writes");
    s.mem.crash_power(7);
    let log = open_at(&s, &dir(), cfg);
    assert!(log.segment_count() > 3);
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn sequential_appends_on_instant_storage_write_once_each() {
    // The baseline the tests above are measured against: without overlap
    // there is nothing to share.
    let s = spindle_engine::storage::memory::MemStorage::new();
    let log = open(&s, LogConfig::default());
    let before = s.counters();
    block_on(async {
        for i in 0..10u64 {
            log.append(tagged_batch(i, 1, 10, 1), opts(Durability::Durable)).await.unwrap();
        }
    });
    let after = s.counters();
    assert_eq!(after.writes - before.writes, 10);
    assert_eq!(after.syncs - before.syncs, 10);
}

#[test]
fn close_during_concurrent_appends_keeps_every_acknowledged_one() {
    use spindle_engine::AppendError;
    let cfg = LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() };
    let s = SlowStorage::default();
    let log = open_at(&s, &dir(), cfg.clone());
    let batches: Vec<_> = (0..30u64).map(|i| tagged_batch(i, 2, 300, i as i64)).collect();
    // Appends 0..15 are issued, then close, then appends 15..30.
    let mut futs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Option<_>> + '_>>> = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        if i == 15 {
            futs.push(Box::pin(async {
                log.close().await.unwrap();
                None
            }));
        }
        let d = if i % 3 == 0 { Durability::Durable } else { Durability::Written };
        let f = log.append(b.clone(), opts(d));
        futs.push(Box::pin(async move { Some(f.await) }));
    }
    let results: Vec<_> = block_on(join_all(futs)).into_iter().flatten().collect();
    let mut sent = Vec::new();
    let mut refused = 0;
    for (i, (r, b)) in results.into_iter().zip(batches).enumerate() {
        match r {
            Ok(info) => {
                // Staged appends are drained by close; an append still
                // waiting for a roll when close began is refused, and so
                // is every later one: acknowledged appends form a prefix.
                assert!(i < 15 && refused == 0, "append {i} succeeded after close or after a refused one");
                sent.push(Sent { base: info.base_offset, epoch: 0, bytes: b });
            }
            Err(AppendError::Closed) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent.len() >= 5, "appends staged before close complete ({} did)", sent.len());
    // Everything staged before close was drained and acknowledged, in order.
    for (k, x) in sent.iter().enumerate() {
        assert_eq!(x.base, sent.first().unwrap().base + k as i64 * 2);
    }
    assert_eq!(sent.len() + refused, 30);
    drop(log);
    assert!(s.mem.file_names().contains(&dir().join(spindle_engine::CLEAN_SHUTDOWN_FILE)));
    // A clean close made everything durable.
    s.mem.crash_power(1);
    let log = open_at(&s, &dir(), cfg);
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn full_buffers_are_written_while_a_round_is_in_flight_without_overlapping_the_tail() {
    // Rounds overlap: while one is in flight, full 1 MiB buffers go out in
    // further rounds. SlowStorage asserts that no two writes of one sector
    // are in flight together (the partial-tail rewrite rule), and the log
    // must read back intact, before and after a process crash.
    let s = SlowStorage::default();
    let log = open_at(&s, &dir(), LogConfig::default());
    // ~100 KiB batches (uneven), so buffers fill at odd positions.
    let batches: Vec<_> = (0..96).map(|i| tagged_batch(i as u64, 3, 33_000 + i * 7, 1_000)).collect();
    let infos = block_on(join_all(batches.iter().map(|b| log.append(b.clone(), opts(Durability::Written)))));
    let mut sent = Vec::new();
    for (info, b) in infos.into_iter().zip(&batches) {
        let info = info.expect("append");
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes: b.clone() });
    }
    block_on(assert_log_is(&log, 0, &sent));
    drop(log);
    s.mem.crash_process();
    let log = open_at(&s, &dir(), LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
}

/// Appends ~10 MiB of ~100 KB batches, every third one durable, in waves of
/// `wave` concurrent appends; checks that syncs came along the way, that the
/// segment grew past its first reservation several times, and that after a
/// power loss the log holds every durable append.
fn durable_appends_in_waves(s: &SlowStorage, wave: usize) {
    let log = open_at(s, &dir(), LogConfig::default());
    let batches: Vec<_> = (0..96).map(|i| tagged_batch(i as u64, 3, 33_000 + i * 7, 1_000)).collect();
    let durability = |i: usize| if i.is_multiple_of(3) { Durability::Durable } else { Durability::Written };
    let mut sent = Vec::new();
    for (w, chunk) in batches.chunks(wave).enumerate() {
        let infos = block_on(join_all(
            chunk.iter().enumerate().map(|(i, b)| log.append(b.clone(), opts(durability(w * wave + i)))),
        ));
        for (info, b) in infos.into_iter().zip(chunk) {
            let info = info.expect("append");
            sent.push(Sent { base: info.base_offset, epoch: 0, bytes: b.clone() });
        }
    }
    let end = log.log_end_offset();
    block_on(log.wait_durable(end)).expect("durable");
    assert!(s.mem.counters().syncs >= 2, "syncs overlapped the writes: {:?}", s.mem.counters());
    let size = s.mem.contents(&dir().join("00000000000000000000.log")).map_or(0, |c| c.len());
    assert!(size > 8 << 20, "the segment grew past its first reservation ({size} bytes)");
    s.mem.crash_power(3);
    let log = open_at(s, &dir(), LogConfig::default());
    block_on(assert_log_is(&log, 0, &sent));
}

#[test]
fn writes_wait_for_fdatasync_and_segment_growth_in_flight() {
    // On ext4 an fallocate waits for the direct writes in flight and takes
    // the inode lock; writes submitted meanwhile are refused under
    // RWF_NOWAIT and run one at a time. An fdatasync with writes in flight
    // waits behind them. So, unless it is backlogged, the log submits no
    // write while a growth or a sync of the file is in flight, and a sync
    // starts once the writes in flight are done. SlowStorage asserts both
    // as operations happen. Waves of 24 appends (~2.4 MiB) never fill the
    // staging buffers, so the log is never backlogged.
    durable_appends_in_waves(&SlowStorage::default(), 24);
}

#[test]
fn a_backlogged_log_writes_beside_its_syncs() {
    // 96 appends at once (~10 MiB) wait for staging room: the disk is the
    // bottleneck, and the log lets writes go beside its syncs instead of
    // idling the disk for each. Growths still never overlap a sync
    // (asserted by SlowStorage), and every durable append survives.
    let overlaps = std::rc::Rc::new(std::cell::Cell::new(0));
    let s = SlowStorage { sync_overlaps: Some(overlaps.clone()), ..Default::default() };
    durable_appends_in_waves(&s, 96);
    assert!(overlaps.get() > 0, "no write went beside a sync while the log was backlogged");
}
