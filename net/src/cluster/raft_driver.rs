//! The task that runs a node's side of the metadata quorum: it owns the
//! [`QuorumCore`] and the [`RaftLog`], ticks the Raft clock, feeds in peer
//! messages and proposals, and handles each ready in raft-rs's order
//! (module docs of `spindle_replication::quorum`): send, apply, persist,
//! send what needed the persist, advance.
//!
//! Transport is the caller's: outbound messages go to an [`Outbound`]
//! (per-peer bounded queues that drop when full; Raft retransmits), inbound
//! ones arrive on a channel. Committed entries go to an `apply` callback in
//! log order, from index 1 after every start.
//!
//! A storage error is fatal for the node (fail-stop): raft-rs cannot go on
//! with a log it could not persist, and neither can we.

use super::raft_log::{RaftLog, RaftLogError};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use spindle_engine::storage::Storage;
use spindle_replication::quorum::{
    Entry, EntryType, Message, QuorumConfig, QuorumCore, QuorumError, QuorumStatus, TICK_MS,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where outbound Raft messages go. Must not block: a full queue drops.
pub trait Outbound {
    fn send(&mut self, m: Message);
}

/// Inputs of a running driver.
pub enum Input {
    /// A message from a peer.
    Peer(Message),
    /// Context and data to append to the quorum's log (answered
    /// `NotLeader` on a follower). Completion is the caller's: it sees the
    /// entry applied.
    Propose(Bytes, Bytes, futures::channel::oneshot::Sender<Result<(), QuorumError>>),
    /// Report the status back.
    Status(futures::channel::oneshot::Sender<QuorumStatus>),
    /// The transport could not reach this peer.
    Unreachable(spindle_replication::types::BrokerId),
}

/// A running driver's input channel for callers that must not wait. It
/// keeps one sender and sends through it: a freshly cloned futures sender
/// always has a free slot, so cloning per message would bound nothing.
pub struct DriverHandle(std::cell::RefCell<mpsc::Sender<Input>>);

impl DriverHandle {
    pub fn new(tx: mpsc::Sender<Input>) -> std::rc::Rc<Self> {
        std::rc::Rc::new(DriverHandle(std::cell::RefCell::new(tx)))
    }

    /// Queues `input`; false if the queue is full or the driver is gone.
    pub fn try_send(&self, input: Input) -> bool {
        self.0.borrow_mut().try_send(input).is_ok()
    }

    /// The quorum's status; `None` if the driver cannot take the question.
    pub async fn status(&self) -> Option<QuorumStatus> {
        let (tx, rx) = futures::channel::oneshot::channel();
        if !self.try_send(Input::Status(tx)) {
            return None;
        }
        rx.await.ok()
    }

    /// A sender of its own, for a task that waits for room (backpressure).
    pub fn sender(&self) -> mpsc::Sender<Input> {
        self.0.borrow().clone()
    }
}

pub struct QuorumDriver<S: Storage> {
    core: QuorumCore,
    log: RaftLog<S>,
}

impl<S: Storage> QuorumDriver<S> {
    /// Opens the node's Raft log under `data_dir` and starts the core from
    /// it; the first readies hand out every committed entry again.
    pub async fn open(
        storage: S,
        data_dir: &Path,
        cfg: &QuorumConfig,
        seed: u64,
        logger: &slog::Logger,
    ) -> Result<Self, DriverError> {
        let (log, restored) = RaftLog::open(storage, data_dir, now_ms()).await?;
        let mut core = QuorumCore::open(cfg, restored, seed, logger)?;
        if cfg.voters == [cfg.node] {
            // A single voter need not wait an election timeout.
            core.campaign()?;
        }
        Ok(QuorumDriver { core, log })
    }

    pub fn status(&self) -> QuorumStatus {
        self.core.status()
    }

    /// Handles every ready raft-rs has, in its order.
    pub async fn drain(&mut self, out: &mut impl Outbound, apply: &mut impl FnMut(&Entry)) -> Result<(), DriverError> {
        while let Some(mut rd) = self.core.ready() {
            for m in rd.send_now.drain(..) {
                out.send(m);
            }
            apply_all(&rd.committed, apply);
            self.log.persist(&rd.entries, rd.hard_state.as_ref(), now_ms()).await?;
            for m in rd.send_after_persist.drain(..) {
                out.send(m);
            }
            let light = self.core.persisted(rd);
            for m in light.send {
                out.send(m);
            }
            apply_all(&light.committed, apply);
        }
        Ok(())
    }

    /// The driver loop: ticks every [`TICK_MS`] (`tick` in tests), handles
    /// inputs until the channel closes. Returns an error only for a storage
    /// failure, which ends the node.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut out: impl Outbound,
        mut apply: impl FnMut(&Entry),
        tick: Option<Duration>,
    ) -> Result<(), DriverError> {
        let tick = tick.unwrap_or(Duration::from_millis(TICK_MS));
        let mut next_tick = Instant::now() + tick;
        self.drain(&mut out, &mut apply).await?;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let timer = glommio::timer::sleep(wait);
            futures::pin_mut!(timer);
            match futures::future::select(inputs.next(), timer).await {
                futures::future::Either::Left((None, _)) => return self.close().await,
                futures::future::Either::Left((Some(input), _)) => {
                    self.handle(input);
                    // Take everything already queued before persisting, so
                    // one fdatasync covers a burst.
                    while let Ok(input) = inputs.try_recv() {
                        self.handle(input);
                    }
                }
                futures::future::Either::Right(_) => {}
            }
            if Instant::now() >= next_tick {
                self.core.tick();
                next_tick = Instant::now() + tick;
            }
            self.drain(&mut out, &mut apply).await?;
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Peer(m) => {
                if let Err(e) = self.core.step(m) {
                    tracing::debug!(error = %e, "raft message refused");
                }
            }
            Input::Propose(context, data, done) => {
                let _ = done.send(self.core.propose(context, data));
            }
            Input::Status(tx) => {
                let _ = tx.send(self.core.status());
            }
            Input::Unreachable(peer) => self.core.report_unreachable(peer),
        }
    }

    async fn close(self) -> Result<(), DriverError> {
        Ok(self.log.close().await?)
    }
}

/// Hands every normal entry to `apply`, the empty ones included: a new
/// leader's first entry of its term is empty, and a controller may act only
/// once it has applied that entry.
fn apply_all(entries: &[Entry], apply: &mut impl FnMut(&Entry)) {
    for e in entries.iter().filter(|e| e.entry_type == EntryType::EntryNormal) {
        apply(e);
    }
}

fn now_ms() -> i64 {
    crate::shard::now_ms()
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Log(#[from] RaftLogError),
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::oneshot;
    use spindle_engine::storage::memory::MemStorage;
    use spindle_replication::quorum::{discard_logger, node_id, Role};
    use spindle_replication::types::BrokerId;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    type Net = Rc<RefCell<BTreeMap<BrokerId, mpsc::Sender<Input>>>>;

    /// Delivers to the peer's input channel if it is running; drops when
    /// its queue is full or it is down, as a lossy network would.
    struct ToPeers(Net);

    impl Outbound for ToPeers {
        fn send(&mut self, m: Message) {
            if let Some(tx) = self.0.borrow_mut().get_mut(&node_id(m.to)) {
                let _ = tx.try_send(Input::Peer(m));
            }
        }
    }

    const TICK: Duration = Duration::from_millis(5);
    /// How many ticks a test waits for an election or an apply: 10 s, far
    /// above the 50-100 ms an election takes, for loaded CI machines.
    const WAIT_TICKS: usize = 2000;

    struct Node {
        storage: MemStorage,
        applied: Rc<RefCell<Vec<String>>>,
        task: Option<glommio::task::JoinHandle<Result<(), DriverError>>>,
    }

    async fn start(id: BrokerId, voters: &[BrokerId], node: &mut Node, net: &Net) {
        let cfg = QuorumConfig { node: id, voters: voters.to_vec() };
        let driver = QuorumDriver::open(node.storage.clone(), Path::new("/data"), &cfg, id as u64, &discard_logger())
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(1024);
        net.borrow_mut().insert(id, tx);
        node.applied.borrow_mut().clear();
        let applied = node.applied.clone();
        let apply = move |e: &Entry| {
            if !e.data.is_empty() {
                applied.borrow_mut().push(String::from_utf8(e.data.to_vec()).unwrap());
            }
        };
        let task = glommio::spawn_local(driver.run(rx, ToPeers(net.clone()), apply, Some(TICK)));
        node.task = Some(task.detach());
    }

    async fn status(net: &Net, id: BrokerId) -> QuorumStatus {
        let (tx, rx) = oneshot::channel();
        let mut sender = net.borrow().get(&id).cloned().unwrap();
        sender.try_send(Input::Status(tx)).unwrap();
        rx.await.unwrap()
    }

    async fn leader(net: &Net, ids: &[BrokerId]) -> BrokerId {
        for _ in 0..WAIT_TICKS {
            glommio::timer::sleep(TICK).await;
            for &id in ids {
                if net.borrow().contains_key(&id) && status(net, id).await.role == Role::Leader {
                    return id;
                }
            }
        }
        panic!("no leader elected");
    }

    async fn propose(net: &Net, id: BrokerId, data: &str) -> Result<(), QuorumError> {
        let (tx, rx) = oneshot::channel();
        let mut sender = net.borrow().get(&id).cloned().unwrap();
        sender.try_send(Input::Propose(Bytes::new(), Bytes::copy_from_slice(data.as_bytes()), tx)).unwrap();
        rx.await.unwrap()
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..WAIT_TICKS {
            if f() {
                return;
            }
            glommio::timer::sleep(TICK).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn three_drivers_elect_commit_and_survive_a_crashed_leader() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let voters = [0, 1, 2];
                let net: Net = Rc::default();
                let mut nodes: Vec<Node> =
                    (0..3).map(|_| Node { storage: MemStorage::new(), applied: Rc::default(), task: None }).collect();
                for (id, n) in nodes.iter_mut().enumerate() {
                    start(id as BrokerId, &voters, n, &net).await;
                }
                let first = leader(&net, &voters).await;
                for i in 0..10 {
                    propose(&net, first, &format!("op{i}")).await.unwrap();
                }
                let want: Vec<String> = (0..10).map(|i| format!("op{i}")).collect();
                for n in &nodes {
                    until("every node applies", || *n.applied.borrow() == want).await;
                }

                // kill -9 the leader: its task stops, its disk loses what was
                // not written (everything acknowledged to raft-rs was synced).
                let dead = first as usize;
                net.borrow_mut().remove(&first);
                nodes[dead].task.take().unwrap().cancel();
                nodes[dead].storage.crash_power(9);
                let survivors: Vec<BrokerId> = voters.iter().copied().filter(|&v| v != first).collect();
                let second = leader(&net, &survivors).await;
                propose(&net, second, "after").await.unwrap();

                // It restarts, replays its log from index 1, and catches up.
                start(first, &voters, &mut nodes[dead], &net).await;
                let mut want = want;
                want.push("after".into());
                for n in &nodes {
                    until("every node applies after failover", || *n.applied.borrow() == want).await;
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn three_voters_over_tcp_elect_and_commit() {
        use crate::cluster::transport::{serve, RaftPeers};
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let voters = [0, 1, 2];
                let listeners: Vec<_> =
                    (0..3).map(|_| glommio::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
                let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
                let net: Net = Rc::default();
                let mut applied = Vec::new();
                for (id, listener) in listeners.into_iter().enumerate() {
                    let id = id as BrokerId;
                    let (tx, rx) = mpsc::channel(1024);
                    net.borrow_mut().insert(id, tx.clone());
                    glommio::spawn_local(serve(listener, tx.clone(), voters.to_vec(), None)).detach();
                    let peers = voters.iter().filter(|&&p| p != id).map(|&p| (p, addrs[p as usize])).collect();
                    let out = RaftPeers::spawn(peers, tx);
                    let cfg = QuorumConfig { node: id, voters: voters.to_vec() };
                    let driver = QuorumDriver::open(
                        MemStorage::new(),
                        Path::new("/data"),
                        &cfg,
                        7 + id as u64,
                        &discard_logger(),
                    )
                    .await
                    .unwrap();
                    let log: Rc<RefCell<Vec<String>>> = Rc::default();
                    let l = log.clone();
                    let apply = move |e: &Entry| {
                        if !e.data.is_empty() {
                            l.borrow_mut().push(String::from_utf8(e.data.to_vec()).unwrap());
                        }
                    };
                    glommio::spawn_local(driver.run(rx, out, apply, Some(TICK))).detach();
                    applied.push(log);
                }
                let leader = leader(&net, &voters).await;
                for i in 0..5 {
                    propose(&net, leader, &format!("tcp{i}")).await.unwrap();
                }
                let want: Vec<String> = (0..5).map(|i| format!("tcp{i}")).collect();
                for log in &applied {
                    until("every node applies over TCP", || *log.borrow() == want).await;
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_single_voter_commits_without_peers() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let net: Net = Rc::default();
                let mut node = Node { storage: MemStorage::new(), applied: Rc::default(), task: None };
                start(0, &[0], &mut node, &net).await;
                propose(&net, 0, "x").await.unwrap();
                until("the entry applies", || *node.applied.borrow() == ["x"]).await;
                // Restart: the committed entry is applied again from the log.
                net.borrow_mut().remove(&0);
                node.task.take().unwrap().cancel();
                node.storage.crash_power(3);
                start(0, &[0], &mut node, &net).await;
                until("the entry applies after restart", || *node.applied.borrow() == ["x"]).await;
                assert_eq!(status(&net, 0).await.role, Role::Leader);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
