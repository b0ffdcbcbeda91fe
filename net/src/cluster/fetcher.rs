//! Follower fetchers (design 9): on each core, one task per source broker
//! pulls every partition this core follows from that broker, with Kafka's
//! own replication requests (Fetch with a replica id, OffsetForLeaderEpoch,
//! ListOffsets), and appends the leader's batches as they are: offsets,
//! epochs and CRCs kept, never re-encoded.
//!
//! The rules (what to ask, what a response means, when to truncate) are
//! `FollowerState`'s; this task only moves bytes and runs the log
//! operations it asks for. Each fetcher runs [`FETCH_SLOTS`] request loops,
//! each on its own connection (Kafka answers in order per connection, so a
//! long poll parked on one would hold back the other's answer). A
//! partition is in at most one request at a time (its follower state
//! refuses a second), so while one slot waits for a response or for its
//! appends, the other fetches the partitions that are ready.

use super::replica::{EngineView, Replica, Role};
use crate::api::str_bytes;
use crate::shard::{now_ms, Shard};
use bytes::Bytes;
use event_listener::Event;
use glommio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use spindle_engine::{AppendError, Durability, ReplicaAppendOptions};
use spindle_replication::partition_replica::{
    AppendRejection, EpochEndOffset, EpochQuery, FetchQuery, FetchResponse as FollowerFetchResponse, FollowerAction,
    FollowerState, LeaderOffsets, LeaderOffsetsQuery, TruncatingStep,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Request loops per fetcher (design 9: `REPLICA_FETCH_INFLIGHT_MAX`).
const FETCH_SLOTS: usize = 2;
/// Fetch v12: topics by name, `last_fetched_epoch` and diverging epochs.
const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;
const LIST_OFFSETS_VERSION: i16 = 4;
/// A fetch parks on the leader up to this long when there is nothing new.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: i32 = 10 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// A request is given up (and the connection dropped) after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before reconnecting to an unreachable leader.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// With nothing to send (every partition backing off or appending), look
/// again after this.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Largest response a fetcher reads.
const RESPONSE_MAX_BYTES: usize = 64 << 20;

pub struct Fetcher {
    source: i32,
    /// The replicas this fetcher serves, with the role generation they were
    /// added under: a newer generation means the role moved on.
    members: RefCell<Vec<(Rc<Replica>, u64)>>,
    wake: Event,
}

/// Adds a follower replica to this core's fetcher for `source`, starting
/// the fetcher if it is the first.
pub fn add(shard: &Rc<Shard>, source: i32, rep: Rc<Replica>) {
    let generation = rep.generation.get();
    let existing = shard.fetchers.borrow().get(&source).cloned();
    match existing {
        Some(f) => {
            f.members.borrow_mut().push((rep, generation));
            f.wake.notify(usize::MAX);
        }
        None => {
            // The member goes in before the task starts: it may run at once
            // and would stop on finding no partitions.
            let f = Rc::new(Fetcher { source, members: RefCell::new(vec![(rep, generation)]), wake: Event::new() });
            shard.fetchers.borrow_mut().insert(source, f.clone());
            for slot in 0..FETCH_SLOTS {
                glommio::spawn_local(run(shard.clone(), f.clone(), slot)).detach();
            }
        }
    }
}

/// Runs `f` on the replica's follower state if the role is still the one
/// this work started under.
fn with_follower<T>(rep: &Replica, generation: u64, f: impl FnOnce(&mut FollowerState) -> T) -> Option<T> {
    if rep.generation.get() != generation {
        return None;
    }
    match &mut *rep.role.borrow_mut() {
        Role::Follower(state) => Some(f(state)),
        Role::Leader(_) => None,
    }
}

/// A Kafka-protocol connection to the source broker's client listener.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        self.correlation = self.correlation.wrapping_add(1);
        super::controller_api::call_with_limit(
            &mut self.stream,
            key,
            version,
            self.correlation,
            req,
            REQUEST_TIMEOUT,
            RESPONSE_MAX_BYTES,
        )
        .await
    }
}

async fn connect(shard: &Shard, source: i32) -> Result<Conn, String> {
    let view = shard.snapshot().cluster.clone().ok_or("no metadata yet")?;
    let b = view.brokers.get(&source).ok_or_else(|| format!("broker {source} is not registered"))?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(b.host.as_str(), b.port))
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{}:{} does not resolve", b.host, b.port))?;
    let stream = super::transport::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    Ok(Conn { stream, correlation: 0 })
}

async fn run(shard: Rc<Shard>, f: Rc<Fetcher>, slot: usize) {
    let local = shard.config.node_id;
    tracing::debug!(source = f.source, core = shard.id, slot, "replica fetcher started");
    let mut conn: Option<Conn> = None;
    loop {
        if shard.is_stopping() {
            break;
        }
        f.members.borrow_mut().retain(|(r, g)| r.generation.get() == *g);
        if f.members.borrow().is_empty() {
            tracing::debug!(source = f.source, core = shard.id, "replica fetcher has no partitions left; stopping");
            let mut fetchers = shard.fetchers.borrow_mut();
            if fetchers.get(&f.source).is_some_and(|x| Rc::ptr_eq(x, &f)) {
                fetchers.remove(&f.source);
            }
            break;
        }
        if conn.is_none() {
            match connect(&shard, f.source).await {
                Ok(c) => {
                    tracing::debug!(source = f.source, core = shard.id, slot, "replica fetcher connected");
                    conn = Some(c)
                }
                Err(e) => {
                    tracing::debug!(source = f.source, error = %e, "replica fetcher cannot connect");
                    glommio::timer::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let members = f.members.borrow().clone();
        let sent = match round(&shard, local, &members, c).await {
            Ok(sent) => {
                // Appends done: partitions the other slot skipped may be
                // ready now.
                f.wake.notify(usize::MAX);
                sent
            }
            Err(e) => {
                tracing::info!(source = f.source, error = %e, "replica fetch failed; reconnecting");
                conn = None;
                glommio::timer::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
        };
        if !sent {
            let listener = f.wake.listen();
            let timer = glommio::timer::sleep(IDLE_POLL);
            futures::pin_mut!(timer);
            futures::future::select(listener, timer).await;
        }
    }
}

/// One round: epoch queries of truncating partitions, leader-offset
/// queries of out-of-range ones, then one fetch for the rest. Returns
/// whether anything was sent.
async fn round(shard: &Rc<Shard>, local: i32, members: &[(Rc<Replica>, u64)], c: &mut Conn) -> Result<bool, String> {
    let now = super::clock_ms();
    let mut sent = false;

    // Truncating: ask where our latest epoch ends on the leader.
    let mut asks: Vec<(Rc<Replica>, u64, EpochQuery)> = Vec::new();
    for (rep, g) in members {
        let step = with_follower(rep, *g, |s| s.epoch_query(&EngineView::follower(&rep.log), now)).flatten();
        match step {
            Some(TruncatingStep::Ask(q)) => asks.push((rep.clone(), *g, q)),
            Some(TruncatingStep::Act(action)) => execute(shard, rep, *g, action, None).await,
            None => {}
        }
    }
    if !asks.is_empty() {
        sent = true;
        let req = epoch_request(local, &asks);
        let resp: Result<OffsetForLeaderEpochResponse, String> =
            c.call(ApiKey::OffsetForLeaderEpoch, EPOCH_VERSION, &req).await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                for (rep, g, q) in &asks {
                    let req = spindle_replication::partition_replica::FollowerRequest::Epoch(*q);
                    with_follower(rep, *g, |s| s.on_request_failed(&req, super::clock_ms()));
                }
                return Err(e);
            }
        };
        for (rep, g, q) in &asks {
            let answer = resp
                .topics
                .iter()
                .filter(|t| t.topic.0.as_str() == rep.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition == rep.partition)
                .map(|p| {
                    if p.error_code != 0 {
                        Err(p.error_code)
                    } else {
                        Ok(EpochEndOffset { epoch: p.leader_epoch, end_offset: p.end_offset })
                    }
                })
                .unwrap_or(Err(spindle_replication::partition_replica::error_code::UNKNOWN_TOPIC_OR_PARTITION));
            let action = with_follower(rep, *g, |s| {
                s.on_epoch_response(q, answer, &EngineView::follower(&rep.log), super::clock_ms())
            });
            if let Some(action) = action {
                execute(shard, rep, *g, action, None).await;
            }
        }
    }

    // Out of range: ask the leader's log start and end.
    for (rep, g) in members {
        let Some(q) = with_follower(rep, *g, |s| s.leader_offsets_query(super::clock_ms())).flatten() else { continue };
        sent = true;
        let answer = leader_offsets(c, local, rep, &q).await;
        if let Err(e) = &answer {
            if e.1 {
                let req = spindle_replication::partition_replica::FollowerRequest::LeaderOffsets(q);
                with_follower(rep, *g, |s| s.on_request_failed(&req, super::clock_ms()));
                return Err(e.0.clone());
            }
        }
        let answer = answer.map_err(|e| e.0.parse::<i16>().unwrap_or(-1));
        let action = with_follower(rep, *g, |s| {
            s.on_leader_offsets(&q, answer, &EngineView::follower(&rep.log), super::clock_ms())
        });
        if let Some(action) = action {
            execute(shard, rep, *g, action, None).await;
        }
    }

    // Fetching: one request for every partition ready to fetch.
    let mut queries: Vec<(Rc<Replica>, u64, FetchQuery)> = Vec::new();
    for (rep, g) in members {
        if let Some(q) =
            with_follower(rep, *g, |s| s.fetch_query(&EngineView::follower(&rep.log), super::clock_ms())).flatten()
        {
            queries.push((rep.clone(), *g, q));
        }
    }
    if queries.is_empty() {
        return Ok(sent);
    }
    let broker_epoch = shard.snapshot().cluster.as_ref().map_or(-1, |v| v.local_broker_epoch());
    let req = fetch_request(local, &queries);
    let resp: Result<FetchResponse, String> = c.call(ApiKey::Fetch, FETCH_VERSION, &req).await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            for (rep, g, q) in &queries {
                let req = spindle_replication::partition_replica::FollowerRequest::Fetch(*q);
                with_follower(rep, *g, |s| s.on_request_failed(&req, super::clock_ms()));
            }
            return Err(e);
        }
    };
    let _ = broker_epoch;
    let mut appends = Vec::new();
    let mut log_starts = Vec::new();
    for (rep, g, q) in &queries {
        let data = resp
            .responses
            .iter()
            .filter(|t| t.topic.0.as_str() == rep.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == rep.partition);
        let (answer, records) = match data {
            Some(p) => {
                if p.error_code == 0 {
                    log_starts.push((rep.clone(), *g, p.log_start_offset));
                }
                let records = p.records.clone().filter(|r| !r.is_empty());
                let diverging =
                    (p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0).then_some(EpochEndOffset {
                        epoch: p.diverging_epoch.epoch,
                        end_offset: p.diverging_epoch.end_offset,
                    });
                (
                    FollowerFetchResponse {
                        error: p.error_code,
                        high_watermark: p.high_watermark,
                        diverging_epoch: diverging,
                        has_records: records.is_some(),
                    },
                    records,
                )
            }
            None => (
                FollowerFetchResponse {
                    error: spindle_replication::partition_replica::error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    high_watermark: -1,
                    diverging_epoch: None,
                    has_records: false,
                },
                None,
            ),
        };
        let action = with_follower(rep, *g, |s| {
            s.on_fetch_response(q, &answer, &EngineView::follower(&rep.log), super::clock_ms())
        });
        tracing::trace!(topic = %rep.topic, partition = rep.partition, ?q, ?answer, ?action, "replica fetch response");
        if let Some(action) = action {
            appends.push(execute(shard, rep, *g, action, records));
        }
    }
    futures::future::join_all(appends).await;
    for (rep, g, leader_start) in log_starts {
        adopt_log_start(&rep, g, leader_start).await;
    }
    Ok(true)
}

/// Kafka's follower `maybeIncrementLogStartOffset`: the leader's log start
/// moved (retention, DeleteRecords, `__consumer_offsets` compaction), so
/// ours follows, up to our own end.
async fn adopt_log_start(rep: &Replica, generation: u64, leader_start: i64) {
    if leader_start <= rep.log.log_start_offset() {
        return;
    }
    let _permit = rep.io.acquire_permit(1).await;
    if rep.generation.get() != generation {
        return;
    }
    let to = leader_start.min(rep.log.log_end_offset());
    if to > rep.log.log_start_offset() {
        if let Err(e) = rep.log.delete_records(to).await {
            tracing::warn!(topic = %rep.topic, partition = rep.partition, to, error = %e, "cannot follow the leader's log start");
        }
    }
}

fn epoch_request(local: i32, asks: &[(Rc<Replica>, u64, EpochQuery)]) -> OffsetForLeaderEpochRequest {
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for (rep, _, q) in asks {
        let p = OffsetForLeaderPartition::default()
            .with_partition(rep.partition)
            .with_current_leader_epoch(q.current_leader_epoch)
            .with_leader_epoch(q.leader_epoch);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == rep.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetForLeaderTopic::default().with_topic(TopicName(str_bytes(&rep.topic))).with_partitions(vec![p]),
            ),
        }
    }
    OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(local)).with_topics(topics)
}

fn fetch_request(local: i32, queries: &[(Rc<Replica>, u64, FetchQuery)]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (rep, _, q) in queries {
        let p = FetchPartition::default()
            .with_partition(rep.partition)
            .with_current_leader_epoch(q.current_leader_epoch)
            .with_fetch_offset(q.fetch_offset)
            .with_last_fetched_epoch(q.last_fetched_epoch.unwrap_or(-1))
            .with_log_start_offset(q.log_start)
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == rep.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                topics.push(FetchTopic::default().with_topic(TopicName(str_bytes(&rep.topic))).with_partitions(vec![p]))
            }
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(local))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(topics)
}

/// The leader's log start and end, by two ListOffsets (earliest, then
/// latest as a replica sees it: the leader's written end). `Err((why,
/// connection_failed))`; a partition error is its code as text.
async fn leader_offsets(
    c: &mut Conn,
    local: i32,
    rep: &Replica,
    q: &LeaderOffsetsQuery,
) -> Result<LeaderOffsets, (String, bool)> {
    let mut out = [0i64; 2];
    for (i, ts) in [-2i64, -1].into_iter().enumerate() {
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(local)).with_topics(vec![
            ListOffsetsTopic::default().with_name(TopicName(str_bytes(&rep.topic))).with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(rep.partition)
                    .with_current_leader_epoch(q.current_leader_epoch)
                    .with_timestamp(ts),
            ]),
        ]);
        let resp: ListOffsetsResponse =
            c.call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &req).await.map_err(|e| (e, true))?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == rep.partition)
            .ok_or_else(|| ("3".to_string(), false))?;
        if p.error_code != 0 {
            return Err((p.error_code.to_string(), false));
        }
        out[i] = p.offset;
    }
    Ok(LeaderOffsets { log_start: out[0], log_end: out[1] })
}

/// Runs a follower's action on its log: truncation or append, serialised
/// per replica and dropped if the role moved on meanwhile.
async fn execute(
    shard: &Rc<Shard>,
    rep: &Rc<Replica>,
    generation: u64,
    action: FollowerAction,
    records: Option<Bytes>,
) {
    match action {
        FollowerAction::Continue
        | FollowerAction::Ignored
        | FollowerAction::Backoff { .. }
        | FollowerAction::AwaitMetadata => {}
        FollowerAction::Truncate { to } => {
            let _permit = rep.io.acquire_permit(1).await;
            if rep.generation.get() != generation {
                return;
            }
            match rep.log.truncate_to(to).await {
                Ok(end) if end == to => {
                    with_follower(rep, generation, |s| s.on_truncated(&EngineView::follower(&rep.log)));
                    tracing::info!(topic = %rep.topic, partition = rep.partition, to, "follower truncated");
                }
                Ok(end) => {
                    // A batch straddled `to` and went whole: start over from
                    // the epoch query with what the log now holds.
                    tracing::warn!(topic = %rep.topic, partition = rep.partition, to, end, "truncation ended elsewhere");
                    restart_follower(rep, generation);
                }
                Err(e) => {
                    tracing::error!(topic = %rep.topic, partition = rep.partition, error = %e, "follower truncation failed");
                    restart_follower(rep, generation);
                }
            }
        }
        FollowerAction::TruncateFullyAndStartAt { offset } => {
            // The leader's log starts after ours ends (retention or
            // DeleteRecords there while we were away): start over at its
            // log start.
            let _permit = rep.io.acquire_permit(1).await;
            if rep.generation.get() != generation {
                return;
            }
            match rep.log.truncate_fully_and_start_at(offset).await {
                Ok(()) => {
                    with_follower(rep, generation, |s| s.on_truncated(&EngineView::follower(&rep.log)));
                    tracing::info!(topic = %rep.topic, partition = rep.partition, offset, "follower restarted its log at the leader's log start");
                }
                Err(e) => {
                    tracing::error!(topic = %rep.topic, partition = rep.partition, offset, error = %e, "cannot restart the follower's log");
                    restart_follower(rep, generation);
                }
            }
        }
        FollowerAction::Append { expected_base } => {
            let Some(records) = records else {
                restart_follower(rep, generation);
                return;
            };
            let _permit = rep.io.acquire_permit(1).await;
            if rep.generation.get() != generation {
                return;
            }
            let durability = if shard.config.acks_all_fsync { Durability::Durable } else { Durability::Written };
            let opts = ReplicaAppendOptions { now_ms: now_ms(), durability };
            let mut result = rep.log.append_replicated(records.clone(), opts).await;
            if let Err(AppendError::NotContiguous { expected, found }) = result {
                // Kafka's UnexpectedAppendOffsetException case: our log is
                // empty at the leader's log start, which fell inside a batch
                // (DeleteRecords); the batch comes whole from its base. Start
                // the log at that base instead, as Kafka does.
                let empty = rep.log.log_start_offset() == expected && rep.log.log_end_offset() == expected;
                if empty && found < expected {
                    result = match rep.log.truncate_fully_and_start_at(found).await {
                        Ok(()) => rep.log.append_replicated(records, opts).await,
                        Err(e) => {
                            tracing::error!(topic = %rep.topic, partition = rep.partition, error = %e, "cannot restart the follower's log");
                            Err(AppendError::NotContiguous { expected, found })
                        }
                    };
                }
            }
            match result {
                Ok(info) => {
                    let last_epoch = rep.log.epochs().last().map_or(-1, |e| e.epoch);
                    with_follower(rep, generation, |s| s.on_appended(info.last_offset + 1, last_epoch));
                }
                Err(e) => {
                    let rejection = match e {
                        AppendError::NotContiguous { .. } => AppendRejection::NotContiguous,
                        _ => AppendRejection::Invalid,
                    };
                    tracing::warn!(topic = %rep.topic, partition = rep.partition, expected_base, error = %e, "replicated append refused");
                    with_follower(rep, generation, |s| {
                        s.on_append_rejected(rejection, &EngineView::follower(&rep.log), super::clock_ms())
                    });
                }
            }
        }
    }
}

/// Replaces a follower state whose log moved under it with a fresh one
/// (it starts again with an epoch query).
fn restart_follower(rep: &Replica, generation: u64) {
    if rep.generation.get() != generation {
        return;
    }
    let mut role = rep.role.borrow_mut();
    if let Role::Follower(s) = &*role {
        *role = Role::Follower(FollowerState::new(s.leader(), s.leader_epoch(), s.hw()));
    }
}
