//! An in-memory log for tests: one record per batch, an epoch history with
//! the engine's semantics (`engine/src/epoch.rs`), and the operations the
//! follower's actions name.

use super::LogView;
use crate::types::{LeaderEpoch, Offset};

/// One single-record batch. `tag` tells apart batches written by different
/// leaders at the same offset, so log comparisons see divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub offset: Offset,
    pub epoch: LeaderEpoch,
    pub tag: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelLog {
    start: Offset,
    batches: Vec<Batch>,
    /// (epoch, start offset), strictly increasing epochs.
    epochs: Vec<(LeaderEpoch, Offset)>,
}

impl ModelLog {
    /// A log starting at `start` with `count` batches of each `epoch` in turn.
    pub fn from_runs(start: Offset, runs: &[(LeaderEpoch, usize)]) -> ModelLog {
        let mut log = ModelLog { start, ..ModelLog::default() };
        for &(epoch, count) in runs {
            for _ in 0..count {
                log.append_leader(epoch, 0);
            }
        }
        log
    }

    /// Retention: drop everything below `start`, keep the covering epoch.
    pub fn with_start(mut self, start: Offset) -> ModelLog {
        assert!(start >= self.start && start <= self.log_end());
        self.batches.retain(|b| b.offset >= start);
        self.start = start;
        let covering = self.epochs.partition_point(|&(_, s)| s <= start);
        if covering > 1 {
            self.epochs.drain(..covering - 1);
        }
        if let Some(first) = self.epochs.first_mut() {
            first.1 = first.1.max(start);
        }
        self
    }

    /// A log written before epochs were recorded.
    pub fn with_no_epochs(mut self) -> ModelLog {
        self.epochs.clear();
        self
    }

    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    fn assign(&mut self, epoch: LeaderEpoch, start: Offset) {
        if let Some(&(last, last_start)) = self.epochs.last() {
            assert!(epoch > last, "epoch {epoch} after {last}");
            assert!(start >= last_start);
        }
        self.epochs.push((epoch, start));
    }

    /// A leader's `assign_epoch`: the epoch starts at the log end.
    pub fn assign_epoch(&mut self, epoch: LeaderEpoch) {
        self.assign(epoch, self.log_end());
    }

    pub fn append_leader(&mut self, epoch: LeaderEpoch, tag: u64) {
        if self.latest_epoch() != Some(epoch) {
            self.assign(epoch, self.log_end());
        }
        self.batches.push(Batch { offset: self.log_end(), epoch, tag });
    }

    /// `Log::append_replicated`: contiguous, epochs never decrease, a new
    /// epoch starts at its first batch.
    pub fn append_replicated(&mut self, records: &[Batch]) {
        for b in records {
            assert_eq!(b.offset, self.log_end(), "not contiguous");
            match self.latest_epoch() {
                Some(latest) if b.epoch < latest => panic!("epoch regression {} < {latest}", b.epoch),
                Some(latest) if b.epoch == latest => {}
                _ => self.assign(b.epoch, b.offset),
            }
            self.batches.push(*b);
        }
    }

    pub fn truncate_to(&mut self, to: Offset) {
        assert!(
            to >= self.start && to <= self.log_end(),
            "truncate to {to} outside {}..{}",
            self.start,
            self.log_end()
        );
        self.batches.truncate((to - self.start) as usize);
        self.epochs.retain(|&(_, s)| s < to);
    }

    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) {
        self.batches.clear();
        self.epochs.clear();
        self.start = offset;
    }

    pub fn read(&self, from: Offset, max_batches: usize) -> Vec<Batch> {
        let i = (from - self.start) as usize;
        self.batches[i..].iter().take(max_batches).copied().collect()
    }
}

impl LogView for ModelLog {
    fn log_start(&self) -> Offset {
        self.start
    }

    fn log_end(&self) -> Offset {
        self.start + self.batches.len() as Offset
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|&(e, _)| e)
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        crate::partition_replica::end_offset_for(&self.epochs, epoch, self.log_end())
    }

    fn first_epoch(&self) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.first().copied()
    }
}
