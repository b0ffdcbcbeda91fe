//! One core's share of the broker: the partitions it owns, its batch cache,
//! and the channels to every other core.
//!
//! Each partition is owned by exactly one core (its placement in the
//! registry). A request arriving on another core runs the partition's part
//! on the owner through [`Shard::invoke_on`]: a closure sent over glommio's
//! lock-free channel mesh. Record bytes travel as `Bytes` (reference-counted,
//! never copied); the `Log` itself never leaves its core.
//!
//! Jobs from one core to another start on the owner in the order they were
//! submitted (see [`Shard::invoke_on`]), and a produce takes its place in
//! its partition's line as it starts there ([`Shard::produce_turn`]), so a
//! connection's pipelined produce requests reach the log in request order.

use crate::config::BrokerConfig;
use crate::metadata::{effective_log_config, Registry, Snapshot, TopicMeta};
use crate::metrics::Metrics;
use event_listener::Event;
use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use spindle_engine::storage::dma::DmaStorage;
use spindle_engine::{BatchCache, Log, Turn, Turnstile};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// Work sent to another core: runs there with that core's [`Shard`].
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Capacity of each core-to-core channel: how many jobs one core may queue
/// on another before the sender waits (backpressure between cores).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

pub type PartitionLog = Rc<Log<DmaStorage>>;

enum Slot {
    Opening(Rc<Event>),
    Open(PartitionLog),
}

/// Why a partition could not be served on this core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionError {
    UnknownTopicOrPartition,
    /// Placement says another core owns it (the caller routed wrongly).
    NotOwner,
    /// The log could not be opened or recovered.
    Storage(String),
}

pub struct Shard {
    pub id: usize,
    pub nr_shards: usize,
    pub config: Arc<BrokerConfig>,
    pub registry: Arc<Registry>,
    snapshot: RefCell<Rc<Snapshot>>,
    pub(crate) storage: DmaStorage,
    pub cache: Rc<BatchCache>,
    partitions: RefCell<HashMap<(String, i32), Slot>>,
    mesh: Rc<Mesh<Job>>,
    /// Produce requests arrived for a partition, in arrival order, until
    /// their appends have taken their places in the log's own line.
    produce_order: RefCell<HashMap<(String, i32), Rc<Turnstile>>>,
    pub metrics: Rc<Metrics>,
    /// Consumer groups coordinated on this core.
    pub groups: crate::group::Coordinator,
    /// Core 0 of a voter: the metadata quorum.
    pub quorum: std::cell::OnceCell<crate::cluster::QuorumHandle>,
    /// The run's ack journals, and this core's (see [`crate::journal`]).
    pub ack_journals: std::cell::OnceCell<Arc<crate::journal::AckJournals>>,
    pub ack_journal: std::cell::OnceCell<Rc<spindle_engine::AckJournal>>,
    /// Cluster mode: this core's partition replicas and their roles.
    pub replicas: RefCell<HashMap<(String, i32), Rc<crate::cluster::replica::Replica>>>,
    /// Cluster mode: this core's follower fetchers, by source broker.
    pub fetchers: RefCell<HashMap<i32, Rc<crate::cluster::fetcher::Fetcher>>>,
    /// Requests being handled on this core (for draining at shutdown).
    pub in_flight: Cell<usize>,
    pub in_flight_ev: Event,
    /// Set when this core starts shutting down; see [`Shard::stopping`].
    stopping: Cell<bool>,
    stopping_ev: Event,
}

/// The channels to the other cores, sending in submission order.
struct Mesh<T: Send> {
    senders: Senders<T>,
    /// Items for a core whose channel was full, in submission order; a
    /// core has an entry while its drainer task sends them.
    outbox: RefCell<HashMap<usize, VecDeque<T>>>,
}

impl<T: Send + 'static> Mesh<T> {
    fn new(senders: Senders<T>) -> Self {
        Mesh { senders, outbox: RefCell::new(HashMap::new()) }
    }

    /// Queues `item` for core `to` now, behind everything submitted to it
    /// before. The channel's own wait for room is no queue: glommio wakes
    /// the senders waiting on a full channel in reverse, and a sender
    /// arriving as room frees goes first. So once the channel is full,
    /// items wait here and one task sends them in order.
    fn submit(self: &Rc<Self>, to: usize, item: T) {
        let mut outbox = self.outbox.borrow_mut();
        if let Some(waiting) = outbox.get_mut(&to) {
            waiting.push_back(item);
            return;
        }
        match self.senders.try_send_to(to, item) {
            Ok(()) => {}
            Err(GlommioError::WouldBlock(ResourceType::Channel(item))) => {
                outbox.insert(to, VecDeque::from([item]));
                // glommio may run a spawned task right away.
                drop(outbox);
                let mesh = self.clone();
                glommio::spawn_local(async move { mesh.drain(to).await }).detach();
            }
            Err(_) => panic!("core {to} is gone: the broker is shutting down"),
        }
    }

    async fn drain(&self, to: usize) {
        loop {
            let item = {
                let mut outbox = self.outbox.borrow_mut();
                let waiting = outbox.get_mut(&to).expect("a core being drained has an outbox entry");
                match waiting.pop_front() {
                    Some(item) => item,
                    None => {
                        outbox.remove(&to);
                        return;
                    }
                }
            };
            // Items submitted meanwhile queue behind this one: the entry
            // stays until it is empty.
            if self.senders.send_to(to, item).await.is_err() {
                panic!("core {to} is gone: the broker is shutting down");
            }
        }
    }
}

/// Runs `work` and sends its result to `tx`, unless the receiver is gone:
/// `work` is not started if it went before, and dropped if it goes while
/// `work` runs.
async fn answer_while_wanted<T, Fut: Future<Output = T>>(mut tx: oneshot::Sender<T>, work: impl FnOnce() -> Fut) {
    if tx.is_canceled() {
        return;
    }
    let answer = {
        let work = work();
        let gone = tx.cancellation();
        futures::pin_mut!(work);
        futures::pin_mut!(gone);
        match futures::future::select(work, gone).await {
            futures::future::Either::Left((v, _)) => Some(v),
            futures::future::Either::Right(_) => None,
        }
    };
    if let Some(v) = answer {
        let _ = tx.send(v);
    }
}

/// See [`Shard::produce_turn`].
pub struct ProduceTurn {
    turn: Option<Turn>,
    line: Rc<Turnstile>,
    key: (String, i32),
    shard: Rc<Shard>,
}

impl ProduceTurn {
    pub async fn wait(&self) {
        if let Some(t) = &self.turn {
            t.wait().await;
        }
    }
}

impl Drop for ProduceTurn {
    fn drop(&mut self) {
        drop(self.turn.take());
        if self.line.is_idle() {
            // Nobody in line: forget it, or every partition ever produced
            // to would keep an entry.
            let mut lines = self.shard.produce_order.borrow_mut();
            if lines.get(&self.key).is_some_and(|l| Rc::ptr_eq(l, &self.line)) {
                lines.remove(&self.key);
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shard {
    pub fn new(
        id: usize,
        nr_shards: usize,
        config: Arc<BrokerConfig>,
        registry: Arc<Registry>,
        storage: DmaStorage,
        senders: Senders<Job>,
    ) -> Shard {
        let snapshot = Rc::new(registry.snapshot());
        Shard {
            id,
            nr_shards,
            cache: Rc::new(BatchCache::new(config.cache_bytes)),
            config,
            registry,
            snapshot: RefCell::new(snapshot),
            storage,
            partitions: RefCell::new(HashMap::new()),
            mesh: Rc::new(Mesh::new(senders)),
            produce_order: RefCell::new(HashMap::new()),
            metrics: Rc::new(Metrics::default()),
            groups: crate::group::Coordinator::default(),
            quorum: std::cell::OnceCell::new(),
            ack_journals: std::cell::OnceCell::new(),
            ack_journal: std::cell::OnceCell::new(),
            replicas: RefCell::new(HashMap::new()),
            fetchers: RefCell::new(HashMap::new()),
            in_flight: Cell::new(0),
            in_flight_ev: Event::new(),
            stopping: Cell::new(false),
            stopping_ev: Event::new(),
        }
    }

    /// Starts this core's shutdown: wakes every request parked in a long
    /// poll so it answers now, instead of holding the shutdown drain up
    /// until its own deadline (a consumer's Fetch waits up to 30 s).
    pub fn begin_shutdown(&self) {
        self.stopping.set(true);
        self.stopping_ev.notify(usize::MAX);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once [`Shard::begin_shutdown`] has been called (at once if
    /// it already has). Long polls select on it beside what they wait for.
    pub async fn stopping(&self) {
        while !self.stopping.get() {
            let listener = self.stopping_ev.listen();
            if self.stopping.get() {
                return;
            }
            listener.await;
        }
    }

    /// This core's view of the registry, refreshed if it changed (one
    /// atomic load when it did not).
    pub fn snapshot(&self) -> Rc<Snapshot> {
        let v = self.registry.version();
        if self.snapshot.borrow().version != v {
            *self.snapshot.borrow_mut() = Rc::new(self.registry.snapshot());
        }
        self.snapshot.borrow().clone()
    }

    /// Cluster mode: this core's replica of a partition.
    pub fn replica(&self, topic: &str, partition: i32) -> Option<Rc<crate::cluster::replica::Replica>> {
        self.replicas.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Runs `f` on core `shard` and returns its result. Local calls run
    /// inline; remote ones cross the channel mesh. Either way `f` itself
    /// (not the future it returns) is called in the order the calls to
    /// `invoke_on` were first polled, for calls from one core to one core.
    pub async fn invoke_on<T, F, Fut>(self: &Rc<Self>, shard: usize, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.run_on(shard, f, false).await
    }

    /// [`Shard::invoke_on`] for work whose only effect is its answer (a
    /// read, a wait for data): on another core it does not start if the
    /// caller gave up before, and stops if the caller gives up while it
    /// runs. A long-polling fetch that answers with one partition's data
    /// drops its waits on the others, which then end on their cores too
    /// instead of holding them until the fetch's deadline.
    pub async fn query_on<T, F, Fut>(self: &Rc<Self>, shard: usize, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.run_on(shard, f, true).await
    }

    async fn run_on<T, F, Fut>(self: &Rc<Self>, shard: usize, f: F, only_while_wanted: bool) -> T
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if shard == self.id {
            return f(self.clone()).await;
        }
        let (tx, rx) = oneshot::channel();
        let job: Job = if only_while_wanted {
            Box::new(move |s| Box::pin(answer_while_wanted(tx, move || f(s))))
        } else {
            Box::new(move |s| {
                Box::pin(async move {
                    let _ = tx.send(f(s).await);
                })
            })
        };
        self.mesh.submit(shard, job);
        rx.await.expect("a core dropped a job without answering")
    }

    /// A place in the line of produce requests for a partition this core
    /// owns, taken when called (on the request's arrival here). The turn
    /// comes once every earlier produce to the partition has called
    /// [`Log::append`] (which takes the log's own place) or given up;
    /// dropping the place ends the turn.
    pub fn produce_turn(self: &Rc<Self>, topic: &str, partition: i32) -> ProduceTurn {
        let key = (topic.to_string(), partition);
        let line = self.produce_order.borrow_mut().entry(key.clone()).or_default().clone();
        ProduceTurn { turn: Some(line.take()), line, key, shard: self.clone() }
    }

    /// The log of a partition this core owns, opening (and recovering) it on
    /// first use.
    pub async fn partition(self: &Rc<Self>, topic: &str, partition: i32) -> Result<PartitionLog, PartitionError> {
        loop {
            let snap = self.snapshot();
            let meta = snap.topics.get(topic).ok_or(PartitionError::UnknownTopicOrPartition)?;
            if partition < 0 || partition >= meta.partitions() {
                return Err(PartitionError::UnknownTopicOrPartition);
            }
            if meta.placement[partition as usize] != self.id {
                return Err(PartitionError::NotOwner);
            }
            if let Some(view) = &snap.cluster {
                // Only replicas keep a log of the partition.
                if !meta.registration(partition).is_some_and(|r| r.replicas.contains(&view.local)) {
                    return Err(PartitionError::NotOwner);
                }
            }
            let key = (topic.to_string(), partition);
            let waiting = match self.partitions.borrow().get(&key) {
                Some(Slot::Open(log)) => return Ok(log.clone()),
                Some(Slot::Opening(ev)) => Some(ev.listen()),
                None => None,
            };
            if let Some(l) = waiting {
                l.await;
                continue;
            }
            if self.is_stopping() {
                // `close_all` closes what is open or opening when it runs; a
                // log opened after it would stay open, its blocking file
                // operations still running as the executor exits.
                return Err(PartitionError::Storage("the broker is shutting down".into()));
            }
            let ev = Rc::new(Event::new());
            self.partitions.borrow_mut().insert(key.clone(), Slot::Opening(ev.clone()));
            // The open runs as a detached task of its own: a caller may drop
            // this future (a long-poll Fetch drops its other waits once one
            // partition has data), and an open abandoned halfway would leave
            // the slot "opening" with nobody to finish it, so every later use
            // of the partition would wait forever.
            let (shard, meta) = (self.clone(), meta.clone());
            let (tx, rx) = oneshot::channel();
            glommio::spawn_local(async move {
                let opened = shard.open_log(&meta, partition).await;
                let mut parts = shard.partitions.borrow_mut();
                let result = match opened {
                    Ok(log) => {
                        parts.insert(key, Slot::Open(log.clone()));
                        Ok(log)
                    }
                    Err(e) => {
                        parts.remove(&key);
                        Err(e)
                    }
                };
                ev.notify(usize::MAX);
                let _ = tx.send(result);
            })
            .detach();
            return rx.await.unwrap_or_else(|_| Err(PartitionError::Storage("partition open abandoned".into())));
        }
    }

    async fn open_log(&self, meta: &TopicMeta, partition: i32) -> Result<PartitionLog, PartitionError> {
        let cfg = effective_log_config(&self.config.log_defaults, &meta.configs).map_err(PartitionError::Storage)?;
        let dir = self.partition_dir(&meta.name, partition);
        let log = Log::open(self.storage.clone(), &dir, cfg, self.cache.clone(), now_ms())
            .await
            .map_err(|e| PartitionError::Storage(e.to_string()))?;
        // As Kafka when it loads producer state: the producers that went
        // idle past `producer.id.expiration.ms` while the log was closed
        // are not brought back (the retention checks do it from here on).
        log.expire_producers(now_ms().saturating_sub(self.config.producer_id_expiration_ms));
        if let Some(journals) = self.ack_journals.get() {
            let key = crate::journal::log_key(meta, partition);
            let entries = journals.take_replay(&key);
            if !entries.is_empty() {
                // What the last run acknowledged from its journal and had
                // not written, before anything else is appended.
                match log.replay_journal(entries.clone(), now_ms()).await {
                    Ok((records, dropped)) => {
                        journals.replayed(records);
                        tracing::info!(topic = %meta.name, partition, records, "replayed from the ack journal");
                        if dropped > 0 {
                            tracing::warn!(topic = %meta.name, partition, batches = dropped,
                                "ack journal batches after a gap in the log dropped (never acknowledged)");
                        }
                    }
                    Err(e) => {
                        // Serving it would hand the offsets of acknowledged
                        // records to new ones; the journals stay for the
                        // next start.
                        journals.replay_failed();
                        journals.put_back(key, entries);
                        tracing::error!(topic = %meta.name, partition, error = %e, "cannot replay the ack journal");
                        return Err(PartitionError::Storage(format!("replaying the ack journal: {e}")));
                    }
                }
            }
            if let Some(journal) = self.ack_journal.get() {
                log.attach_journal(journal.clone(), key);
            }
        }
        if !self.config.is_cluster() {
            // A single node leads every partition at epoch 0; in a cluster
            // the leader epoch comes from metadata when this replica leads,
            // and from the leader's batches when it follows.
            log.assign_epoch(0).await.map_err(|e| PartitionError::Storage(e.to_string()))?;
        }
        tracing::debug!(topic = %meta.name, partition, shard = self.id, "partition opened");
        Ok(Rc::new(log))
    }

    /// Logs open on this core.
    pub fn open_logs(&self) -> Vec<((String, i32), PartitionLog)> {
        self.partitions
            .borrow()
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Open(l) => Some((k.clone(), l.clone())),
                Slot::Opening(_) => None,
            })
            .collect()
    }

    /// Opens every partition placed on this core (at start-up).
    pub async fn open_owned(self: &Rc<Self>) {
        if self.config.is_cluster() {
            // Replicas open as the metadata applier assigns roles.
            return;
        }
        let snap = self.snapshot();
        for t in snap.topics.values() {
            for (p, &s) in t.placement.iter().enumerate() {
                if s == self.id {
                    if let Err(e) = self.partition(&t.name, p as i32).await {
                        tracing::error!(topic = %t.name, partition = p, error = ?e, "cannot open partition");
                    }
                }
            }
        }
    }

    /// Closes and deletes this core's partitions (`mine`, from the deleted
    /// topic's placement) of a deleted topic. Only these: another core's
    /// partition directory is its owner's to remove, and removing it from
    /// here raced with the owner closing the log in it ("directory not
    /// empty", index writes into a removed directory).
    pub async fn drop_topic(&self, topic: &str, mine: &[i32]) {
        for &p in mine {
            if let Some(rep) = self.replicas.borrow_mut().remove(&(topic.to_string(), p)) {
                if let crate::cluster::replica::Role::Leader(l) = &mut *rep.role.borrow_mut() {
                    l.resign();
                }
                rep.generation.set(rep.generation.get() + 1);
                rep.notify();
            }
            let slot = self.partitions.borrow_mut().remove(&(topic.to_string(), p));
            if let Some(Slot::Open(log)) = slot {
                match Rc::try_unwrap(log) {
                    Ok(log) => log.close_for_deletion(),
                    // Still referenced by an in-flight request: close it;
                    // that request fails.
                    Err(log) => {
                        let _ = log.close().await;
                    }
                }
            }
            // Out of the way at once, its files freed at a pace
            // (`spindle_engine::storage::reaper`).
            let dir = self.partition_dir(topic, p);
            if let Err(e) = self.storage.delete_dir(&dir).await {
                tracing::error!(dir = %dir.display(), error = %e, "deleting partition directory");
            }
        }
    }

    /// Pushes a topic's new effective config to its open logs on this core.
    pub fn reconfigure_topic(&self, topic: &str) {
        let snap = self.snapshot();
        let Some(meta) = snap.topics.get(topic) else { return };
        let Ok(cfg) = effective_log_config(&self.config.log_defaults, &meta.configs) else { return };
        for ((t, _), log) in self.open_logs() {
            if t == topic {
                let _ = log.set_config(cfg.clone());
            }
        }
    }

    /// Replays the `__consumer_offsets` partitions this core owns.
    pub async fn load_groups(self: &Rc<Self>) {
        if self.config.is_cluster() {
            // Loaded when this broker becomes the partition's leader.
            return;
        }
        let snap = self.snapshot();
        let Some(t) = snap.topics.get(crate::group::OFFSETS_TOPIC) else { return };
        for (p, &s) in t.placement.iter().enumerate() {
            if s == self.id {
                if let Err(e) = self.groups.load_partition(self, p as i32).await {
                    tracing::error!(partition = p, error = %e, "cannot replay __consumer_offsets");
                }
            }
        }
    }

    /// Group timers and `__consumer_offsets` compaction.
    pub async fn group_maintenance(self: &Rc<Self>, compaction_due: bool) {
        self.groups.sweep();
        // Groups the sweep emptied, and stores that failed before. Not
        // awaited: in cluster mode a store waits for the ISR, and the
        // sweep must not.
        for group in self.groups.stores_due(Some(std::time::Instant::now())) {
            let s = self.clone();
            glommio::spawn_local(async move { crate::group::store_group(&s, &group).await }).detach();
        }
        if !compaction_due {
            return;
        }
        let snap = self.snapshot();
        let Some(t) = snap.topics.get(crate::group::OFFSETS_TOPIC) else { return };
        for (p, &s) in t.placement.iter().enumerate() {
            if s == self.id && self.groups.is_loaded(p as i32) {
                if let Err(e) = self.groups.maybe_compact(self, p as i32).await {
                    tracing::warn!(partition = p, error = %e, "__consumer_offsets compaction failed");
                }
            }
        }
    }

    /// At shutdown: writes the group records still due, once each, and
    /// waits for those being written, until `deadline`. A restart then
    /// restores no member that had left.
    pub async fn flush_group_stores(self: &Rc<Self>, deadline: std::time::Instant) {
        for group in self.groups.stores_due(None) {
            crate::group::store_group(self, &group).await;
        }
        while self.groups.stores_running() && std::time::Instant::now() < deadline {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Retention and `flush.ms` for every open log, run from a timer.
    pub async fn maintenance(&self, retention_due: bool) {
        let now = now_ms();
        for ((topic, p), log) in self.open_logs() {
            if log.config().flush_ms < i64::MAX {
                if let Err(e) = log.flush_if_due(now).await {
                    tracing::error!(topic, partition = p, error = %e, "scheduled flush failed");
                }
            }
            if retention_due {
                log.expire_producers(now.saturating_sub(self.config.producer_id_expiration_ms));
                match log.enforce_retention(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(topic, partition = p, segments = n, "retention deleted segments"),
                    Err(e) => tracing::error!(topic, partition = p, error = %e, "retention failed"),
                }
            }
        }
    }

    /// Clean shutdown of every log on this core.
    pub async fn close_all(&self) {
        // Opens already under way finish first, so their logs close too (no
        // new one starts once stopping: see `partition`).
        loop {
            let opening = self.partitions.borrow().values().find_map(|s| match s {
                Slot::Opening(ev) => Some(ev.listen()),
                Slot::Open(_) => None,
            });
            match opening {
                Some(l) => l.await,
                None => break,
            }
        }
        for ((topic, p), log) in self.open_logs() {
            if let Err(e) = log.close().await {
                tracing::error!(topic, partition = p, error = %e, "closing partition");
            }
        }
    }
}

/// Runs `f` on a one-core broker's shard over `cfg.data_dir` (with
/// `__consumer_offsets`), in a glommio executor: for tests that drive a
/// `Shard` directly.
#[cfg(test)]
pub(crate) fn run_with_test_shard<F, Fut>(cfg: BrokerConfig, f: F)
where
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cfg = Arc::new(cfg);
    let registry = Registry::load(&cfg.data_dir, 1).unwrap();
    crate::server::ensure_offsets_topic(&registry, &cfg, 1).unwrap();
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let (senders, _receivers) = glommio::channels::channel_mesh::MeshBuilder::full(1, 16).join().await.unwrap();
            let storage = DmaStorage::new(&cfg.data_dir).await.unwrap();
            f(Rc::new(Shard::new(0, 1, cfg.clone(), registry, storage, senders))).await;
        })
        .unwrap()
        .join()
        .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::OFFSETS_TOPIC;
    use futures::FutureExt;
    use spindle_engine::Durability;
    use std::time::Duration;

    // Regression: a long-poll Fetch drops its other partitions' waits once
    // one has data, and a wait may be what is opening a partition's log. An
    // open dropped halfway left the partition "opening" forever, so every
    // later Fetch or Produce for it hung (a cluster's replica fetches stalled
    // and acks=all with them).
    #[test]
    fn a_partition_open_dropped_halfway_still_completes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig { data_dir: dir.path().to_path_buf(), ..BrokerConfig::default() };
        run_with_test_shard(cfg, |shard| async move {
            // Polled once (the open starts and waits for the disk), then dropped.
            assert!(shard.partition(OFFSETS_TOPIC, 0).now_or_never().is_none(), "the open waits for I/O");
            let again =
                glommio::timer::timeout(Duration::from_secs(10), async { Ok(shard.partition(OFFSETS_TOPIC, 0).await) })
                    .await;
            assert!(matches!(again, Ok(Ok(_))), "the partition never finished opening");
        });
    }

    /// A batch of one record whose value is `n`, CRC and all.
    fn numbered_batch(n: u32) -> bytes::Bytes {
        let value = n.to_be_bytes();
        let rec = [spindle_engine::records::NewRecord { key: None, value: Some(&value[..]) }];
        spindle_engine::records::encode_batch(&rec, now_ms())
    }

    // Regression: produces pipelined to a partition not open yet appended
    // out of order. The first opened the log and was woken after the
    // others, which had waited for the open.
    #[test]
    fn produces_to_a_partition_being_opened_append_in_the_order_they_started() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig { data_dir: dir.path().to_path_buf(), ..BrokerConfig::default() };
        run_with_test_shard(cfg, |shard| async move {
            let produces = (0..64u32)
                .map(|n| crate::ops::produce(&shard, OFFSETS_TOPIC, 3, numbered_batch(n), Durability::Written, None));
            let bases: Vec<i64> = futures::future::join_all(produces).await.iter().map(|o| o.base_offset).collect();
            assert_eq!(bases, (0..64).collect::<Vec<i64>>(), "offsets in the order the produces started");
        });
    }

    // Glommio wakes the senders waiting on a full channel in reverse.
    #[test]
    fn items_submitted_to_another_core_arrive_in_submission_order_past_a_full_channel() {
        use glommio::channels::channel_mesh::MeshBuilder;
        const ITEMS: u32 = 5_000;
        let mesh: MeshBuilder<u32, _> = MeshBuilder::full(2, 8);
        let receiver = {
            let mesh = mesh.clone();
            glommio::LocalExecutorBuilder::default()
                .io_memory(1 << 20)
                .spawn(move || async move {
                    let (_senders, mut receivers) = mesh.join().await.unwrap();
                    let mut got = Vec::new();
                    for (_, r) in receivers.streams() {
                        while let Some(n) = r.recv().await {
                            got.push(n);
                            if got.len() % 100 == 0 {
                                // A slow consumer: the channel fills.
                                glommio::timer::sleep(Duration::from_millis(1)).await;
                            }
                            if got.len() == ITEMS as usize {
                                break;
                            }
                        }
                    }
                    got
                })
                .unwrap()
        };
        let sender = glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(move || async move {
                let (senders, _receivers) = mesh.join().await.unwrap();
                let to = 1 - senders.peer_id();
                let m = Rc::new(Mesh::new(senders));
                for n in 0..ITEMS {
                    m.submit(to, n);
                    if n % 7 == 0 {
                        glommio::yield_if_needed().await;
                    }
                }
                // Keep the senders until everything went out.
                while m.outbox.borrow().contains_key(&to) {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
            })
            .unwrap();
        let got = receiver.join().unwrap();
        sender.join().unwrap();
        assert_eq!(got, (0..ITEMS).collect::<Vec<u32>>());
    }

    #[test]
    fn a_query_whose_caller_gave_up_does_not_start_or_stops() {
        use std::task::{Context, Poll};
        let started = Rc::new(Cell::new(0));
        let dropped = Rc::new(Cell::new(0));
        struct OnDrop(Rc<Cell<u32>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let work = |started: Rc<Cell<u32>>, dropped: Rc<Cell<u32>>, ready: bool| {
            move || {
                started.set(started.get() + 1);
                let guard = OnDrop(dropped);
                async move {
                    if !ready {
                        futures::future::pending::<()>().await;
                    }
                    drop(guard);
                    7
                }
            }
        };
        // Wanted: answered.
        let (tx, rx) = oneshot::channel();
        futures::executor::block_on(answer_while_wanted(tx, work(started.clone(), dropped.clone(), true)));
        assert_eq!(futures::executor::block_on(rx), Ok(7));
        assert_eq!(started.get(), 1);
        // Given up before: never started.
        let (tx, rx) = oneshot::channel::<i32>();
        drop(rx);
        futures::executor::block_on(answer_while_wanted(tx, work(started.clone(), dropped.clone(), true)));
        assert_eq!(started.get(), 1);
        // Given up while it runs: the work is dropped and the job ends.
        let (tx, rx) = oneshot::channel::<i32>();
        let job = answer_while_wanted(tx, work(started.clone(), dropped.clone(), false));
        futures::pin_mut!(job);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(job.as_mut().poll(&mut cx).is_pending());
        assert_eq!((started.get(), dropped.get()), (2, 1), "running, the first work's guard gone");
        drop(rx);
        assert_eq!(job.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(dropped.get(), 2, "the pending work was dropped");
    }

    // Regression: in a cluster the metadata applier kept opening partitions
    // after `close_all` had run; the broker exited with their blocking file
    // operations in flight, and glommio's blocking thread panicked ("failed
    // to send response") after "clean shutdown complete".
    #[test]
    fn once_stopping_no_partition_opens_and_close_all_waits_for_opens_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig { data_dir: dir.path().to_path_buf(), ..BrokerConfig::default() };
        run_with_test_shard(cfg, |shard| async move {
            // An open under way when the shutdown begins (polled once, then
            // left to its own task).
            assert!(shard.partition(OFFSETS_TOPIC, 0).now_or_never().is_none(), "the open waits for I/O");
            shard.begin_shutdown();
            assert!(
                matches!(shard.partition(OFFSETS_TOPIC, 1).await, Err(PartitionError::Storage(_))),
                "a partition opened after the shutdown began"
            );
            shard.close_all().await;
            let slots = shard.partitions.borrow();
            assert!(slots.values().all(|s| matches!(s, Slot::Open(_))), "close_all returned with an open under way");
            assert!(slots.contains_key(&(OFFSETS_TOPIC.to_string(), 0)), "the open under way did not finish");
            assert!(!slots.contains_key(&(OFFSETS_TOPIC.to_string(), 1)));
        });
    }
}
