//! I/O failures: a failed write or fdatasync fails the append that needed
//! it, then the log refuses writes until it is reopened (the state of
//! unsynced pages cannot be trusted after a failed fsync), and reopening
//! recovers everything that was acknowledged.

mod common;
use common::*;
use futures::future::join_all;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::{FaultKind, FaultOn, MemStorage};
use spindle_engine::{AdminError, AppendError, Durability, Log, LogConfig, RecoveryError};

fn append(log: &Log<MemStorage>, tag: u64, d: Durability) -> Result<Sent, AppendError> {
    let bytes = tagged_batch(tag, 3, 120, 1_000 + tag as i64);
    let info = block_on(log.append(bytes.clone(), opts(d)))?;
    Ok(Sent { base: info.base_offset, epoch: 0, bytes })
}

fn acked(log: &Log<MemStorage>, n: u64, d: Durability) -> Vec<Sent> {
    (0..n).map(|i| append(log, i, d).unwrap()).collect()
}

/// Reopens after the faults are gone and a process crash, and checks the
/// log is exactly `sent` and takes appends again.
fn reopen_holds(s: &MemStorage, cfg: LogConfig, sent: &[Sent]) -> Log<MemStorage> {
    s.clear_faults();
    s.crash_process();
    let log = open(s, cfg);
    assert!(!log.is_failed());
    block_on(assert_log_is(&log, 0, sent));
    let x = append(&log, 4242, Durability::Durable).expect("a reopened log takes appends");
    assert_eq!(x.base, sent.last().map_or(0, |l| l.next()));
    log
}

#[test]
fn failed_write_fails_the_append_then_fences_the_log() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    let sent = acked(&log, 20, Durability::Written);
    let hw = log.high_watermark();
    s.fail_after(0, FaultOn::Writes, FaultKind::Eio);
    match append(&log, 100, Durability::Written) {
        Err(AppendError::Storage(e)) => {
            assert_eq!(e.op, "write segment");
            assert!(e.path.ends_with(".log"), "{}", e.path);
            assert_eq!(e.source.raw_os_error(), Some(5));
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(log.is_failed());
    assert_eq!(log.high_watermark(), hw, "the failed batch never becomes visible");
    // Even with the disk healthy again, the log refuses writes.
    s.clear_faults();
    for d in [Durability::Written, Durability::Durable] {
        assert!(matches!(append(&log, 101, d), Err(AppendError::Fenced(_))));
    }
    assert!(matches!(block_on(log.truncate_to(3)), Err(AdminError::Fenced(_))));
    // What was acknowledged is still readable.
    block_on(assert_log_is(&log, 0, &sent));
    assert!(block_on(log.read(hw, 1 << 20, i64::MAX)).unwrap().is_empty());
    drop(log);
    reopen_holds(&s, small_segments(), &sent);
}

#[test]
fn disk_full_is_reported_as_no_space() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let sent = acked(&log, 3, Durability::Written);
    s.fail_after(0, FaultOn::Writes, FaultKind::NoSpace);
    let err = append(&log, 10, Durability::Written).unwrap_err();
    assert!(matches!(err, AppendError::Storage(_)), "{err:?}");
    assert!(err.is_no_space());
    let err = append(&log, 11, Durability::Written).unwrap_err();
    assert!(matches!(err, AppendError::Fenced(_)), "{err:?}");
    assert!(err.is_no_space(), "the fence remembers why");
    drop(log);
    reopen_holds(&s, LogConfig::default(), &sent);
}

#[test]
fn eio_is_not_reported_as_no_space() {
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    s.fail_after(0, FaultOn::Writes, FaultKind::Eio);
    let err = append(&log, 1, Durability::Written).unwrap_err();
    assert!(!err.is_no_space());
}

#[test]
fn failed_fdatasync_fences_the_log_until_reopened() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    let sent = acked(&log, 10, Durability::Durable);
    s.fail_after(0, FaultOn::Syncs, FaultKind::Eio);
    match append(&log, 50, Durability::Durable) {
        Err(AppendError::Storage(e)) => assert_eq!(e.op, "fdatasync"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(log.is_failed());
    // Writes would succeed, but the log must not continue on pages it
    // cannot trust.
    assert!(matches!(append(&log, 51, Durability::Written), Err(AppendError::Fenced(_))));
    assert_eq!(log.offsets().durable, sent.last().unwrap().next());
    drop(log);
    // Power loss: every append acknowledged durable survives. The batch
    // whose sync failed may or may not.
    s.clear_faults();
    s.crash_power(11);
    let log = open(&s, small_segments());
    let got = block_on(read_all(&log, 0));
    assert!(got.len() == sent.len() || got.len() == sent.len() + 1, "{} batches", got.len());
    for (g, x) in got.iter().zip(&sent) {
        assert_eq!(wire(g), x.wire());
    }
    let x = append(&log, 52, Durability::Durable).unwrap();
    assert_eq!(x.base, log.log_end_offset() - 3);
}

#[test]
fn write_failure_during_group_commit_keeps_every_acknowledged_append() {
    for ok_writes in 0..6 {
        let s = SlowStorage::default();
        let log = open_at(&s, &dir(), LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() });
        s.mem.fail_after(ok_writes, FaultOn::Writes, FaultKind::Eio);
        let batches: Vec<_> = (0..40u64).map(|i| tagged_batch(i, 2, 150, i as i64)).collect();
        let results = block_on(join_all(batches.iter().map(|b| log.append(b.clone(), opts(Durability::Written)))));
        let mut sent = Vec::new();
        let mut failed = false;
        for (r, b) in results.into_iter().zip(batches) {
            match r {
                Ok(info) => {
                    assert!(!failed, "an append issued after a failed one was acknowledged");
                    sent.push(Sent { base: info.base_offset, epoch: 0, bytes: b });
                }
                Err(AppendError::Storage(_) | AppendError::Fenced(_)) => failed = true,
                Err(e) => panic!("{e:?}"),
            }
        }
        let writes = s.mem.counters().writes;
        assert!(failed || ok_writes > 0, "a first write that fails must fail an append");
        if !failed {
            // Group commit needed no more writes than were allowed.
            assert!(writes <= ok_writes, "ok_writes {ok_writes}, {writes} writes and no failure");
            continue;
        }
        assert!(log.is_failed());
        drop(log);
        s.mem.clear_faults();
        s.mem.crash_process();
        let log = open_at(&s, &dir(), LogConfig { segment_bytes: 8 * 1024, ..LogConfig::default() });
        let got = block_on(read_all(&log, 0));
        assert!(got.len() >= sent.len(), "ok_writes {ok_writes}: lost acknowledged appends");
        for (g, x) in got.iter().zip(&sent) {
            assert_eq!(wire(g), x.wire());
        }
    }
}

#[test]
fn failed_epoch_checkpoint_write_fences_the_log() {
    // Regression: a failed write of the leader-epoch checkpoint returned
    // AppendError::Storage (whose contract is "the log now refuses writes")
    // but left the log writable with the new epoch only in memory. The next
    // append in that epoch succeeded without persisting it, so after a
    // restart the epoch history lacked an epoch the log holds records of.
    let s = MemStorage::new();
    let log = open(&s, LogConfig::default());
    let sent = acked(&log, 2, Durability::Durable);
    // Checkpoint writes count as syncs: they are atomic, durable replaces.
    s.fail_after(0, FaultOn::Syncs, FaultKind::Eio);
    let b = tagged_batch(9, 1, 1, 1);
    let r = block_on(log.append(b.clone(), opts_at(1, 1_000, Durability::Written)));
    assert!(matches!(r, Err(AppendError::Storage(_))), "{r:?}");
    assert!(log.is_failed());
    s.clear_faults();
    let r = block_on(log.append(b, opts_at(1, 1_000, Durability::Written)));
    assert!(matches!(r, Err(AppendError::Fenced(_))), "{r:?}");
    drop(log);
    let log = reopen_holds(&s, LogConfig::default(), &sent);
    assert_eq!(log.epochs().len(), 1);
    assert_eq!(log.end_offset_for_epoch(1), Some((0, log.log_end_offset())));
}

#[test]
fn open_reports_io_errors_with_operation_and_path() {
    let s = MemStorage::new();
    drop(open(&s, LogConfig::default()));
    s.fail_after(0, FaultOn::Syncs, FaultKind::Eio);
    match try_open_at(&s, &dir(), LogConfig::default()) {
        Err(RecoveryError::Io(e)) => {
            assert_eq!(e.op, "fdatasync");
            assert!(e.path.starts_with("/data/t-0/"), "{}", e.path);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("open succeeded although fdatasync fails"),
    }
    s.clear_faults();
    open(&s, LogConfig::default());
}

#[test]
fn invalid_config_is_refused_at_open() {
    let s = MemStorage::new();
    let r = try_open_at(&s, &dir(), LogConfig { segment_bytes: 100, ..LogConfig::default() });
    assert!(matches!(r, Err(RecoveryError::Invalid { .. })));
}
