//! Batches a client got wrong are rejected with the error a Kafka client
//! expects, and leave no trace: no offsets assigned, no bytes written, no
//! epoch recorded.

mod common;
use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{AppendError, BatchError, BatchErrorKind, Durability, Log, LogConfig};

fn good() -> Vec<u8> {
    tagged_batch(7, 4, 30, 5_000).to_vec()
}

/// A log with some accepted data, the storage, and what was accepted.
fn log_with_data(cfg: LogConfig) -> (MemStorage, Log<MemStorage>, Vec<Sent>) {
    let s = MemStorage::new();
    let log = open(&s, cfg);
    let sent: Vec<Sent> = (0..5u64)
        .map(|i| {
            let bytes = tagged_batch(i, 2, 20, 1_000);
            let info = block_on(log.append(bytes.clone(), opts(Durability::Written))).unwrap();
            Sent { base: info.base_offset, epoch: 0, bytes }
        })
        .collect();
    (s, log, sent)
}

/// Appends `bad` (with a new leader epoch, which must not be recorded
/// either) and checks it is rejected with `kind` and changes nothing.
fn rejected(cfg: LogConfig, bad: Vec<u8>, kind: BatchErrorKind) -> BatchError {
    let (s, log, sent) = log_with_data(cfg.clone());
    let before = (log.offsets(), s.counters(), log.epochs(), log.segment_count());
    let err = match block_on(log.append(Bytes::from(bad), opts_at(3, 1_000, Durability::Durable))) {
        Err(AppendError::Batch(e)) => e,
        other => panic!("expected a batch error, got {other:?}"),
    };
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(
        (log.offsets(), s.counters(), log.epochs(), log.segment_count()),
        before,
        "a rejected batch changes nothing"
    );
    assert!(!log.is_failed(), "a client's mistake does not fence the log");
    block_on(assert_log_is(&log, 0, &sent));
    // The next good append takes the next offset, in the old epoch.
    let info = block_on(log.append(Bytes::from(good()), opts(Durability::Written))).unwrap();
    assert_eq!(info.base_offset, sent.last().unwrap().next());
    assert_eq!(log.end_offset_for_epoch(3), Some((0, info.last_offset + 1)));
    drop(log);
    s.crash_process();
    let log = open(&s, cfg);
    assert_eq!(log.log_end_offset(), info.last_offset + 1);
    err
}

#[test]
fn wrong_magic_is_corrupt() {
    let mut b = good();
    b[16] = 1;
    assert_eq!(rejected(LogConfig::default(), b, BatchErrorKind::Corrupt), BatchError::WrongMagic(1));
}

#[test]
fn bad_crc_is_corrupt() {
    let mut b = good();
    let n = b.len();
    b[n - 3] ^= 0x10;
    let e = rejected(LogConfig::default(), b, BatchErrorKind::Corrupt);
    assert!(matches!(e, BatchError::CrcMismatch { .. }), "{e:?}");
}

#[test]
fn length_field_longer_than_the_bytes_is_corrupt() {
    let mut b = good();
    let declared = (b.len() - 12 + 5) as i32;
    b[8..12].copy_from_slice(&declared.to_be_bytes());
    let e = rejected(LogConfig::default(), b.clone(), BatchErrorKind::Corrupt);
    assert_eq!(e, BatchError::LengthMismatch { declared: declared as i64 + 12, actual: b.len() });
}

#[test]
fn length_field_below_the_header_is_corrupt() {
    let mut b = good();
    b[8..12].copy_from_slice(&10i32.to_be_bytes());
    let e = rejected(LogConfig::default(), b, BatchErrorKind::Corrupt);
    assert!(matches!(e, BatchError::LengthMismatch { declared: 22, .. }), "{e:?}");
}

#[test]
fn truncated_batch_is_corrupt() {
    let b = good();
    for n in [0, 1, 12, 60] {
        let e = rejected(LogConfig::default(), b[..n].to_vec(), BatchErrorKind::Corrupt);
        assert_eq!(e, BatchError::Truncated(n));
    }
    let e = rejected(LogConfig::default(), b[..b.len() - 1].to_vec(), BatchErrorKind::Corrupt);
    assert!(matches!(e, BatchError::LengthMismatch { .. }), "{e:?}");
}

#[test]
fn record_count_disagreeing_with_last_offset_delta_is_invalid_record() {
    let mut b = good();
    b[57..61].copy_from_slice(&9i32.to_be_bytes());
    reseal(&mut b);
    let e = rejected(LogConfig::default(), b, BatchErrorKind::InvalidRecord);
    assert_eq!(e, BatchError::CountMismatch { count: 9, last_offset_delta: 3 });
}

#[test]
fn record_count_disagreeing_with_the_records_is_invalid_record() {
    // Count and delta agree with each other (5 records) but the records
    // section holds 4.
    let mut b = good();
    b[23..27].copy_from_slice(&4i32.to_be_bytes());
    b[57..61].copy_from_slice(&5i32.to_be_bytes());
    reseal(&mut b);
    let e = rejected(LogConfig::default(), b, BatchErrorKind::InvalidRecord);
    assert!(matches!(e, BatchError::RecordsMismatch { declared: 5, found: 4, .. }), "{e:?}");
}

#[test]
fn zero_records_is_invalid_record() {
    let mut b = good();
    b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&0i32.to_be_bytes());
    reseal(&mut b);
    rejected(LogConfig::default(), b, BatchErrorKind::InvalidRecord);
}

#[test]
fn batch_over_max_message_bytes_is_too_large() {
    let cfg = LogConfig { max_message_bytes: 1_000, ..LogConfig::default() };
    let big = tagged_batch(1, 2, 600, 1).to_vec();
    let e = rejected(cfg.clone(), big.clone(), BatchErrorKind::TooLarge);
    assert_eq!(e, BatchError::TooLarge { size: big.len(), max: 1_000 });
    // Exactly at the limit is accepted.
    let (_, log, _) = log_with_data(LogConfig { max_message_bytes: big.len() as u32, ..cfg });
    block_on(log.append(Bytes::from(big), opts(Durability::Written))).unwrap();
}

#[test]
fn unknown_compression_codec_is_unsupported() {
    let b = compressed_batch(3, 5, 1, 1, b"opaque").to_vec();
    let e = rejected(LogConfig::default(), b, BatchErrorKind::UnsupportedCompression);
    assert_eq!(e, BatchError::UnknownCompression(5));
}

#[test]
fn one_bad_batch_rejects_the_whole_request() {
    // A produce request's records for one partition: good, bad, good.
    let mut bad = good();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let mut req = good();
    req.extend_from_slice(&bad);
    req.extend_from_slice(&good());
    let e = rejected(LogConfig::default(), req, BatchErrorKind::Corrupt);
    assert!(matches!(e, BatchError::CrcMismatch { .. }), "{e:?}");
}

#[test]
fn trailing_bytes_after_the_last_batch_reject_the_request() {
    let mut req = good();
    req.extend_from_slice(&[0u8; 7]);
    let e = rejected(LogConfig::default(), req, BatchErrorKind::Corrupt);
    assert_eq!(e, BatchError::Truncated(7));
}

/// A corrupt batch in the current epoch is caught while staging, on the
/// copy in the write buffers (the client's bytes are read once). What was
/// copied must be undone, even when the batch spans write buffers and came
/// after good batches of the same request.
#[test]
fn a_corrupt_batch_caught_while_staging_is_undone() {
    let cfg = LogConfig { max_message_bytes: 3 << 20, ..small_segments() };
    let cfg = LogConfig { segment_bytes: 64 << 20, ..cfg };
    let s = MemStorage::new();
    let log = open(&s, cfg.clone());
    let mut sent = Vec::new();
    let mut append_good = |log: &Log<MemStorage>, tag: u64, n: usize, len: usize| {
        let bytes = tagged_batch(tag, n, len, 1_000);
        let info = block_on(log.append(bytes.clone(), opts(Durability::Written))).unwrap();
        sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
    };
    append_good(&log, 1, 3, 100_000);
    // Larger than a write buffer (1 MiB): spans at least two.
    let mut big_bad = tagged_batch(2, 3, 600_000, 1_000).to_vec();
    let mid = big_bad.len() / 2;
    big_bad[mid] ^= 0x40;
    let small_good = tagged_batch(3, 2, 50_000, 1_000).to_vec();
    for request in [big_bad.clone(), [small_good.clone(), big_bad.clone()].concat()] {
        let before = (log.offsets(), log.epochs());
        match block_on(log.append(Bytes::from(request), opts(Durability::Written))) {
            Err(AppendError::Batch(e)) => assert_eq!(e.kind(), BatchErrorKind::Corrupt, "{e}"),
            other => panic!("expected CORRUPT_MESSAGE, got {other:?}"),
        }
        assert_eq!((log.offsets(), log.epochs()), before, "a rejected request changes nothing");
        assert!(!log.is_failed());
    }
    append_good(&log, 4, 3, 700_000);
    append_good(&log, 5, 1, 10);
    block_on(log.wait_durable(log.log_end_offset())).unwrap();
    block_on(assert_log_is(&log, 0, &sent));
    drop(log);
    s.crash_power(5);
    let log = open(&s, cfg);
    block_on(assert_log_is(&log, 0, &sent));
}
