//! One broker's copy of one partition log, as the simulator models it: single-record batches with
//! their leader epoch and content, an epoch history kept apart from the batches (as the engine keeps
//! its leader-epoch file), a **written** end and a **durable** end.
//!
//! What the two ends mean (design 7.2): written data survives a process crash (`kill -9`: the page
//! cache outlives the process), only durable data survives a power loss. An fsync is a ticket: it
//! makes durable what was written when it started, once it completes; a truncation meanwhile caps
//! what it can make durable, so an fsync never "persists" data that was cut and rewritten.
//!
//! Not modelled: torn batches (a batch is atomic), log start moving (no retention: the log starts
//! at 0 unless a follower restarts it with `truncate_fully_and_start_at`), disk errors, write
//! latency (appends are written at once; only fsync takes time).

use std::collections::BTreeMap;

use crate::partition_replica::LogView;
use crate::types::{LeaderEpoch, Offset};

/// One single-record batch. `content` is unique per produce attempt, so two batches written by
/// different leaders at the same offset always differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    pub offset: Offset,
    pub epoch: LeaderEpoch,
    pub content: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    start: Offset,
    batches: Vec<Batch>,
    /// (epoch, start offset), strictly increasing in both.
    epochs: Vec<(LeaderEpoch, Offset)>,
    durable_end: Offset,
    /// Outstanding fsyncs: ticket -> the end they will make durable.
    syncs: BTreeMap<u64, Offset>,
    next_ticket: u64,
}

impl Disk {
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    pub fn written_end(&self) -> Offset {
        self.start + self.batches.len() as Offset
    }

    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }

    pub fn epochs(&self) -> &[(LeaderEpoch, Offset)] {
        &self.epochs
    }

    pub fn batch_at(&self, offset: Offset) -> Option<&Batch> {
        let i = usize::try_from(offset - self.start).ok()?;
        self.batches.get(i)
    }

    /// Batches in `[from, to)`.
    pub fn read(&self, from: Offset, to: Offset) -> Vec<Batch> {
        if to <= from {
            return Vec::new();
        }
        let lo = (from - self.start) as usize;
        let hi = ((to - self.start) as usize).min(self.batches.len());
        self.batches[lo..hi].to_vec()
    }

    fn push_epoch(&mut self, epoch: LeaderEpoch, start: Offset) {
        if let Some(&(last, last_start)) = self.epochs.last() {
            assert!(epoch > last, "epoch {epoch} assigned after {last}");
            assert!(start >= last_start, "epoch {epoch} starts at {start}, before {last_start}");
        }
        self.epochs.push((epoch, start));
    }

    /// The engine's `assign_epoch` on becoming leader: the epoch starts at the written end.
    pub fn assign_epoch(&mut self, epoch: LeaderEpoch) {
        self.push_epoch(epoch, self.written_end());
    }

    /// A leader's append of one record per content, in its current epoch (assigned before).
    /// Returns the base offset.
    pub fn append_leader(&mut self, epoch: LeaderEpoch, contents: &[u64]) -> Offset {
        assert_eq!(self.latest_epoch(), Some(epoch), "leader append at epoch {epoch} without assign_epoch");
        let base = self.written_end();
        for &content in contents {
            self.batches.push(Batch { offset: self.written_end(), epoch, content });
        }
        base
    }

    /// `Log::append_replicated`: the batches must start at the written end, be contiguous and
    /// never go back in epoch. `Err` is the engine's `NotContiguous` / `EpochRegression`, the
    /// world's fault (a stale or foreign response), not ours.
    pub fn append_replicated(&mut self, records: &[Batch]) -> Result<(), ReplicatedAppendError> {
        let mut latest = self.latest_epoch();
        for (expected, b) in (self.written_end()..).zip(records) {
            if b.offset != expected {
                return Err(ReplicatedAppendError::NotContiguous);
            }
            if latest.is_some_and(|l| b.epoch < l) {
                return Err(ReplicatedAppendError::EpochRegression);
            }
            latest = Some(b.epoch);
        }
        for b in records {
            if self.latest_epoch() != Some(b.epoch) {
                self.push_epoch(b.epoch, b.offset);
            }
            self.batches.push(*b);
        }
        Ok(())
    }

    pub fn truncate_to(&mut self, to: Offset) {
        assert!(to >= self.start && to <= self.written_end(), "truncate to {to} outside {}..{}", self.start, {
            self.written_end()
        });
        self.batches.truncate((to - self.start) as usize);
        self.epochs.retain(|&(_, s)| s < to);
        self.durable_end = self.durable_end.min(to);
        for target in self.syncs.values_mut() {
            *target = (*target).min(to);
        }
    }

    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) {
        self.batches.clear();
        self.epochs.clear();
        self.start = offset;
        // The engine recreates the log directory and syncs it before answering.
        self.durable_end = offset;
        self.syncs.clear();
    }

    /// Starts an fsync of everything written so far.
    pub fn start_sync(&mut self) -> u64 {
        self.next_ticket += 1;
        self.syncs.insert(self.next_ticket, self.written_end());
        self.next_ticket
    }

    /// A blocking fsync of everything written (outstanding tickets still complete, harmlessly).
    pub fn sync_now(&mut self) {
        self.durable_end = self.written_end();
    }

    pub fn has_sync_pending(&self) -> bool {
        !self.syncs.is_empty()
    }

    /// Returns whether the durable end moved.
    pub fn complete_sync(&mut self, ticket: u64) -> bool {
        let Some(target) = self.syncs.remove(&ticket) else { return false };
        if target > self.durable_end {
            self.durable_end = target;
            true
        } else {
            false
        }
    }

    /// `kill -9`: outstanding fsyncs are forgotten (their completions never arrive), the written
    /// data stays in the page cache.
    pub fn crash_process(&mut self) {
        self.syncs.clear();
    }

    /// Power loss: only durable data remains, epochs that started past it go with it.
    pub fn crash_power(&mut self) {
        self.syncs.clear();
        let durable = self.durable_end;
        self.batches.truncate((durable - self.start) as usize);
        self.epochs.retain(|&(_, s)| s < durable);
    }

    /// Design 14.4 (9): epochs strictly increase, every batch carries the epoch its history says,
    /// offsets are dense, the durable end is within the log. `Err` names the first problem.
    pub fn check_consistent(&self) -> Result<(), String> {
        for w in self.epochs.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!("epoch history not increasing: {:?}", self.epochs));
            }
        }
        if !(self.start..=self.written_end()).contains(&self.durable_end) {
            return Err(format!("durable end {} outside {}..={}", self.durable_end, self.start, self.written_end()));
        }
        for (i, b) in self.batches.iter().enumerate() {
            if b.offset != self.start + i as Offset {
                return Err(format!("batch {b:?} at position {i} of a log starting at {}", self.start));
            }
            let covering = self.epochs.partition_point(|&(_, s)| s <= b.offset);
            let history = covering.checked_sub(1).map(|i| self.epochs[i].0);
            if history != Some(b.epoch) {
                return Err(format!("batch {b:?} but the epoch history says {history:?}: {:?}", self.epochs));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicatedAppendError {
    NotContiguous,
    EpochRegression,
}

/// The rules see the written end: on a leader that is what they count (design 7.2); a follower's
/// driver only consults them when nothing is unsynced (see `node.rs`), so there it is also the
/// durable end it acknowledges.
impl LogView for Disk {
    fn log_start(&self) -> Offset {
        self.start
    }

    fn log_end(&self) -> Offset {
        self.written_end()
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|&(e, _)| e)
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        crate::partition_replica::end_offset_for(&self.epochs, epoch, self.written_end())
    }

    fn first_epoch(&self) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_loss_keeps_only_what_an_fsync_completed() {
        let mut d = Disk::default();
        d.assign_epoch(1);
        d.append_leader(1, &[10, 11]);
        let first = d.start_sync();
        d.append_leader(1, &[12]);
        assert!(d.complete_sync(first));
        assert_eq!((d.written_end(), d.durable_end()), (3, 2));
        let mut process = d.clone();
        process.crash_process();
        assert_eq!(process.written_end(), 3, "kill -9 keeps the page cache");
        d.crash_power();
        assert_eq!(d.written_end(), 2);
        d.check_consistent().unwrap();
    }

    #[test]
    fn truncation_caps_outstanding_fsyncs() {
        let mut d = Disk::default();
        d.append_replicated(&[Batch { offset: 0, epoch: 1, content: 1 }, Batch { offset: 1, epoch: 2, content: 2 }])
            .unwrap();
        let ticket = d.start_sync();
        d.truncate_to(1);
        d.append_replicated(&[Batch { offset: 1, epoch: 3, content: 3 }]).unwrap();
        d.complete_sync(ticket);
        assert_eq!(d.durable_end(), 1, "the rewritten batch was not part of the fsync");
        assert_eq!(d.epochs(), &[(1, 0), (3, 1)]);
        assert_eq!(d.append_replicated(&[Batch { offset: 2, epoch: 2, content: 4 }]), {
            Err(ReplicatedAppendError::EpochRegression)
        });
        assert_eq!(d.append_replicated(&[Batch { offset: 5, epoch: 3, content: 4 }]), {
            Err(ReplicatedAppendError::NotContiguous)
        });
        d.check_consistent().unwrap();
    }
}
