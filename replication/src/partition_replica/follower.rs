//! A follower replica's fetch state machine (design 7.3, Kafka's
//! `AbstractFetcherThread` for one partition).
//!
//! ```text
//!   new -> Truncating --epoch answer--> [Truncate] -> Fetching --records--> [Append] -> Fetching
//!            ^    | incomplete: ask again                 |  |
//!            +----+<------- diverging epoch --------------+  +-- OFFSET_OUT_OF_RANGE --> OutOfRange
//!                                         OutOfRange --ListOffsets answer--> [Truncate] or Fetching
//!   FENCED_LEADER_EPOCH anywhere -> AwaitingMetadata (until a new FollowerState)
//! ```
//!
//! Decisions:
//! - **Always truncate first** on a new leader epoch, with OffsetForLeaderEpoch
//!   (one round trip per leadership change), even though Fetch v12+ could
//!   detect divergence alone: rejoining stays explicit and testable. A log
//!   with no epoch history truncates to its HW instead (Kafka's
//!   `truncateToHighWatermark`).
//! - **One thing in flight per partition** ([`InFlight`]): a request, a local
//!   truncation or an append. The next fetch offset depends on the previous
//!   response, and a truncation must not race an append.
//! - **Stale responses are ignored**: a response counts only if it answers
//!   the request in flight, in the same phase (Kafka's `processFetchRequest`
//!   compares the fetch offset). A response to a previous `FollowerState`
//!   (older leader epoch) never matches.
//! - **Out of range** asks the leader for its log start and end (ListOffsets
//!   earliest/latest, Kafka's `fetchOffsetAndTruncate`) in a phase of its own:
//!   a Fetch error response carries neither reliably.
//! - **Local actions report back**: after executing `Truncate`/`Append` the
//!   driver calls `on_truncated`/`on_appended`, and the next fetch's
//!   `last_fetched_epoch` is read from the log then, not guessed before.

use super::truncation::{truncation_offset, EpochEndOffset};
use super::{error_code, LogView, REPLICA_FETCH_BACKOFF_MS};
use crate::types::{BrokerId, LeaderEpoch, Offset};

/// Where a follower is in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchPhase {
    /// Find where our log diverges from the leader's.
    Truncating,
    /// Fetch from `offset`, sending `last_fetched_epoch` for the leader's check.
    Fetching { offset: Offset, last_fetched_epoch: Option<LeaderEpoch> },
    /// The leader answered OFFSET_OUT_OF_RANGE at `offset`: ask it for its
    /// log start and end.
    OutOfRange { offset: Offset },
    /// The leader says our leader epoch is old: wait for metadata (a new
    /// `FollowerState`). Also the state of a partition with no leader.
    AwaitingMetadata,
}

/// OffsetForLeaderEpoch for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochQuery {
    pub current_leader_epoch: LeaderEpoch,
    /// Our latest epoch: where did the leader's log end for it?
    pub leader_epoch: LeaderEpoch,
}

/// A Fetch partition entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchQuery {
    pub fetch_offset: Offset,
    /// `None` is sent as -1.
    pub last_fetched_epoch: Option<LeaderEpoch>,
    pub current_leader_epoch: LeaderEpoch,
    pub log_start: Offset,
}

/// ListOffsets earliest and latest, as a replica (the leader answers with its
/// log start and its written end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderOffsetsQuery {
    pub current_leader_epoch: LeaderEpoch,
}

/// The leader's answer to a [`LeaderOffsetsQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderOffsets {
    pub log_start: Offset,
    pub log_end: Offset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerRequest {
    Epoch(EpochQuery),
    Fetch(FetchQuery),
    LeaderOffsets(LeaderOffsetsQuery),
}

/// What the partition is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InFlight {
    Request(FollowerRequest),
    /// The driver is truncating the log to `to`; then `Fetching`, or
    /// `Truncating` again if the truncation was not `complete`.
    Truncate {
        to: Offset,
        complete: bool,
    },
    /// The driver is appending a response's records at `expected_base`.
    Append {
        expected_base: Offset,
        leader_hw: Offset,
    },
}

/// A Fetch response's partition entry, as far as the rules read it. The
/// driver keeps the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    pub error: i16,
    pub high_watermark: Offset,
    /// Present only if the wire's `DivergingEpoch.epoch >= 0`.
    pub diverging_epoch: Option<EpochEndOffset>,
    pub has_records: bool,
}

/// What the driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerAction {
    /// Nothing to execute; ask for the next request.
    Continue,
    /// The response did not answer the request in flight: drop it.
    Ignored,
    /// `Log::truncate_to(to)`, then `on_truncated`.
    Truncate { to: Offset },
    /// `Log::truncate_fully_and_start_at(offset)`, then `on_truncated`.
    TruncateFullyAndStartAt { offset: Offset },
    /// `Log::append_replicated(records)` (they must start at `expected_base`),
    /// then `on_appended` or `on_append_rejected`.
    Append { expected_base: Offset },
    /// Send nothing for this partition before `until_ms`.
    Backoff { until_ms: u64 },
    /// Stop fetching until new metadata replaces this state.
    AwaitMetadata,
}

/// The next step of a `Truncating` partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TruncatingStep {
    /// Send this OffsetForLeaderEpoch.
    Ask(EpochQuery),
    /// No epoch history to ask about: execute this truncation to our HW.
    Act(FollowerAction),
}

/// Why `append_replicated` refused a response's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendRejection {
    /// `NotContiguous`: our log moved since the request was built; refetch
    /// from the log end.
    NotContiguous,
    /// `EpochRegression` or a corrupt batch: the leader's data does not fit
    /// our log. Check divergence again, after a backoff.
    Invalid,
}

#[derive(Clone, Debug)]
pub struct FollowerState {
    leader: Option<BrokerId>,
    leader_epoch: LeaderEpoch,
    phase: FetchPhase,
    hw: Offset,
    in_flight: Option<InFlight>,
    backoff_until_ms: Option<u64>,
}

impl FollowerState {
    /// Becoming a follower in `leader_epoch` (design 7.6). `leader: None`
    /// parks the partition until a leader is elected. `hw` is the HW this
    /// replica knows (its log start if none).
    pub fn new(leader: Option<BrokerId>, leader_epoch: LeaderEpoch, hw: Offset) -> FollowerState {
        let phase = if leader.is_some() { FetchPhase::Truncating } else { FetchPhase::AwaitingMetadata };
        FollowerState { leader, leader_epoch, phase, hw, in_flight: None, backoff_until_ms: None }
    }

    pub fn leader(&self) -> Option<BrokerId> {
        self.leader
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn phase(&self) -> FetchPhase {
        self.phase
    }

    /// The HW learnt from the leader, never past our acknowledged end.
    pub fn hw(&self) -> Offset {
        self.hw
    }

    pub fn in_flight(&self) -> Option<InFlight> {
        self.in_flight
    }

    /// Nothing in flight and no backoff running.
    fn ready(&mut self, now_ms: u64) -> bool {
        if self.backoff_until_ms.is_some_and(|until| now_ms < until) {
            return false;
        }
        self.backoff_until_ms = None;
        self.in_flight.is_none()
    }

    fn send(&mut self, request: FollowerRequest) {
        self.in_flight = Some(InFlight::Request(request));
    }

    fn backoff(&mut self, now_ms: u64) -> FollowerAction {
        let until_ms = now_ms + REPLICA_FETCH_BACKOFF_MS;
        self.backoff_until_ms = Some(until_ms);
        FollowerAction::Backoff { until_ms }
    }

    fn await_metadata(&mut self) -> FollowerAction {
        self.phase = FetchPhase::AwaitingMetadata;
        FollowerAction::AwaitMetadata
    }

    /// Start cutting the log back to `to`. Below our log start that is a full
    /// truncation (Kafka's `UnifiedLog.truncateTo` does the same inside).
    /// Truncating to our own end is a no-op: no action, straight on (the
    /// usual case when a follower was in sync before the leader changed) —
    /// unless the epoch history has an entry starting there: an epoch this
    /// replica assigned as leader and never appended to. Kept, it would be
    /// sent as `last_fetched_epoch` forever and every fetch would come back
    /// diverging at our own end; the driver's truncation cuts it, as Kafka's
    /// `truncateTo` always cuts the epoch cache at the log end.
    fn truncate(&mut self, log: &impl LogView, to: Offset, complete: bool) -> FollowerAction {
        self.in_flight = Some(InFlight::Truncate { to, complete });
        let empty_epoch_at_end = latest_epoch_start(log).is_some_and(|start| start >= to);
        if to == log.log_end() && to >= log.log_start() && !empty_epoch_at_end {
            self.on_truncated(log);
            FollowerAction::Continue
        } else if to < log.log_start() {
            FollowerAction::TruncateFullyAndStartAt { offset: to }
        } else {
            FollowerAction::Truncate { to }
        }
    }

    /// Errors every response kind maps the same way: our leader epoch is old
    /// → wait for metadata; anything else → back off and retry.
    fn on_error(&mut self, error: i16, now_ms: u64) -> FollowerAction {
        assert_ne!(error, error_code::NONE, "NONE is not an error");
        if error == error_code::FENCED_LEADER_EPOCH {
            self.await_metadata()
        } else {
            // UNKNOWN_LEADER_EPOCH (the leader's metadata is behind ours),
            // NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION
            // and whatever else: transient until metadata says otherwise.
            self.backoff(now_ms)
        }
    }

    /// The next step of a `Truncating` partition, if it is ready.
    pub fn epoch_query(&mut self, log: &impl LogView, now_ms: u64) -> Option<TruncatingStep> {
        if self.phase != FetchPhase::Truncating || !self.ready(now_ms) {
            return None;
        }
        let Some(leader_epoch) = log.latest_epoch() else {
            let to = self.hw.min(log.log_end());
            return Some(TruncatingStep::Act(self.truncate(log, to, true)));
        };
        let query = EpochQuery { current_leader_epoch: self.leader_epoch, leader_epoch };
        self.send(FollowerRequest::Epoch(query));
        Some(TruncatingStep::Ask(query))
    }

    /// The next Fetch entry of a `Fetching` partition, if it is ready.
    pub fn fetch_query(&mut self, log: &impl LogView, now_ms: u64) -> Option<FetchQuery> {
        let FetchPhase::Fetching { offset, last_fetched_epoch } = self.phase else { return None };
        if !self.ready(now_ms) {
            return None;
        }
        assert_eq!(log.log_end(), offset, "follower log end moved under the fetch state");
        let query = FetchQuery {
            fetch_offset: offset,
            last_fetched_epoch,
            current_leader_epoch: self.leader_epoch,
            log_start: log.log_start(),
        };
        self.send(FollowerRequest::Fetch(query));
        Some(query)
    }

    /// The next ListOffsets of an `OutOfRange` partition, if it is ready.
    pub fn leader_offsets_query(&mut self, now_ms: u64) -> Option<LeaderOffsetsQuery> {
        if !matches!(self.phase, FetchPhase::OutOfRange { .. }) || !self.ready(now_ms) {
            return None;
        }
        let query = LeaderOffsetsQuery { current_leader_epoch: self.leader_epoch };
        self.send(FollowerRequest::LeaderOffsets(query));
        Some(query)
    }

    /// Clears `request` if it is the one in flight; false if it is not.
    fn answered(&mut self, request: FollowerRequest) -> bool {
        if self.in_flight != Some(InFlight::Request(request)) {
            return false;
        }
        self.in_flight = None;
        true
    }

    /// The leader's OffsetForLeaderEpoch answer (`Err`: its error code).
    pub fn on_epoch_response(
        &mut self,
        query: &EpochQuery,
        response: Result<EpochEndOffset, i16>,
        log: &impl LogView,
        now_ms: u64,
    ) -> FollowerAction {
        if self.phase != FetchPhase::Truncating || !self.answered(FollowerRequest::Epoch(*query)) {
            return FollowerAction::Ignored;
        }
        match response {
            Err(error) => self.on_error(error, now_ms),
            // A leader answers with an epoch at most the one asked; a larger
            // one would have us ask the same question forever.
            Ok(answer) if answer.epoch > query.leader_epoch => self.backoff(now_ms),
            Ok(answer) => {
                let t = truncation_offset(log, self.hw, answer);
                self.truncate(log, t.offset, t.complete)
            }
        }
    }

    /// The leader's Fetch answer for this partition.
    pub fn on_fetch_response(
        &mut self,
        query: &FetchQuery,
        response: &FetchResponse,
        log: &impl LogView,
        now_ms: u64,
    ) -> FollowerAction {
        let FetchPhase::Fetching { offset, .. } = self.phase else { return FollowerAction::Ignored };
        if offset != query.fetch_offset || !self.answered(FollowerRequest::Fetch(*query)) {
            return FollowerAction::Ignored;
        }
        match response.error {
            error_code::NONE => {
                if let Some(diverging) = response.diverging_epoch {
                    // Kafka does not append (nor take the HW) from a diverging
                    // response: the next fetch after truncating brings both.
                    self.phase = FetchPhase::Truncating;
                    let t = truncation_offset(log, self.hw, diverging);
                    self.truncate(log, t.offset, t.complete)
                } else if response.has_records {
                    self.in_flight =
                        Some(InFlight::Append { expected_base: offset, leader_hw: response.high_watermark });
                    FollowerAction::Append { expected_base: offset }
                } else {
                    self.hw = response.high_watermark.min(offset);
                    FollowerAction::Continue
                }
            }
            error_code::OFFSET_OUT_OF_RANGE => {
                self.phase = FetchPhase::OutOfRange { offset };
                FollowerAction::Continue
            }
            error => self.on_error(error, now_ms),
        }
    }

    /// The leader's log start and end after OFFSET_OUT_OF_RANGE (Kafka's
    /// `fetchOffsetAndTruncate`): if we are past its end (an unclean history),
    /// cut back to it; if we end before its start (retention passed us), drop
    /// everything and start at its start; otherwise fetch from our end again.
    pub fn on_leader_offsets(
        &mut self,
        query: &LeaderOffsetsQuery,
        response: Result<LeaderOffsets, i16>,
        log: &impl LogView,
        now_ms: u64,
    ) -> FollowerAction {
        if !matches!(self.phase, FetchPhase::OutOfRange { .. })
            || !self.answered(FollowerRequest::LeaderOffsets(*query))
        {
            return FollowerAction::Ignored;
        }
        let leader = match response {
            Err(error) => return self.on_error(error, now_ms),
            Ok(leader) => leader,
        };
        let our_end = log.log_end();
        if leader.log_end < our_end {
            self.truncate(log, leader.log_end, true)
        } else if leader.log_start > our_end {
            self.in_flight = Some(InFlight::Truncate { to: leader.log_start, complete: true });
            FollowerAction::TruncateFullyAndStartAt { offset: leader.log_start }
        } else {
            self.phase = FetchPhase::Fetching { offset: our_end, last_fetched_epoch: log.latest_epoch() };
            FollowerAction::Continue
        }
    }

    /// A request in flight failed without an answer (connection lost,
    /// timeout): retry it after a backoff.
    pub fn on_request_failed(&mut self, request: &FollowerRequest, now_ms: u64) -> FollowerAction {
        if !self.answered(*request) {
            return FollowerAction::Ignored;
        }
        self.backoff(now_ms)
    }

    /// The driver executed the truncation this state asked for.
    pub fn on_truncated(&mut self, log: &impl LogView) {
        let Some(InFlight::Truncate { to, complete }) = self.in_flight else {
            panic!("on_truncated without a truncation in flight: {:?}", self.in_flight);
        };
        assert_eq!(log.log_end(), to, "truncation to {to} left the log ending elsewhere");
        self.in_flight = None;
        self.hw = self.hw.min(to).max(log.log_start());
        self.phase = if complete {
            FetchPhase::Fetching { offset: to, last_fetched_epoch: log.latest_epoch() }
        } else {
            FetchPhase::Truncating
        };
    }

    /// The driver appended the response's records: our log now ends at `end`
    /// (written, or durable with `acks.all.fsync`) with `last_epoch` as the
    /// epoch of its last batch.
    pub fn on_appended(&mut self, end: Offset, last_epoch: LeaderEpoch) {
        let Some(InFlight::Append { expected_base, leader_hw }) = self.in_flight else {
            panic!("on_appended without an append in flight: {:?}", self.in_flight);
        };
        assert!(end > expected_base, "append at {expected_base} ended at {end}");
        self.in_flight = None;
        self.phase = FetchPhase::Fetching { offset: end, last_fetched_epoch: Some(last_epoch) };
        self.hw = leader_hw.min(end);
    }

    /// The driver's append refused the records.
    pub fn on_append_rejected(
        &mut self,
        rejection: AppendRejection,
        log: &impl LogView,
        now_ms: u64,
    ) -> FollowerAction {
        let Some(InFlight::Append { .. }) = self.in_flight else {
            panic!("on_append_rejected without an append in flight: {:?}", self.in_flight);
        };
        self.in_flight = None;
        match rejection {
            AppendRejection::NotContiguous => {
                self.phase = FetchPhase::Fetching { offset: log.log_end(), last_fetched_epoch: log.latest_epoch() };
                FollowerAction::Continue
            }
            AppendRejection::Invalid => {
                self.phase = FetchPhase::Truncating;
                self.backoff(now_ms)
            }
        }
    }
}

/// Where the latest epoch of the history starts: where the largest epoch below
/// it ends, or the first entry's start if it is the only one.
fn latest_epoch_start(log: &impl LogView) -> Option<Offset> {
    let latest = log.latest_epoch()?;
    match log.first_epoch() {
        Some((first, start)) if first == latest => Some(start),
        _ => log.end_offset_for_epoch(latest - 1).map(|(_, end)| end),
    }
}
