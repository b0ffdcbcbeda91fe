//! The log against a plain model: random sequences of appends (alone and
//! concurrent), reads, truncations, time jumps that roll segments, epoch
//! changes, retention, DeleteRecords, syncs, clean restarts with damaged
//! indexes, process crashes and power losses are applied to the log and to a
//! `Vec` of what was appended; after every step the two must agree.
//!
//! After a power loss the log must be a prefix of the model that contains
//! at least every append acknowledged durable; the model is then cut to it.
//! On failure proptest prints the shortest sequence it could find. Set
//! `PROPTEST_CASES` for a longer run.

mod common;
use common::*;
use futures::future::join_all;
use futures_lite::future::block_on;
use proptest::prelude::*;
use spindle_engine::storage::memory::{FaultKind, FaultOn};
use spindle_engine::{AdminError, AppendError, Durability, Log, LogConfig, ReadError};

#[derive(Clone, Debug)]
struct BatchSpec {
    records: u8,
    value_len: u16,
    durable: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Append(BatchSpec),
    AppendConcurrent(Vec<BatchSpec>),
    /// Offset picked in [log start - 1, log end + 1].
    Read {
        at: u16,
        max_bytes: u16,
    },
    /// Offset picked in [log start, log end].
    Truncate {
        at: u16,
    },
    AdvanceTime {
        ms: u32,
    },
    NewEpoch {
        assign_now: bool,
    },
    Retention,
    /// Offset picked in [log start, high watermark + 1].
    DeleteRecords {
        at: u16,
    },
    Sync,
    LookupTimestamp {
        at: u16,
    },
    CrashProcess,
    CrashPower {
        seed: u64,
    },
    /// Clean close, optionally flipping a byte of one index file, reopen.
    CloseReopen {
        damage: Option<(u8, bool, u16)>,
    },
    /// The next write (or fdatasync) fails: the append fails, the log
    /// refuses writes; the disk recovers, the process restarts.
    FailIo {
        on_sync: bool,
        spec: BatchSpec,
    },
    /// Process crash, then garbage lands right after the last batch.
    GarbageTail {
        len: u16,
        seed: u64,
    },
}

#[derive(Clone, Debug)]
struct Setup {
    segment_bytes: u64,
    segment_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
}

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    (1u8..=5, 0u16..400, prop::bool::weighted(0.3)).prop_map(|(records, value_len, durable)| BatchSpec {
        records,
        value_len,
        durable,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => batch_spec().prop_map(Op::Append),
        8 => prop::collection::vec(batch_spec(), 2..6).prop_map(Op::AppendConcurrent),
        10 => (any::<u16>(), any::<u16>()).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        5 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        6 => (0u32..25_000).prop_map(|ms| Op::AdvanceTime { ms }),
        3 => any::<bool>().prop_map(|assign_now| Op::NewEpoch { assign_now }),
        5 => Just(Op::Retention),
        4 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        4 => Just(Op::Sync),
        5 => any::<u16>().prop_map(|at| Op::LookupTimestamp { at }),
        4 => Just(Op::CrashProcess),
        5 => any::<u64>().prop_map(|seed| Op::CrashPower { seed }),
        3 => prop::option::of((any::<u8>(), any::<bool>(), any::<u16>())).prop_map(|damage| Op::CloseReopen { damage }),
        2 => (any::<bool>(), batch_spec()).prop_map(|(on_sync, spec)| Op::FailIo { on_sync, spec }),
        2 => (1u16..3_000, any::<u64>()).prop_map(|(len, seed)| Op::GarbageTail { len, seed }),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::sample::select(vec![4_096u64, 8_192, 65_536]),
        prop::sample::select(vec![2_000i64, 10_000]),
        prop::sample::select(vec![-1i64, 5_000, 30_000]),
        prop::sample::select(vec![-1i64, 6_000, 20_000]),
    )
        .prop_map(|(segment_bytes, segment_ms, retention_ms, retention_bytes)| Setup {
            segment_bytes,
            segment_ms,
            retention_ms,
            retention_bytes,
        })
}

/// One appended batch in the model; record k has timestamp `ts + k`.
#[derive(Clone, Debug)]
struct MBatch {
    sent: Sent,
    ts: i64,
}

#[derive(Debug)]
struct Model {
    /// Every batch in the log, including those below the log start.
    batches: Vec<MBatch>,
    end: i64,
    log_start: i64,
    /// Everything below was acknowledged durable (or made so by recovery,
    /// a sync, a truncation or a clean close).
    durable_end: i64,
    epoch: i32,
    now_ms: i64,
    tag: u64,
}

impl Model {
    fn visible(&self) -> Vec<Sent> {
        self.batches.iter().filter(|b| b.sent.next() > self.log_start).map(|b| b.sent.clone()).collect()
    }

    /// Offsets at which a segment may start: a batch base or the log end.
    fn is_boundary(&self, offset: i64) -> bool {
        offset == self.end || self.batches.iter().any(|b| b.sent.base == offset || b.sent.next() == offset)
    }

    /// (offset, timestamp) of the first record at or after the log start
    /// whose timestamp is at least `ts`.
    fn lookup(&self, ts: i64) -> Option<(i64, i64)> {
        for b in &self.batches {
            for k in 0..b.sent.records() {
                let (off, t) = (b.sent.base + k, b.ts + k);
                if off >= self.log_start && t >= ts {
                    return Some((off, t));
                }
            }
        }
        None
    }
}

struct Harness {
    storage: SlowStorage,
    config: LogConfig,
    log: Option<Log<SlowStorage>>,
    m: Model,
}

impl Harness {
    fn new(setup: &Setup) -> Self {
        let config = LogConfig {
            segment_bytes: setup.segment_bytes,
            segment_ms: setup.segment_ms,
            retention_ms: setup.retention_ms,
            retention_bytes: setup.retention_bytes,
            ..LogConfig::default()
        };
        let storage = SlowStorage::default();
        let log = Some(open_at(&storage, &dir(), config.clone()));
        let m = Model { batches: Vec::new(), end: 0, log_start: 0, durable_end: 0, epoch: 0, now_ms: 1_000, tag: 0 };
        Harness { storage, config, log, m }
    }

    fn log(&self) -> &Log<SlowStorage> {
        self.log.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.log = Some(open_at(&self.storage, &dir(), self.config.clone()));
    }

    fn next_batch(&mut self, spec: &BatchSpec) -> bytes::Bytes {
        self.m.tag += 1;
        tagged_batch(self.m.tag, spec.records as usize, spec.value_len as usize, self.m.now_ms)
    }

    fn durability(spec: &BatchSpec) -> Durability {
        if spec.durable {
            Durability::Durable
        } else {
            Durability::Written
        }
    }

    fn record_append(&mut self, bytes: bytes::Bytes, base: i64, durable: bool) {
        assert_eq!(base, self.m.end, "append lands at the log end");
        let b = MBatch { sent: Sent { base, epoch: self.m.epoch, bytes }, ts: self.m.now_ms };
        self.m.end = b.sent.next();
        if durable {
            self.m.durable_end = self.m.durable_end.max(self.m.end);
        }
        self.m.batches.push(b);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(spec) => {
                let bytes = self.next_batch(spec);
                let o = opts_at(self.m.epoch, self.m.now_ms, Self::durability(spec));
                let info = block_on(self.log().append(bytes.clone(), o)).expect("append");
                self.record_append(bytes, info.base_offset, spec.durable);
                assert_eq!(info.log_start_offset, self.m.log_start);
            }
            Op::AppendConcurrent(specs) => {
                let batches: Vec<_> = specs.iter().map(|s| self.next_batch(s)).collect();
                let log = self.log();
                let results =
                    block_on(join_all(specs.iter().zip(&batches).map(|(s, b)| {
                        log.append(b.clone(), opts_at(self.m.epoch, self.m.now_ms, Self::durability(s)))
                    })));
                for ((r, b), s) in results.into_iter().zip(batches).zip(specs) {
                    let info = r.expect("concurrent append");
                    self.record_append(b, info.base_offset, s.durable);
                }
            }
            Op::Read { at, max_bytes } => {
                let lo = self.m.log_start - 1;
                let off = lo + *at as i64 % (self.m.end + 1 - lo + 1);
                let max_bytes = *max_bytes as usize * 8;
                let r = block_on(self.log().read(off, max_bytes, i64::MAX));
                if off < self.m.log_start || off > self.m.end {
                    assert!(matches!(r, Err(ReadError::OffsetOutOfRange { .. })), "read({off}): {r:?}");
                    return;
                }
                let got = r.expect("read");
                if off == self.m.end {
                    assert!(got.is_empty(), "read at the log end");
                    return;
                }
                assert!(!got.is_empty(), "read({off}) below the log end returned nothing");
                let first = self.m.batches.iter().position(|b| b.sent.base <= off && off < b.sent.next()).unwrap();
                let total: usize = got.iter().map(|v| v.kafka_len()).sum();
                assert!(got.len() == 1 || total <= max_bytes, "read({off}, {max_bytes}) returned {total} bytes");
                for (k, v) in got.iter().enumerate() {
                    let want = &self.m.batches[first + k].sent;
                    assert_eq!(wire(v), want.wire(), "read({off}) batch {k}");
                }
            }
            Op::Truncate { at } => {
                let off = self.m.log_start + *at as i64 % (self.m.end - self.m.log_start + 1);
                let new_end = block_on(self.log().truncate_to(off)).expect("truncate");
                let want = self.m.batches.iter().find(|b| b.sent.next() > off).map_or(self.m.end, |b| b.sent.base);
                assert_eq!(new_end, want, "truncate_to({off})");
                self.m.batches.retain(|b| b.sent.next() <= new_end);
                self.m.end = new_end;
                self.m.log_start = self.m.log_start.min(new_end);
                self.m.durable_end = new_end;
            }
            Op::AdvanceTime { ms } => self.m.now_ms += *ms as i64,
            Op::NewEpoch { assign_now } => {
                self.m.epoch += 1;
                if *assign_now {
                    block_on(self.log().assign_epoch(self.m.epoch)).expect("assign epoch");
                }
            }
            Op::Retention => {
                let old = self.m.log_start;
                block_on(self.log().enforce_retention(self.m.now_ms)).expect("retention");
                let new = self.log().log_start_offset();
                assert!(new >= old && new <= self.m.end, "retention moved log start {old} -> {new}");
                assert!(new == old || self.m.is_boundary(new), "log start {new} is not a segment boundary");
                self.m.log_start = new;
            }
            Op::DeleteRecords { at } => {
                let before = self.m.log_start + *at as i64 % (self.m.end - self.m.log_start + 2);
                let r = block_on(self.log().delete_records(before));
                if before > self.m.end {
                    assert!(matches!(r, Err(AdminError::OffsetOutOfRange { .. })), "delete_records({before}): {r:?}");
                    return;
                }
                assert_eq!(r.expect("delete records"), before);
                // Retention by size may move it further, to a segment start.
                let new = self.log().log_start_offset();
                assert!(new == before || (new > before && self.m.is_boundary(new)), "{before} -> {new}");
                self.m.log_start = new;
            }
            Op::Sync => {
                block_on(self.log().wait_durable(self.m.end)).expect("sync");
                self.m.durable_end = self.m.end;
            }
            Op::LookupTimestamp { at } => {
                let lo = self.m.batches.iter().map(|b| b.ts).min().unwrap_or(0) - 2;
                let hi = self.m.batches.iter().map(|b| b.ts + b.sent.records()).max().unwrap_or(0) + 2;
                let ts = lo + *at as i64 % (hi - lo + 1);
                let got = block_on(self.log().offset_for_timestamp(ts)).expect("lookup");
                assert_eq!(got, self.m.lookup(ts), "offset_for_timestamp({ts})");
            }
            Op::CrashProcess => {
                self.log = None;
                self.storage.mem.crash_process();
                self.reopen();
                self.m.durable_end = self.m.end;
            }
            Op::CrashPower { seed } => {
                self.log = None;
                self.storage.mem.crash_power(*seed);
                self.reopen();
                let new_end = self.log().log_end_offset();
                assert!(
                    new_end >= self.m.durable_end,
                    "power loss took durable data: end {new_end} < {}",
                    self.m.durable_end
                );
                assert!(new_end <= self.m.end, "recovered past the end: {new_end} > {}", self.m.end);
                assert!(self.m.is_boundary(new_end), "recovered end {new_end} is inside a batch");
                self.m.batches.retain(|b| b.sent.next() <= new_end);
                self.m.end = new_end;
                self.m.log_start = self.m.log_start.min(new_end);
                self.m.durable_end = new_end;
            }
            Op::CloseReopen { damage } => {
                block_on(self.log().close()).expect("close");
                self.log = None;
                if let Some((which, time, pos)) = damage {
                    let bases = segment_bases(&self.storage.mem);
                    let base = bases[*which as usize % bases.len()];
                    let path = seg_path(base, if *time { "timeindex" } else { "index" });
                    if let Some(data) = self.storage.mem.contents(&path) {
                        if !data.is_empty() {
                            let at = *pos as usize % data.len();
                            self.storage.mem.corrupt(&path, at as u64, &[data[at] ^ 0x5a]);
                        }
                    }
                }
                self.reopen();
                self.m.durable_end = self.m.end;
            }
            Op::FailIo { on_sync, spec } => {
                let on = if *on_sync { FaultOn::Syncs } else { FaultOn::Writes };
                self.storage.mem.fail_after(0, on, FaultKind::Eio);
                let bytes = self.next_batch(spec);
                let d = if *on_sync { Durability::Durable } else { Durability::Written };
                let r = block_on(self.log().append(bytes.clone(), opts_at(self.m.epoch, self.m.now_ms, d)));
                assert!(matches!(r, Err(AppendError::Storage(_))), "append on a failing disk: {r:?}");
                assert!(self.log().is_failed());
                self.storage.mem.clear_faults();
                assert!(matches!(
                    block_on(self.log().append(bytes.clone(), opts_at(self.m.epoch, self.m.now_ms, d))),
                    Err(AppendError::Fenced(_))
                ));
                self.log = None;
                self.storage.mem.crash_process();
                self.reopen();
                // The failed batch was never acknowledged: it may be there
                // (written, sync failed) or not (write failed), whole.
                let end = self.log().log_end_offset();
                if end != self.m.end {
                    let base = self.m.end;
                    self.record_append(bytes, base, false);
                    assert_eq!(end, self.m.end, "recovered end after a failed append");
                }
                self.m.durable_end = self.m.end;
            }
            Op::GarbageTail { len, seed } => {
                self.log = None;
                self.storage.mem.crash_process();
                let last = *segment_bases(&self.storage.mem).last().unwrap();
                let at: usize =
                    self.m.batches.iter().filter(|b| b.sent.base >= last).map(|b| b.sent.bytes.len() - 61 + 72).sum();
                let mut junk = TestRng(*seed).bytes(*len as usize);
                junk[0] |= 0x80;
                self.storage.mem.corrupt(&seg_path(last, "log"), at as u64, &junk);
                self.reopen();
                self.m.durable_end = self.m.end;
            }
        }
    }

    fn check(&self) {
        let log = self.log();
        let m = &self.m;
        let o = log.offsets();
        assert_eq!(o.log_start, m.log_start, "log start");
        assert_eq!(o.log_end, m.end, "log end");
        assert_eq!(o.written, m.end, "high watermark");
        assert!(
            o.durable >= m.durable_end && o.durable <= o.written,
            "durable {} vs model {}",
            o.durable,
            m.durable_end
        );
        let visible = m.visible();
        block_on(assert_log_is(log, m.log_start, &visible));
        assert!(block_on(log.read(m.end, 1 << 20, i64::MAX)).unwrap().is_empty());
        assert!(matches!(block_on(log.read(m.end + 1, 1, i64::MAX)), Err(ReadError::OffsetOutOfRange { .. })));
        if m.log_start > 0 {
            assert!(matches!(
                block_on(log.read(m.log_start - 1, 1, i64::MAX)),
                Err(ReadError::OffsetOutOfRange { .. })
            ));
        }
        // OffsetForLeaderEpoch for every epoch with visible records: it
        // ends where the next epoch's records start, or at the log end.
        for (i, b) in visible.iter().enumerate() {
            if i > 0 && visible[i - 1].epoch == b.epoch {
                continue;
            }
            let end = visible.iter().find(|x| x.epoch > b.epoch).map_or(m.end, |x| x.base);
            assert_eq!(log.end_offset_for_epoch(b.epoch), Some((b.epoch, end)), "epoch {}", b.epoch);
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_vec_model(setup in setup(), ops in prop::collection::vec(op(), 1..60)) {
        let mut h = Harness::new(&setup);
        for (i, op) in ops.iter().enumerate() {
            h.apply(op);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check()));
            if let Err(e) = r {
                eprintln!("model check failed after step {i}: {op:?}");
                std::panic::resume_unwind(e);
            }
        }
    }
}
