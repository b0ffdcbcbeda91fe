//! Idempotent producers: what a partition's leader remembers of each
//! producer id's recent batches, to refuse sequence gaps and to answer a
//! retried batch with the offsets it already got instead of appending it
//! twice (Kafka's producer state, KIP-98).
//!
//! A batch with a producer id (>= 0) carries its producer epoch and the
//! sequence number of its first record; the producer numbers records per
//! partition from 0, wrapping after `i32::MAX`. For each producer id the
//! log keeps the epoch and the last [`BATCHES_KEPT`] batches (Kafka keeps
//! 5: a producer has at most 5 requests in flight per connection).
//!
//! Followers record the batches they replicate without checking them (the
//! leader did), so a follower that becomes the leader knows the producers.
//!
//! The state lives in memory and is rebuilt from the log, as Kafka's: the
//! log writes a snapshot of it ([`Producers::encode`], a file named by the
//! log end it was taken at, [`SNAPSHOT_EXT`]) with each index checkpoint,
//! each sealed segment's index and at a clean close, keeps the newest
//! [`SNAPSHOTS_KEPT`], and an open (or a truncation) loads the newest one
//! at or below the log end whose fingerprint (the stored header checksum
//! of the batch just below its offset) matches the log, and replays the
//! batch headers after it.
//!
//! A producer is forgotten, as Kafka forgets it, when its last batch lies
//! below the log start, or when its last batch's timestamp is older than
//! `producer.id.expiration.ms` (default [`PRODUCER_ID_EXPIRATION_MS`]) at
//! a retention run. Its next batch is then taken as an unknown producer's.

use std::collections::{HashMap, VecDeque};

/// Recent batches kept per producer id.
pub const BATCHES_KEPT: usize = 5;

/// Default `producer.id.expiration.ms`, Kafka's (one day): a producer
/// whose last batch is older is forgotten ([`Producers::expire_before`]).
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// Extension of a producer-state snapshot, named (as a segment) by the
/// log end offset it was taken at (layout in docs/storage-format.md).
pub const SNAPSHOT_EXT: &str = "snapshot";

/// Snapshots a log keeps: the newest may be past the log end after a crash
/// (it was taken with batches staged that never reached the disk), so
/// older ones stay to fall back on.
pub const SNAPSHOTS_KEPT: usize = 3;
const SNAPSHOT_MAGIC: &[u8; 8] = b"SPNDPRD2";

/// Takes fixed-size fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// The sequence fields of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequenced {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    /// Sequence of the batch's last record (`first_seq` + last offset
    /// delta, wrapping as the producer does).
    pub last_seq: i32,
    /// The batch's max timestamp, for expiration (as Kafka's).
    pub timestamp: i64,
}

/// Why a producer's batch is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// A newer epoch of this producer id has written: this one is fenced.
    #[error("producer {producer_id} epoch {epoch} is older than its latest epoch {latest}")]
    StaleProducerEpoch { producer_id: i64, epoch: i16, latest: i16 },
    /// The batch does not continue the producer's sequence (a batch before
    /// it is missing), or a new epoch does not start at 0.
    #[error("producer {producer_id} epoch {epoch}: sequence {found}, expected {expected}")]
    OutOfOrder { producer_id: i64, epoch: i16, found: i32, expected: i32 },
}

/// What the log should do with a producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Append,
    /// Already in the log at these offsets: acknowledge it again.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

#[derive(Default)]
pub struct Producers {
    by_id: HashMap<i64, Entry>,
}

struct Entry {
    epoch: i16,
    /// Max timestamp of its last batch.
    last_timestamp: i64,
    recent: VecDeque<Recent>,
}

#[derive(Clone, Copy)]
struct Recent {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

/// The sequence after `seq`.
pub fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// `first` advanced by `delta` records, wrapping after `i32::MAX`.
pub fn seq_plus(first: i32, delta: i32) -> i32 {
    (((first as i64) + (delta as i64)) % (i32::MAX as i64 + 1)) as i32
}

impl Producers {
    pub fn check(&self, b: &Sequenced) -> Result<Admit, SequenceError> {
        let Some(e) = self.by_id.get(&b.producer_id) else {
            return Ok(Admit::Append);
        };
        if b.epoch < e.epoch {
            return Err(SequenceError::StaleProducerEpoch {
                producer_id: b.producer_id,
                epoch: b.epoch,
                latest: e.epoch,
            });
        }
        if b.epoch > e.epoch {
            return if b.first_seq == 0 {
                Ok(Admit::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id: b.producer_id,
                    epoch: b.epoch,
                    found: b.first_seq,
                    expected: 0,
                })
            };
        }
        if let Some(r) = e.recent.iter().find(|r| r.first_seq == b.first_seq && r.last_seq == b.last_seq) {
            return Ok(Admit::Duplicate { base_offset: r.base_offset, last_offset: r.last_offset });
        }
        let expected = e.recent.back().map_or(0, |r| next_seq(r.last_seq));
        if b.first_seq == expected {
            Ok(Admit::Append)
        } else {
            Err(SequenceError::OutOfOrder { producer_id: b.producer_id, epoch: b.epoch, found: b.first_seq, expected })
        }
    }

    /// Remembers a batch appended at `base_offset..=last_offset`.
    pub fn record(&mut self, b: &Sequenced, base_offset: i64, last_offset: i64) {
        let e = self.by_id.entry(b.producer_id).or_insert_with(|| Entry {
            epoch: b.epoch,
            last_timestamp: b.timestamp,
            recent: VecDeque::new(),
        });
        e.last_timestamp = b.timestamp;
        if b.epoch != e.epoch {
            e.epoch = b.epoch;
            e.recent.clear();
        }
        if e.recent.len() == BATCHES_KEPT {
            e.recent.pop_front();
        }
        e.recent.push_back(Recent { first_seq: b.first_seq, last_seq: b.last_seq, base_offset, last_offset });
    }

    /// Forgets everything (the log was emptied).
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    /// Forgets the producers whose last batch lies below `log_start`
    /// (retention or DeleteRecords removed it), as Kafka does: their next
    /// batch is taken as an unknown producer's.
    pub fn evict_below(&mut self, log_start: i64) {
        self.by_id.retain(|_, e| e.recent.back().is_some_and(|r| r.last_offset >= log_start));
    }

    /// Forgets the producers whose last batch's timestamp is before
    /// `cutoff_ms` (Kafka's producer id expiration).
    pub fn expire_before(&mut self, cutoff_ms: i64) {
        self.by_id.retain(|_, e| e.last_timestamp >= cutoff_ms);
    }

    /// The state as of log end `end`, for a snapshot file (layout in
    /// docs/storage-format.md). `last_batch` is the fingerprint of the log
    /// there: the stored header checksum of the batch ending at `end - 1`,
    /// `None` if the log was empty.
    pub fn encode(&self, end: i64, last_batch: Option<u32>) -> Vec<u8> {
        let mut out = Vec::with_capacity(29 + self.by_id.len() * (19 + BATCHES_KEPT * 24));
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&end.to_le_bytes());
        out.push(last_batch.is_some() as u8);
        out.extend_from_slice(&last_batch.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.by_id.len() as u32).to_le_bytes());
        let mut ids: Vec<&i64> = self.by_id.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.by_id[id];
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&e.epoch.to_le_bytes());
            out.extend_from_slice(&e.last_timestamp.to_le_bytes());
            out.push(e.recent.len() as u8);
            for r in &e.recent {
                out.extend_from_slice(&r.first_seq.to_le_bytes());
                out.extend_from_slice(&r.last_seq.to_le_bytes());
                out.extend_from_slice(&r.base_offset.to_le_bytes());
                out.extend_from_slice(&r.last_offset.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The state and the fingerprint [`Producers::encode`] wrote, if `b`
    /// is intact and was taken at log end `end`; `None` otherwise.
    pub fn decode(b: &[u8], end: i64) -> Option<(Producers, Option<u32>)> {
        let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_le_bytes() != crc || !body.starts_with(SNAPSHOT_MAGIC) {
            return None;
        }
        let mut r = Reader(&body[SNAPSHOT_MAGIC.len()..]);
        if i64::from_le_bytes(r.take()?) != end {
            return None;
        }
        let [has_last] = r.take()?;
        let last_crc = u32::from_le_bytes(r.take()?);
        let last_batch = match has_last {
            0 => None,
            1 => Some(last_crc),
            _ => return None,
        };
        let mut by_id = HashMap::new();
        for _ in 0..u32::from_le_bytes(r.take()?) {
            let id = i64::from_le_bytes(r.take()?);
            let epoch = i16::from_le_bytes(r.take()?);
            let last_timestamp = i64::from_le_bytes(r.take()?);
            let [n] = r.take()?;
            if n as usize > BATCHES_KEPT {
                return None;
            }
            let mut recent = VecDeque::with_capacity(n as usize);
            for _ in 0..n {
                recent.push_back(Recent {
                    first_seq: i32::from_le_bytes(r.take()?),
                    last_seq: i32::from_le_bytes(r.take()?),
                    base_offset: i64::from_le_bytes(r.take()?),
                    last_offset: i64::from_le_bytes(r.take()?),
                });
            }
            by_id.insert(id, Entry { epoch, last_timestamp, recent });
        }
        r.0.is_empty().then_some((Producers { by_id }, last_batch))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(epoch: i16, first_seq: i32, records: i32) -> Sequenced {
        Sequenced { producer_id: 7, epoch, first_seq, last_seq: seq_plus(first_seq, records - 1), timestamp: 1_000 }
    }

    #[test]
    fn sequences_continue_duplicates_answer_again_and_gaps_are_refused() {
        let mut p = Producers::default();
        assert_eq!(p.check(&b(0, 5, 3)), Ok(Admit::Append), "an unknown producer starts anywhere");
        p.record(&b(0, 5, 3), 100, 102);
        assert_eq!(p.check(&b(0, 5, 3)), Ok(Admit::Duplicate { base_offset: 100, last_offset: 102 }));
        assert_eq!(p.check(&b(0, 8, 1)), Ok(Admit::Append));
        assert!(matches!(p.check(&b(0, 9, 1)), Err(SequenceError::OutOfOrder { expected: 8, found: 9, .. })));
        assert!(matches!(p.check(&b(0, 7, 1)), Err(SequenceError::OutOfOrder { .. })), "inside a batch, not one");
        for i in 0..BATCHES_KEPT as i32 {
            p.record(&b(0, 8 + i, 1), 103 + i as i64, 103 + i as i64);
        }
        assert!(matches!(p.check(&b(0, 5, 3)), Err(SequenceError::OutOfOrder { .. })), "older than the 5 kept");
        assert_eq!(p.check(&b(0, 12, 1)), Ok(Admit::Duplicate { base_offset: 107, last_offset: 107 }));
    }

    #[test]
    fn a_new_epoch_starts_at_zero_and_fences_the_old_one() {
        let mut p = Producers::default();
        p.record(&b(3, 0, 2), 0, 1);
        assert!(matches!(p.check(&b(4, 2, 1)), Err(SequenceError::OutOfOrder { expected: 0, .. })));
        assert_eq!(p.check(&b(4, 0, 1)), Ok(Admit::Append));
        p.record(&b(4, 0, 1), 2, 2);
        assert!(matches!(p.check(&b(3, 2, 1)), Err(SequenceError::StaleProducerEpoch { latest: 4, .. })));
    }

    #[test]
    fn a_snapshot_reads_back_only_whole_and_at_its_log_end() {
        let mut p = Producers::default();
        p.record(&b(2, 0, 3), 10, 12);
        p.record(&Sequenced { producer_id: 4, epoch: 0, first_seq: 4, last_seq: 4, timestamp: 2_000 }, 13, 13);
        let bytes = p.encode(14, Some(0xfeed));
        let (back, fingerprint) = Producers::decode(&bytes, 14).expect("intact");
        assert_eq!(fingerprint, Some(0xfeed));
        assert_eq!(back.len(), 2);
        assert_eq!(back.check(&b(2, 0, 3)), Ok(Admit::Duplicate { base_offset: 10, last_offset: 12 }));
        assert_eq!(back.encode(14, Some(0xfeed)), bytes);
        let (_, none) = Producers::decode(&p.encode(14, None), 14).expect("intact");
        assert_eq!(none, None, "taken on an empty log");
        assert!(Producers::decode(&bytes, 15).is_none(), "taken at another log end");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Producers::decode(&bad, 14).is_none(), "byte {i} flipped");
            assert!(Producers::decode(&bytes[..i], 14).is_none(), "cut to {i} bytes");
        }
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let mut p = Producers::default();
        let last = b(0, i32::MAX - 1, 3);
        assert_eq!(last.last_seq, 0);
        p.record(&last, 0, 2);
        assert_eq!(p.check(&b(0, 1, 1)), Ok(Admit::Append));
    }

    #[test]
    fn producers_whose_last_batch_is_below_the_log_start_are_forgotten() {
        let mut p = Producers::default();
        p.record(&b(0, 0, 2), 10, 11);
        p.record(&Sequenced { producer_id: 8, epoch: 0, first_seq: 0, last_seq: 0, timestamp: 1_000 }, 12, 12);
        p.evict_below(12);
        assert_eq!(p.len(), 1);
        assert_eq!(p.check(&b(0, 9, 1)), Ok(Admit::Append), "producer 7 is unknown again");
        assert!(matches!(
            p.check(&Sequenced { producer_id: 8, epoch: 0, first_seq: 2, last_seq: 2, timestamp: 1_000 }),
            Err(SequenceError::OutOfOrder { expected: 1, .. })
        ));
    }

    #[test]
    fn producers_idle_past_the_expiration_are_forgotten() {
        let mut p = Producers::default();
        p.record(&Sequenced { producer_id: 1, epoch: 0, first_seq: 0, last_seq: 0, timestamp: 5_000 }, 0, 0);
        p.record(&Sequenced { producer_id: 2, epoch: 0, first_seq: 0, last_seq: 0, timestamp: 1_000 }, 1, 1);
        // Producer 2 writes again later: its last batch counts.
        p.record(&Sequenced { producer_id: 2, epoch: 0, first_seq: 1, last_seq: 1, timestamp: 9_000 }, 2, 2);
        p.expire_before(6_000);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.check(&Sequenced { producer_id: 2, epoch: 0, first_seq: 1, last_seq: 1, timestamp: 9_000 }),
            Ok(Admit::Duplicate { base_offset: 2, last_offset: 2 })
        );
    }
}
