//! The cluster's drivers: glommio tasks that feed the sans-IO rules of
//! `spindle-replication` with messages, the clock and the disk.
//!
//! Design: `docs/replication-design.md`. Built so far: the metadata quorum
//! runs between the voters of `controller.quorum.voters` (Raft log on the
//! engine, TCP transport on the controller listener), and every voter
//! applies the committed metadata records to its [`MetadataImage`]. Brokers
//! do not register and the data path does not replicate yet.

pub mod controller_api;
pub mod fetcher;
pub mod forward;
pub mod lifecycle;
pub mod node;
pub mod observer;
pub mod raft_driver;
pub mod raft_log;
pub mod replica;
pub mod transport;

use crate::config::BrokerConfig;
use crate::shard::Shard;
use futures::channel::mpsc;
use glommio::net::TcpListener;
use node::ClusterNode;
use raft_driver::{DriverHandle, QuorumDriver};
use spindle_engine::storage::dma::DmaStorage;
use spindle_replication::controller::ControllerConfig;
use spindle_replication::controller::{ControllerReply, ControllerRequest};
use spindle_replication::quorum::{Entry, QuorumConfig, QuorumStatus, Role};
use std::rc::Rc;
use std::time::Duration;

/// Inputs queued for the quorum driver before senders wait.
pub(crate) const QUORUM_INPUT_QUEUE: usize = 4096;

/// Core 0's handle on the running quorum.
pub struct QuorumHandle {
    driver: Rc<DriverHandle>,
    /// Committed metadata and, when this node leads, the active controller.
    pub node: Rc<ClusterNode>,
    /// This broker's registration with the controller.
    pub registration: Rc<lifecycle::Registration>,
}

/// How long a stopping broker waits for the controller to move its
/// leaderships away (`controlled.shutdown` in Kafka, bounded the same way).
pub const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl QuorumHandle {
    /// Asks the controller for a controlled shutdown and waits until it is
    /// done or [`CONTROLLED_SHUTDOWN_TIMEOUT`] passed (no controller
    /// reachable: the session expiry fences this broker later instead).
    pub async fn controlled_shutdown(&self) {
        self.registration.want_shutdown.set(true);
        let deadline = std::time::Instant::now() + CONTROLLED_SHUTDOWN_TIMEOUT;
        while !self.registration.shutdown_done.get() && std::time::Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        if !self.registration.shutdown_done.get() {
            tracing::warn!("controlled shutdown timed out; stopping anyway");
        }
    }

    pub async fn status(&self) -> Option<QuorumStatus> {
        self.driver.status().await
    }
}

/// Runs a controller request from any core: on core 0, sent to the active
/// controller (in-process or over its controller listener).
pub async fn forward_request(
    shard: &Rc<Shard>,
    request: ControllerRequest,
    timeout: Duration,
) -> Result<ControllerReply, String> {
    shard
        .invoke_on(0, move |s| async move {
            let Some(q) = s.quorum.get() else { return Err("this broker runs no metadata quorum".to_string()) };
            forward::forward(&q.node, &q.driver, &s.config.controller_quorum_voters, request, timeout)
                .await
                .map_err(|e| format!("no active controller answered: {e:?}"))
        })
        .await
}

/// Core 0, cluster mode: publishes each applied metadata change to the
/// topic registry and has every core bring its replicas' roles in line
/// (design 4.3). Changes are coalesced: a core acts on the latest image.
pub async fn run_applier(shard: Rc<Shard>) {
    let Some(q) = shard.quorum.get() else { return };
    let node = q.node.clone();
    let mut published: Option<u64> = None;
    loop {
        let listener = node.applied.listen();
        let index = node.image.borrow().applied_index;
        if published == Some(index) {
            let tick = glommio::timer::sleep(APPLIER_REFRESH);
            futures::pin_mut!(tick);
            futures::future::select(listener, tick).await;
            if shard.is_stopping() {
                return;
            }
            // Also refresh now and then: the quorum leader (the controller
            // named in Metadata) changes without metadata entries.
            if published == Some(node.image.borrow().applied_index) {
                let leader = q.status().await.and_then(|s| s.leader);
                let current = shard.snapshot().cluster.as_ref().and_then(|v| v.controller);
                if leader == current {
                    continue;
                }
            }
        }
        // Serve nothing before this process's own registration is in the
        // image (Kafka's brokers wait to be registered and caught up): the
        // replayed log still shows the previous incarnation, unfenced, and
        // leaderships the controller is about to move.
        let registered = q.registration.broker_epoch.get();
        let current = node.image.borrow().broker(shard.config.node_id).map(|b| b.epoch);
        if registered.is_none() || current != registered {
            published = Some(index);
            continue;
        }
        let image = node.image.borrow().clone();
        let leader = q.status().await.and_then(|s| s.leader);
        published = Some(image.applied_index);
        let removed = match shard.registry.sync_from_image(&image, leader, shard.config.node_id, shard.nr_shards) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot persist the topic registry; stopping (fail-stop)");
                std::process::exit(70);
            }
        };
        for core in 0..shard.nr_shards {
            let removed: Vec<(String, Vec<i32>)> = removed
                .iter()
                .map(|t| {
                    let mine = t.placement.iter().enumerate().filter(|(_, &c)| c == core).map(|(p, _)| p as i32);
                    (t.name.clone(), mine.collect())
                })
                .collect();
            shard
                .invoke_on(core, move |s| async move {
                    for (name, mine) in removed {
                        s.drop_topic(&name, &mine).await;
                    }
                    replica::reconcile(&s).await;
                })
                .await;
        }
    }
}

/// Wall-clock milliseconds as the sans-IO rules take them (unsigned).
pub(crate) fn clock_ms() -> u64 {
    crate::shard::now_ms().max(0) as u64
}

/// How often the applier rechecks the quorum leader with no new entries.
const APPLIER_REFRESH: Duration = Duration::from_millis(500);

/// Starts this node's side of the metadata quorum on the current core:
/// opens the Raft log in the data directory, serves peers on `listener`,
/// and runs the driver. A storage failure of the Raft log stops the
/// process (fail-stop): a voter that cannot persist must not vote.
pub async fn start_quorum(
    cfg: &BrokerConfig,
    storage: DmaStorage,
    listener: TcpListener,
) -> Result<QuorumHandle, String> {
    let voters: Vec<_> = cfg.controller_quorum_voters.iter().map(|(id, _)| *id).collect();
    let qcfg = QuorumConfig { node: cfg.node_id, voters };
    let seed = uuid::Uuid::new_v4().as_u64_pair().0;
    let driver = QuorumDriver::open(storage, &cfg.data_dir, &qcfg, seed, &tracing_logger())
        .await
        .map_err(|e| format!("metadata quorum: {e}"))?;
    let (tx, rx) = mpsc::channel(QUORUM_INPUT_QUEUE);
    let handle = DriverHandle::new(tx.clone());
    let node = ClusterNode::new(
        cfg.node_id,
        cfg.controller_quorum_voters.len(),
        handle.clone(),
        ControllerConfig {
            session_timeout_ms: cfg.broker_session_timeout_ms,
            default_replication_factor: cfg.default_replication_factor,
            default_num_partitions: cfg.num_partitions,
            offsets_topic_configs: crate::server::offsets_topic_configs(cfg),
            ..ControllerConfig::new(cfg.controller_quorum_voters.len())
        },
    );
    let voters = cfg.controller_quorum_voters.iter().map(|(id, _)| *id).collect();
    glommio::spawn_local(transport::serve(listener, tx.clone(), voters, Some((node.clone(), handle.clone())))).detach();
    let peers = cfg.controller_quorum_voters.iter().filter(|(id, _)| *id != cfg.node_id).copied().collect();
    let out = transport::RaftPeers::spawn(peers, tx.clone());
    let n = node.clone();
    let apply = move |e: &Entry| n.on_entry(e);
    glommio::spawn_local(async move {
        if let Err(e) = driver.run(rx, out, apply, None).await {
            tracing::error!(error = %e, "metadata quorum storage failed; stopping (fail-stop)");
            std::process::exit(70);
        }
    })
    .detach();
    // The controller's clock: activation, resignation, session expiry.
    let (n, h) = (node.clone(), handle.clone());
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(node::CONTROLLER_TICK).await;
            match h.status().await {
                Some(status) => n.tick(&status),
                None => tracing::warn!("quorum driver did not answer a status request; controller tick skipped"),
            }
        }
    })
    .detach();
    let registration = lifecycle::spawn(cfg, node.clone(), handle.clone());
    tracing::info!(node = cfg.node_id, voters = ?cfg.controller_quorum_voters, "metadata quorum started");
    Ok(QuorumHandle { driver: handle, node, registration })
}

/// JSON for `/v1/cluster`.
pub async fn cluster_json(cfg: &BrokerConfig, q: Option<&QuorumHandle>) -> serde_json::Value {
    let Some(q) = q else {
        return serde_json::json!({ "node_id": cfg.node_id, "mode": "single-node" });
    };
    let status = q.status().await;
    let image = q.node.image.borrow();
    serde_json::json!({
        "node_id": cfg.node_id,
        "mode": "quorum",
        "voters": cfg.controller_quorum_voters.iter().map(|(id, a)| serde_json::json!({"id": id, "address": a.to_string()})).collect::<Vec<_>>(),
        "quorum": status.map(|s| serde_json::json!({
            "role": match s.role { Role::Leader => "leader", Role::Candidate => "candidate", Role::PreCandidate => "pre-candidate", Role::Follower => "follower" },
            "term": s.term,
            "leader": s.leader,
            "commit_index": s.commit,
            "last_index": s.last_index,
        })),
        "controller_active": q.node.is_active(),
        "registration": {
            "broker_epoch": q.registration.broker_epoch.get(),
            "fenced": q.registration.fenced.get(),
        },
        "metadata": {
            "applied_index": image.applied_index,
            "brokers": image.brokers.values().map(|b| serde_json::json!({
                "id": b.broker_id,
                "leads": image.partitions().filter(|(_, p)| p.leader == Some(b.broker_id)).count(),
                "epoch": b.epoch,
                "host": b.host,
                "port": b.port,
                "fenced": b.fenced,
                "in_controlled_shutdown": b.in_controlled_shutdown,
            })).collect::<Vec<_>>(),
            "topics": image.topics.values().map(|t| serde_json::json!({
                "name": t.name,
                "topic_id": t.topic_id.to_string(),
                "partitions": t.partitions.len(),
                "configs": t.configs,
                "assignment": t.partitions.iter().enumerate().map(|(p, r)| serde_json::json!({
                    "partition": p,
                    "leader": r.leader,
                    "leader_epoch": r.leader_epoch,
                    "replicas": r.replicas,
                    "isr": r.isr,
                    "offline_replicas": r.replicas.iter().filter(|b| !image.is_active_broker(**b) && image.broker(**b).is_none_or(|x| x.fenced)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "under_replicated_partitions": image.partitions().filter(|(_, r)| r.isr.len() < r.replicas.len()).count(),
            "offline_partitions": image.partitions().filter(|(_, r)| r.leader.is_none()).count(),
        },
    })
}

/// raft-rs logs through slog; this forwards it to `tracing` at debug level.
fn tracing_logger() -> slog::Logger {
    struct ToTracing;
    impl slog::Drain for ToTracing {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            tracing::debug!(target: "raft", "{}", record.msg());
            Ok(())
        }
    }
    slog::Logger::root(ToTracing, slog::o!())
}
