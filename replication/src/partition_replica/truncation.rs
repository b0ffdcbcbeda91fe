//! Where a follower's log diverges from its leader's (KIP-101, KIP-279,
//! KIP-320), as pure functions of a [`LogView`] and the other side's answer.
//!
//! Both sides ask the same question of their own log, "where did epoch E
//! end?" ([`epoch_end_offset`]): the leader to answer OffsetForLeaderEpoch
//! ([`answer_epoch_query`]) and to check a fetch's `last_fetched_epoch`
//! ([`check_fetch_position`], Kafka's `Partition.readRecords`); the follower to
//! turn the leader's answer into a truncation offset ([`truncation_offset`],
//! Kafka's `AbstractFetcherThread.getOffsetTruncationState`, design 7.4).

use super::LogView;
use crate::types::{LeaderEpoch, Offset, UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// Where an epoch ended, as OffsetForLeaderEpoch's `EpochEndOffset` and
/// Fetch's `DivergingEpoch` carry it: `UNDEFINED_EPOCH` / `UNDEFINED_OFFSET`
/// (-1) when unknown, exactly as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: LeaderEpoch,
    pub end_offset: Offset,
}

impl EpochEndOffset {
    pub const UNDEFINED: EpochEndOffset = EpochEndOffset { epoch: UNDEFINED_EPOCH, end_offset: UNDEFINED_OFFSET };
}

/// Kafka's `LeaderEpochFileCache.endOffsetFor` over a [`LogView`]: the largest
/// epoch not above `epoch` and where it ended.
///
/// Two cases differ from the engine's `end_offset_for_epoch`, and both follow
/// Kafka on purpose:
/// - `epoch` below every known epoch (older epochs removed by retention, or
///   data written before epochs were recorded): `(epoch, start of the first
///   known epoch)`, not `None`. A follower whose last epoch is older than all
///   of ours must still drop what it holds past our first epoch's start: it
///   was written in an epoch we never had.
/// - `UNDEFINED_EPOCH` asked: `None`.
///
/// Above the latest epoch we keep the engine's answer `(latest, log end)`
/// where Kafka answers "undefined" (its comment: never hit, since a leader's
/// latest epoch is its current one); ours makes the asker truncate to our end,
/// which is what the undefined answer leads to after one more round trip.
pub fn epoch_end_offset(log: &impl LogView, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
    if epoch == UNDEFINED_EPOCH {
        return None;
    }
    log.end_offset_for_epoch(epoch).or_else(|| log.first_epoch().map(|(_, start)| (epoch, start)))
}

/// The leader's answer to OffsetForLeaderEpoch for `epoch` (after the
/// current-leader-epoch check, which the driver does).
pub fn answer_epoch_query(log: &impl LogView, epoch: LeaderEpoch) -> EpochEndOffset {
    epoch_end_offset(log, epoch)
        .map_or(EpochEndOffset::UNDEFINED, |(epoch, end_offset)| EpochEndOffset { epoch, end_offset })
}

/// Where a follower truncates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub offset: Offset,
    /// `false`: the leader named an epoch we do not have; after truncating,
    /// ask again with our new latest epoch.
    pub complete: bool,
}

/// Design 7.4, Kafka's `getOffsetTruncationState`: given the leader's answer
/// for our latest epoch (or a fetch's diverging epoch), the offset to cut our
/// log back to.
///
/// `follower_hw` is used only when the leader knows no end for the epoch: our
/// HW is the last offset we know is committed, the same fallback as Kafka's
/// `truncateToHighWatermark`.
pub fn truncation_offset(log: &impl LogView, follower_hw: Offset, leader: EpochEndOffset) -> Truncation {
    let log_end = log.log_end();
    if leader.end_offset == UNDEFINED_OFFSET {
        return Truncation { offset: follower_hw.min(log_end), complete: true };
    }
    if leader.epoch == UNDEFINED_EPOCH {
        return Truncation { offset: leader.end_offset.min(log_end), complete: true };
    }
    match epoch_end_offset(log, leader.epoch) {
        // We never had the leader's epoch: everything we hold past the end of
        // our largest epoch below it is suspect, but where the leader's log
        // and ours agree below that is not known yet. Cut there and ask again.
        Some((ours, our_end)) if ours != leader.epoch => Truncation { offset: our_end.min(log_end), complete: false },
        Some((_, our_end)) => Truncation { offset: our_end.min(leader.end_offset).min(log_end), complete: true },
        None => Truncation { offset: leader.end_offset.min(log_end), complete: true },
    }
}

/// What the leader does with a follower's fetch position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchPosition {
    /// Read from `fetch_offset`.
    Read,
    /// Answer with this `diverging_epoch` and no records: the follower's log
    /// differs from ours before `fetch_offset`.
    Diverging(EpochEndOffset),
    /// Answer OFFSET_OUT_OF_RANGE.
    OutOfRange,
}

/// Kafka's `Partition.readRecords` check of a fetch position, then the range
/// check `Log.read` would do. `last_fetched_epoch` is `None` when the request
/// carried -1 (the follower's log has no epochs) or predates Fetch v12.
pub fn check_fetch_position(
    log: &impl LogView,
    fetch_offset: Offset,
    last_fetched_epoch: Option<LeaderEpoch>,
) -> FetchPosition {
    let log_start = log.log_start();
    if let Some(fetched_epoch) = last_fetched_epoch {
        let Some((epoch, end_offset)) = epoch_end_offset(log, fetched_epoch) else {
            // Kafka: "Could not determine the end offset of the last fetched
            // epoch" is OFFSET_OUT_OF_RANGE; the follower then compares ends.
            return FetchPosition::OutOfRange;
        };
        // Below our start nothing can be compared, diverging or not.
        if fetch_offset < log_start {
            return FetchPosition::OutOfRange;
        }
        if epoch < fetched_epoch || end_offset < fetch_offset {
            return FetchPosition::Diverging(EpochEndOffset { epoch, end_offset });
        }
    }
    if fetch_offset < log_start || fetch_offset > log.log_end() {
        return FetchPosition::OutOfRange;
    }
    FetchPosition::Read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition_replica::model::ModelLog;

    /// Epochs 0@0, 2@100, 5@250, end 300 (the engine's `epoch.rs` fixture).
    fn log() -> ModelLog {
        ModelLog::from_runs(0, &[(0, 100), (2, 150), (5, 50)])
    }

    #[test]
    fn epoch_end_offset_follows_kafka_including_below_the_first_epoch() {
        let log = log();
        let cases = [
            (0, Some((0, 100))),
            (1, Some((0, 100))),
            (2, Some((2, 250))),
            (5, Some((5, 300))),
            (9, Some((5, 300))),
            (UNDEFINED_EPOCH, None),
        ];
        for (asked, want) in cases {
            assert_eq!(epoch_end_offset(&log, asked), want, "asked {asked}");
        }
        // Epochs below the first known one end where the first one starts.
        let late = ModelLog::from_runs(10, &[(3, 20)]);
        assert_eq!(epoch_end_offset(&late, 2), Some((2, 10)));
        assert_eq!(answer_epoch_query(&late, 2), EpochEndOffset { epoch: 2, end_offset: 10 });
        // No epochs at all: nothing is known.
        let bare = ModelLog::default();
        assert_eq!(epoch_end_offset(&bare, 4), None);
        assert_eq!(answer_epoch_query(&bare, 4), EpochEndOffset::UNDEFINED);
    }

    #[test]
    fn truncation_offset_covers_every_case_of_the_rule() {
        let log = log(); // end 300, latest epoch 5
        let hw = 120;
        let e = |epoch, end_offset| EpochEndOffset { epoch, end_offset };
        let cases = [
            // Leader knows no end: back to our HW.
            ("undefined end", EpochEndOffset::UNDEFINED, 120, true),
            // Leader without epochs in its answer: its end, capped by ours.
            ("undefined epoch", e(UNDEFINED_EPOCH, 280), 280, true),
            ("undefined epoch, leader longer", e(UNDEFINED_EPOCH, 400), 300, true),
            // Same epoch known to both: the smaller end wins.
            ("same epoch, leader shorter", e(2, 200), 200, true),
            ("same epoch, ours shorter", e(2, 260), 250, true),
            ("latest epoch, follower ahead", e(5, 280), 280, true),
            ("latest epoch, leader ahead", e(5, 350), 300, true),
            // Leader's epoch unknown to us: cut at the end of our largest
            // epoch below it and ask again.
            ("unknown epoch 4", e(4, 270), 250, false),
            ("unknown epoch 1", e(1, 90), 100, false),
        ];
        for (name, leader, offset, complete) in cases {
            assert_eq!(truncation_offset(&log, hw, leader), Truncation { offset, complete }, "{name}");
        }
        // All our epochs are above the leader's: Kafka's cache answers "your
        // epoch 3 ended where our first epoch starts", so everything goes.
        let late = ModelLog::from_runs(0, &[(7, 40)]);
        assert_eq!(truncation_offset(&late, 0, e(3, 25)), Truncation { offset: 0, complete: true });
        // We track no epochs at all: take the leader's end.
        let bare = ModelLog::from_runs(0, &[(1, 40)]).with_no_epochs();
        assert_eq!(truncation_offset(&bare, 0, e(3, 25)), Truncation { offset: 25, complete: true });
    }

    #[test]
    fn fetch_position_detects_divergence_like_read_records() {
        let log = log(); // start 0, end 300; 0@0, 2@100, 5@250
        let d = |epoch, end_offset| FetchPosition::Diverging(EpochEndOffset { epoch, end_offset });
        let cases = [
            ("no epoch, inside", 150, None, FetchPosition::Read),
            ("no epoch, at end", 300, None, FetchPosition::Read),
            ("no epoch, past end", 301, None, FetchPosition::OutOfRange),
            ("same history", 260, Some(5), FetchPosition::Read),
            ("caught up", 300, Some(5), FetchPosition::Read),
            ("end of epoch 2", 250, Some(2), FetchPosition::Read),
            // The follower holds epoch-2 data past where our epoch 2 ended.
            ("epoch 2 too long", 260, Some(2), d(2, 250)),
            // We never had epoch 3: our epoch 2 is the one to compare.
            ("epoch we never had", 240, Some(3), d(2, 250)),
            // Follower ahead of us in our latest epoch.
            ("ahead in latest epoch", 320, Some(5), d(5, 300)),
        ];
        for (name, offset, epoch, want) in cases {
            assert_eq!(check_fetch_position(&log, offset, epoch), want, "{name}");
        }
        let trimmed = ModelLog::from_runs(0, &[(0, 100), (2, 150), (5, 50)]).with_start(120);
        assert_eq!(check_fetch_position(&trimmed, 110, Some(2)), FetchPosition::OutOfRange, "below start");
        assert_eq!(check_fetch_position(&trimmed, 110, None), FetchPosition::OutOfRange, "below start, no epoch");
        let bare = ModelLog::from_runs(0, &[(1, 40)]).with_no_epochs();
        assert_eq!(check_fetch_position(&bare, 10, Some(1)), FetchPosition::OutOfRange, "no epoch history");
    }
}
