//! Consumer lag and its status, in the spirit of LinkedIn's Burrow.
//!
//! Lag of a partition = log-end offset (high watermark) minus the group's
//! committed offset. A single number says little: a busy consumer is always
//! a little behind. So, like Burrow, each partition keeps a sliding window
//! of its last [`WINDOW`] commits, each with the log end seen when it was
//! made, and the status reads the trend:
//!
//! * **OK**: some commit in the window had zero lag, or lag is not growing.
//! * **WARNING**: the group keeps committing, but lag grew at every commit
//!   of a full window (falling behind).
//! * **STALL**: the group keeps committing the same offset while lag is not
//!   zero (stuck on a record).
//! * **ERROR**: the group stopped committing while lag is not zero: no commit
//!   for longer than the window spanned (or than [`STOP_AFTER_MS`] with a
//!   short window) yet the log moved on.
//! * **STOPPED**: the group has no members.
//!
//! The group's status is its worst partition's.

use serde::Serialize;
use std::collections::VecDeque;

/// Commits remembered per partition (Burrow's default interval count).
pub const WINDOW: usize = 10;
/// With fewer than two commits in the window, "stopped committing" means no
/// commit for this long.
pub const STOP_AFTER_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitSample {
    pub offset: i64,
    /// Log end offset when the commit was made.
    pub log_end: i64,
    pub ts_ms: i64,
}

impl CommitSample {
    fn lag(&self) -> i64 {
        (self.log_end - self.offset).max(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LagStatus {
    Ok,
    Warning,
    Stall,
    Error,
    Stopped,
}

impl LagStatus {
    pub fn name(self) -> &'static str {
        match self {
            LagStatus::Ok => "OK",
            LagStatus::Warning => "WARNING",
            LagStatus::Stall => "STALL",
            LagStatus::Error => "ERROR",
            LagStatus::Stopped => "STOPPED",
        }
    }
}

/// Appends a commit to a partition's window.
pub fn push_sample(window: &mut VecDeque<CommitSample>, s: CommitSample) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(s);
}

/// Status of one partition from its commit window, its current lag and
/// whether the group has members.
pub fn evaluate(window: &VecDeque<CommitSample>, current_lag: i64, has_members: bool, now_ms: i64) -> LagStatus {
    if !has_members {
        return LagStatus::Stopped;
    }
    if current_lag <= 0 {
        return LagStatus::Ok;
    }
    let Some(last) = window.back() else {
        // Members but no commit yet: nothing to judge.
        return LagStatus::Ok;
    };
    // Stopped committing: silent for longer than the window spanned, and
    // never less than STOP_AFTER_MS, so a fast committer's short pause is
    // not an error.
    let span = window.front().map_or(0, |f| last.ts_ms - f.ts_ms);
    if now_ms - last.ts_ms > span.max(STOP_AFTER_MS) {
        return LagStatus::Error;
    }
    if window.iter().any(|s| s.lag() == 0) {
        return LagStatus::Ok;
    }
    if window.len() >= 2 && window.iter().all(|s| s.offset == last.offset) {
        return LagStatus::Stall;
    }
    if window.len() == WINDOW && window.iter().zip(window.iter().skip(1)).all(|(a, b)| b.lag() > a.lag()) {
        return LagStatus::Warning;
    }
    LagStatus::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(samples: &[(i64, i64, i64)]) -> VecDeque<CommitSample> {
        let mut w = VecDeque::new();
        for &(offset, log_end, ts_ms) in samples {
            push_sample(&mut w, CommitSample { offset, log_end, ts_ms });
        }
        w
    }

    #[test]
    fn group_without_members_is_stopped() {
        assert_eq!(evaluate(&win(&[(5, 10, 0)]), 5, false, 1), LagStatus::Stopped);
    }

    #[test]
    fn caught_up_group_is_ok() {
        assert_eq!(evaluate(&win(&[(5, 10, 0), (10, 10, 1000)]), 0, true, 2000), LagStatus::Ok);
        assert_eq!(evaluate(&win(&[(5, 10, 0), (10, 10, 1000), (12, 20, 2000)]), 8, true, 2500), LagStatus::Ok);
    }

    #[test]
    fn lag_growing_at_every_commit_is_warning() {
        let s: Vec<_> = (0..WINDOW as i64).map(|i| (i * 10, i * 20 + 5, i * 1000)).collect();
        assert_eq!(evaluate(&win(&s), 200, true, WINDOW as i64 * 1000), LagStatus::Warning);
    }

    #[test]
    fn committing_the_same_offset_with_lag_is_stall() {
        let s: Vec<_> = (0..5).map(|i| (7, 50 + i, i * 1000)).collect();
        assert_eq!(evaluate(&win(&s), 50, true, 5000), LagStatus::Stall);
    }

    #[test]
    fn no_commit_for_longer_than_the_window_with_lag_is_error() {
        let s: Vec<_> = (0..5).map(|i| (i * 10, i * 10 + 3, i * 1000)).collect();
        assert_eq!(evaluate(&win(&s), 3, true, 4000 + 3000), LagStatus::Ok, "within the window span");
        assert_eq!(evaluate(&win(&s), 3, true, 4000 + STOP_AFTER_MS + 1), LagStatus::Error);
        assert_eq!(evaluate(&win(&[(1, 5, 0)]), 4, true, STOP_AFTER_MS + 1), LagStatus::Error);
    }

    #[test]
    fn window_keeps_only_the_newest_commits() {
        let mut w = VecDeque::new();
        for i in 0..25 {
            push_sample(&mut w, CommitSample { offset: i, log_end: i, ts_ms: i });
        }
        assert_eq!(w.len(), WINDOW);
        assert_eq!(w.front().unwrap().offset, 15);
    }
}
