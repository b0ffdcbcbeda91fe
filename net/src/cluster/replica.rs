//! A partition replica on its owner core in cluster mode: the sans-IO
//! rules of `spindle_replication::partition_replica` (leader or follower)
//! next to the engine log they drive (design sections 7 and 9).
//!
//! The core that owns a partition owns its replica state, so nothing here
//! is shared across threads. Roles change only in [`reconcile`], run on
//! each core by the metadata applier, in metadata order.

use super::fetcher;
use crate::metadata::{ClusterView, TopicMeta};
use crate::shard::{PartitionLog, Shard};
use event_listener::Event;
use kafka_protocol::ResponseError;
use spindle_engine::storage::dma::DmaStorage;
use spindle_engine::Log;
use spindle_replication::controller::{AlterPartitionData, AlterPartitionRequest, ControllerReply, ControllerRequest};
use spindle_replication::metadata::PartitionRegistration;
use spindle_replication::partition_replica::{
    error_code, role_change, AckStatus, AlterFailed, FollowerState, IsrChange, LeaderConfig, LeaderStart, LeaderState,
    LogView, PartitionAssignment, RoleChange, ISR_CHECK_INTERVAL_MS,
};
use spindle_replication::types::{BrokerId, TopicIdPartition, NO_LEADER};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// How long a leader waits for the controller to answer an AlterPartition
/// before treating the outcome as unknown (and retrying).
const ALTER_PARTITION_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Role {
    Leader(LeaderState),
    Follower(FollowerState),
}

pub struct Replica {
    pub topic: String,
    pub partition: i32,
    pub topic_id: uuid::Uuid,
    pub log: PartitionLog,
    /// The registration the current role was derived from.
    pub assignment: RefCell<PartitionAssignment>,
    pub role: RefCell<Role>,
    /// Bumped on every role change: a fetcher's work started under an
    /// older role (a response, an append) is dropped, not fed to the new
    /// state.
    pub generation: Cell<u64>,
    /// The HW moved or the role changed: wakes acks=all waiters and
    /// consumers' long polls.
    pub changed: Event,
    /// Serialises a follower's log mutations (append, truncate): when the
    /// leader changes, the old source's fetcher may still be finishing one.
    pub io: glommio::sync::Semaphore,
    /// When to resend a pending AlterPartition whose outcome was an
    /// unexpected error.
    pub alter_retry_at: Cell<Option<u64>>,
}

impl Replica {
    pub fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// The leader epoch, if this replica leads.
    pub fn leading_epoch(&self) -> Option<i32> {
        match &*self.role.borrow() {
            Role::Leader(l) if !l.is_resigned() => Some(l.leader_epoch()),
            _ => None,
        }
    }

    /// The high watermark consumers may read up to, on the leader only.
    pub fn leader_hw(&self) -> Result<i64, ResponseError> {
        match &*self.role.borrow() {
            Role::Leader(l) if !l.is_resigned() => Ok(l.hw()),
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    /// The leader as Metadata and Fetch's `current_leader` name it.
    pub fn current_leader(&self) -> (i32, i32) {
        let a = self.assignment.borrow();
        (a.leader, a.leader_epoch)
    }

    /// Checks a request's `current_leader_epoch` against ours (-1: not
    /// sent), as Kafka's `Partition.getLocalLog` does.
    pub fn check_epoch(&self, current_leader_epoch: i32) -> Result<(), ResponseError> {
        let ours = self.assignment.borrow().leader_epoch;
        if current_leader_epoch == -1 || current_leader_epoch == ours {
            Ok(())
        } else if current_leader_epoch > ours {
            Err(ResponseError::UnknownLeaderEpoch)
        } else {
            Err(ResponseError::FencedLeaderEpoch)
        }
    }

    /// Waits until the leader's HW passes `offset`, the role changes, or
    /// `timeout` passes.
    pub async fn wait_hw_beyond(&self, offset: i64, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let listener = self.changed.listen();
            match self.leader_hw() {
                Ok(hw) if hw <= offset => {}
                _ => return,
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return;
            }
            let timer = glommio::timer::sleep(deadline - now);
            futures::pin_mut!(timer);
            if let futures::future::Either::Right(_) = futures::future::select(listener, timer).await {
                return;
            }
        }
    }

    /// Waits until an acks=all produce ending at `end` is replicated to the
    /// ISR (Kafka's delayed produce), the role changes or `timeout` passes.
    pub async fn wait_acked(&self, end: i64, timeout: Duration) -> Result<(), ResponseError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let listener = self.changed.listen();
            let status = match &*self.role.borrow() {
                // Under min.insync.replicas the HW stands still (design
                // 7.1) until the ISR grows again: answer now, as Kafka's
                // NOT_ENOUGH_REPLICAS_AFTER_APPEND, instead of at the
                // timeout.
                Role::Leader(l) if l.ack_status(end) == AckStatus::Pending && l.is_under_min_isr() => {
                    AckStatus::DoneUnderMinIsr
                }
                Role::Leader(l) => l.ack_status(end),
                Role::Follower(_) => AckStatus::NotLeader,
            };
            match status {
                AckStatus::Done => return Ok(()),
                AckStatus::DoneUnderMinIsr => return Err(ResponseError::NotEnoughReplicasAfterAppend),
                AckStatus::NotLeader => return Err(ResponseError::NotLeaderOrFollower),
                AckStatus::Pending => {}
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(ResponseError::RequestTimedOut);
            }
            let timer = glommio::timer::sleep(deadline - now);
            futures::pin_mut!(timer);
            futures::future::select(listener, timer).await;
        }
    }

    /// Tells the leader state its acknowledgeable end moved: the durable
    /// end with `acks.all.fsync` (design 20), else the written end.
    pub fn advance_local_end(&self, view: &ClusterView, fsync: bool) {
        let o = self.log.offsets();
        let end = if fsync { o.durable } else { o.written };
        let advanced = match &mut *self.role.borrow_mut() {
            Role::Leader(l) if !l.is_resigned() && end > l.local_end() => l.on_local_end(end, super::clock_ms(), view),
            _ => false,
        };
        if advanced {
            self.notify();
        }
    }
}

/// The engine log as the replication rules see it, with `end` as its end
/// (a leader's written end; a follower's log end between appends).
pub struct EngineView<'a> {
    pub log: &'a Log<DmaStorage>,
    pub end: i64,
}

impl<'a> EngineView<'a> {
    /// A follower's view: between its appends, its end is the log's end.
    pub fn follower(log: &'a Log<DmaStorage>) -> Self {
        EngineView { log, end: log.log_end_offset() }
    }

    /// A leader's view: what followers may read is what is written.
    pub fn leader(log: &'a Log<DmaStorage>) -> Self {
        EngineView { log, end: log.offsets().written }
    }
}

impl LogView for EngineView<'_> {
    fn log_start(&self) -> i64 {
        self.log.log_start_offset()
    }
    fn log_end(&self) -> i64 {
        self.end
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.log.epochs().last().map(|e| e.epoch)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.log.end_offset_for_epoch(epoch).map(|(e, end)| (e, end.min(self.end)))
    }
    fn first_epoch(&self) -> Option<(i32, i64)> {
        self.log.epochs().first().map(|e| (e.epoch, e.start_offset))
    }
}

pub fn assignment_of(reg: &PartitionRegistration) -> PartitionAssignment {
    PartitionAssignment {
        replicas: reg.replicas.clone(),
        isr: reg.isr.clone(),
        leader: reg.leader_or_no_leader(),
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
    }
}

/// `min.insync.replicas` and `replica.lag.time.max.ms` for a topic.
fn leader_config(shard: &Shard, meta: &TopicMeta) -> LeaderConfig {
    let min_isr = meta
        .configs
        .get(spindle_replication::controller::topics::MIN_INSYNC_REPLICAS)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&v| v >= 1)
        .unwrap_or(shard.config.min_insync_replicas);
    LeaderConfig { min_insync_replicas: min_isr, replica_lag_time_max_ms: shard.config.replica_lag_time_max_ms }
}

/// Makes this core's replica roles match its snapshot of the metadata
/// image (design 7.6). Run by the applier on every core after each applied
/// metadata change, one run at a time per core.
pub async fn reconcile(shard: &Rc<Shard>) {
    if shard.is_stopping() {
        // Its partitions are closing; no new roles (and no new logs).
        return;
    }
    let snap = shard.snapshot();
    let Some(view) = snap.cluster.clone() else { return };
    let local = view.local;
    // Replicas of partitions that are gone from the image (or moved away
    // from this broker) stop.
    let stale: Vec<(String, i32)> = shard
        .replicas
        .borrow()
        .keys()
        .filter(|(t, p)| {
            !snap.topics.get(t).and_then(|m| m.registration(*p)).is_some_and(|r| r.replicas.contains(&local))
        })
        .cloned()
        .collect();
    for key in stale {
        if let Some(rep) = shard.replicas.borrow_mut().remove(&key) {
            stop(&rep);
        }
    }
    for meta in snap.topics.values() {
        for (p, reg) in meta.registrations.iter().enumerate() {
            let p = p as i32;
            if meta.placement.get(p as usize) != Some(&shard.id) || !reg.replicas.contains(&local) {
                continue;
            }
            let new = assignment_of(reg);
            let existing = shard.replicas.borrow().get(&(meta.name.clone(), p)).cloned();
            let old = existing.as_ref().map(|r| r.assignment.borrow().clone());
            let change = role_change(local, old.as_ref(), Some(&new));
            let result = match change {
                RoleChange::NoChange => {
                    if let Some(r) = &existing {
                        *r.assignment.borrow_mut() = new;
                    }
                    Ok(())
                }
                RoleChange::IsrChanged => {
                    let rep = existing.expect("an ISR change of a replica we have");
                    *rep.assignment.borrow_mut() = new.clone();
                    if let Role::Leader(l) = &mut *rep.role.borrow_mut() {
                        l.on_partition_change(&new, super::clock_ms(), &*view);
                    }
                    rep.alter_retry_at.set(None);
                    // Acks waiters re-check against the new ISR even when
                    // the HW did not move.
                    rep.notify();
                    Ok(())
                }
                RoleChange::BecomeLeader => become_leader(shard, meta, p, new, existing, &view).await,
                RoleChange::BecomeFollower { leader } => become_follower(shard, meta, p, new, existing, leader).await,
                RoleChange::Stop => {
                    if let Some(rep) = shard.replicas.borrow_mut().remove(&(meta.name.clone(), p)) {
                        stop(&rep);
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::error!(topic = %meta.name, partition = p, error = %e, "role change failed");
            }
        }
    }
}

fn stop(rep: &Replica) {
    if let Role::Leader(l) = &mut *rep.role.borrow_mut() {
        l.resign();
    }
    rep.generation.set(rep.generation.get() + 1);
    rep.notify();
}

async fn open_replica(
    shard: &Rc<Shard>,
    meta: &TopicMeta,
    p: i32,
    existing: &Option<Rc<Replica>>,
) -> Result<PartitionLog, String> {
    match existing {
        Some(r) => Ok(r.log.clone()),
        None => shard.partition(&meta.name, p).await.map_err(|e| format!("{e:?}")),
    }
}

fn install(
    shard: &Rc<Shard>,
    meta: &TopicMeta,
    p: i32,
    log: PartitionLog,
    new: PartitionAssignment,
    role: Role,
) -> Rc<Replica> {
    let key = (meta.name.clone(), p);
    let existing = shard.replicas.borrow().get(&key).cloned();
    match existing {
        Some(rep) => {
            *rep.assignment.borrow_mut() = new;
            *rep.role.borrow_mut() = role;
            rep.generation.set(rep.generation.get() + 1);
            rep.alter_retry_at.set(None);
            rep.notify();
            rep
        }
        None => {
            let rep = Rc::new(Replica {
                topic: meta.name.clone(),
                partition: p,
                topic_id: meta.uuid(),
                log,
                assignment: RefCell::new(new),
                role: RefCell::new(role),
                generation: Cell::new(0),
                changed: Event::new(),
                io: glommio::sync::Semaphore::new(1),
                alter_retry_at: Cell::new(None),
            });
            shard.replicas.borrow_mut().insert(key, rep.clone());
            rep
        }
    }
}

/// The HW a replica had (a follower's, or a previous leader epoch's).
fn previous_hw(existing: &Option<Rc<Replica>>) -> Option<i64> {
    existing.as_ref().map(|r| match &*r.role.borrow() {
        Role::Leader(l) => l.hw(),
        Role::Follower(f) => f.hw(),
    })
}

async fn become_leader(
    shard: &Rc<Shard>,
    meta: &TopicMeta,
    p: i32,
    new: PartitionAssignment,
    existing: Option<Rc<Replica>>,
    view: &ClusterView,
) -> Result<(), String> {
    // Fence the old role first: acks=all waiters of an older epoch answer
    // NOT_LEADER_OR_FOLLOWER, fetchers drop their work.
    if let Some(r) = &existing {
        stop(r);
        // Wait for a follower append or truncation in flight to finish.
        let _permit = r.io.acquire_permit(1).await;
    }
    let log = open_replica(shard, meta, p, &existing).await?;
    let fsync = shard.config.acks_all_fsync;
    if fsync {
        // The HW will count the durable end (design 20): start from it.
        log.wait_durable(log.log_end_offset()).await.map_err(|e| e.to_string())?;
    }
    log.assign_epoch(new.leader_epoch).await.map_err(|e| e.to_string())?;
    let o = log.offsets();
    let start = LeaderStart {
        log_start: o.log_start,
        local_end: if fsync { o.durable } else { o.written },
        follower_hw: previous_hw(&existing).unwrap_or(o.log_start),
        local_broker_epoch: view.local_broker_epoch(),
        now_ms: super::clock_ms(),
    };
    let state = LeaderState::new(view.local, &new, leader_config(shard, meta), start, view);
    tracing::info!(topic = %meta.name, partition = p, epoch = new.leader_epoch, hw = state.hw(), "became leader");
    install(shard, meta, p, log, new, Role::Leader(state));
    if meta.name == crate::group::OFFSETS_TOPIC {
        if let Err(e) = shard.groups.load_partition(shard, p).await {
            tracing::error!(partition = p, error = %e, "cannot replay __consumer_offsets");
        }
    }
    Ok(())
}

async fn become_follower(
    shard: &Rc<Shard>,
    meta: &TopicMeta,
    p: i32,
    new: PartitionAssignment,
    existing: Option<Rc<Replica>>,
    leader: Option<BrokerId>,
) -> Result<(), String> {
    if let Some(r) = &existing {
        stop(r);
    }
    let log = open_replica(shard, meta, p, &existing).await?;
    let hw = previous_hw(&existing).unwrap_or(log.log_start_offset());
    let epoch = new.leader_epoch;
    let rep = install(shard, meta, p, log, new, Role::Follower(FollowerState::new(leader, epoch, hw)));
    if meta.name == crate::group::OFFSETS_TOPIC {
        shard.groups.unload_partition(p);
    }
    tracing::info!(topic = %meta.name, partition = p, epoch, leader = leader.unwrap_or(NO_LEADER), "became follower");
    if let Some(leader) = leader {
        fetcher::add(shard, leader, rep);
    }
    Ok(())
}

/// Sends a leader's ISR change to the controller and feeds a refusal back.
pub fn send_isr_change(shard: &Rc<Shard>, rep: &Rc<Replica>, change: IsrChange) {
    let (shard, rep) = (shard.clone(), rep.clone());
    glommio::spawn_local(async move {
        let Some(view) = shard.snapshot().cluster.clone() else { return };
        let sent = change.request().clone();
        let req = AlterPartitionRequest {
            broker_id: view.local,
            broker_epoch: view.local_broker_epoch(),
            partitions: vec![AlterPartitionData::from_alter_isr(
                TopicIdPartition { topic_id: rep.topic_id, partition: rep.partition },
                &sent,
            )],
        };
        tracing::debug!(topic = %rep.topic, partition = rep.partition, ?change, "proposing ISR change");
        shard.metrics.record_isr_change(matches!(change, IsrChange::Shrink { .. }));
        let reply =
            super::forward_request(&shard, ControllerRequest::AlterPartition(req), ALTER_PARTITION_TIMEOUT).await;
        let code = match reply {
            Ok(ControllerReply::AlterPartition(Ok(results))) => match results.first().map(|r| &r.outcome) {
                Some(Ok(_)) => error_code::NONE,
                Some(Err(e)) => e.code().code(),
                None => ResponseError::UnknownServerError.code(),
            },
            Ok(ControllerReply::AlterPartition(Err(e))) => e.code().code(),
            Ok(_) => ResponseError::UnknownServerError.code(),
            Err(_) => ResponseError::RequestTimedOut.code(),
        };
        if code == error_code::NONE {
            // The new registration arrives with the metadata.
            return;
        }
        tracing::info!(topic = %rep.topic, partition = rep.partition, code, "ISR change refused or failed");
        let outcome = match &mut *rep.role.borrow_mut() {
            Role::Leader(l) => l.on_alter_failed(&change, code, super::clock_ms(), &*view),
            Role::Follower(_) => AlterFailed::Ignored,
        };
        match outcome {
            AlterFailed::Dropped { hw_advanced: true } => rep.notify(),
            AlterFailed::RetryAt { at_ms } => rep.alter_retry_at.set(Some(at_ms)),
            _ => {}
        }
    })
    .detach();
}

/// Every [`ISR_CHECK_INTERVAL_MS`]: each leader on this core drops ISR
/// members that stopped catching up, and resends AlterPartitions due for a
/// retry.
pub async fn isr_maintenance(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(ISR_CHECK_INTERVAL_MS)).await;
        if shard.is_stopping() {
            return;
        }
        let now = super::clock_ms();
        let reps: Vec<Rc<Replica>> = shard.replicas.borrow().values().cloned().collect();
        for rep in reps {
            let change = match &mut *rep.role.borrow_mut() {
                Role::Leader(l) if !l.is_resigned() => {
                    if rep.alter_retry_at.get().is_some_and(|at| at <= now) {
                        rep.alter_retry_at.set(None);
                        l.pending().cloned()
                    } else {
                        l.maybe_shrink(now)
                    }
                }
                _ => None,
            };
            if let Some(change) = change {
                send_isr_change(&shard, &rep, change);
            }
        }
    }
}
