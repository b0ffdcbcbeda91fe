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
//! The state lives in memory and starts empty when a log opens: the first
//! batch of a producer the log does not know is taken whatever its
//! sequence. So a batch retried across a restart of the broker, or a change
//! of leader, is not recognised as a duplicate; Kafka rebuilds this state
//! from the log and its snapshots.

use std::collections::{HashMap, VecDeque};

/// Recent batches kept per producer id.
pub const BATCHES_KEPT: usize = 5;

/// The sequence fields of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequenced {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    /// Sequence of the batch's last record (`first_seq` + last offset
    /// delta, wrapping as the producer does).
    pub last_seq: i32,
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
        let e = self.by_id.entry(b.producer_id).or_insert_with(|| Entry { epoch: b.epoch, recent: VecDeque::new() });
        if b.epoch != e.epoch {
            e.epoch = b.epoch;
            e.recent.clear();
        }
        if e.recent.len() == BATCHES_KEPT {
            e.recent.pop_front();
        }
        e.recent.push_back(Recent { first_seq: b.first_seq, last_seq: b.last_seq, base_offset, last_offset });
    }

    /// Forgets everything (the log was truncated: remembered offsets may be
    /// gone).
    pub fn clear(&mut self) {
        self.by_id.clear();
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
        Sequenced { producer_id: 7, epoch, first_seq, last_seq: seq_plus(first_seq, records - 1) }
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
    fn sequences_wrap_after_i32_max() {
        let mut p = Producers::default();
        let last = b(0, i32::MAX - 1, 3);
        assert_eq!(last.last_seq, 0);
        p.record(&last, 0, 2);
        assert_eq!(p.check(&b(0, 1, 1)), Ok(Admit::Append));
    }
}
