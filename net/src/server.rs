//! `spindle serve`: one pinned glommio executor per core, each accepting
//! connections on the same address (SO_REUSEPORT: the kernel spreads
//! connections over cores) and owning a share of the partitions.
//!
//! Shutdown (SIGTERM/SIGINT): every core stops accepting, waits for its
//! in-flight requests, then closes its logs cleanly (fdatasync, indexes,
//! clean-shutdown marker). Cores wait for each other before exiting, so a
//! request forwarded across cores never finds its target gone.

use crate::config::BrokerConfig;
use crate::metadata::Registry;
use crate::shard::{Job, Shard, MESH_CHANNEL_CAPACITY};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use spindle_engine::storage::dma::DmaStorage;
use spindle_engine::storage::{blocking, reaper};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long shutdown waits for in-flight requests before closing logs.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Tick of each core's maintenance timer (flush.ms checks).
const MAINTENANCE_TICK: Duration = Duration::from_millis(100);

static CLUSTER_ID: OnceLock<String> = OnceLock::new();

/// The cluster id clients see: the metadata image's in cluster mode, else
/// this node's own (kept in the data directory).
pub fn cluster_id(shard: &Shard) -> String {
    if let Some(id) = shard.snapshot().cluster.as_ref().and_then(|v| v.cluster_id.clone()) {
        return id;
    }
    if shard.config.is_cluster() {
        // Every member of a quorum must report the same id, and each
        // data directory holds its own: derive it from the voter set,
        // which all members are configured with.
        let voters: Vec<String> =
            shard.config.controller_quorum_voters.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
        let spec = voters.join(",");
        let (a, b) = (crc32c::crc32c(spec.as_bytes()), crc32c::crc32c_append(0x9e37_79b9, spec.as_bytes()));
        return format!("spindle-{a:08x}{b:08x}");
    }
    CLUSTER_ID.get().cloned().unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("topic registry: {0}")]
    Registry(#[from] crate::metadata::RegistryError),
    #[error("starting core {cpu}: {why}")]
    Executor { cpu: usize, why: String },
    #[error("core {0} failed: {1}")]
    Core(usize, String),
    #[error("{what} {addr}: {source}")]
    Listen { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error(
        "cannot run under SCHED_FIFO: at start glommio busy-polls a disk read that an io_uring worker thread \
         of the same priority, on the same CPU, must complete, so the broker would never start; \
         run it under SCHED_OTHER (the default) or SCHED_RR"
    )]
    SchedFifo,
}

/// Refuses `SCHED_FIFO`, which every thread the broker starts inherits.
/// Under `chrt -f` the broker never finished starting: its executor
/// busy-polled glommio's polled-I/O ring (most likely glommio's disk probe)
/// for a read that an io_uring worker thread, of the same priority and on
/// the same CPU, never got to run and complete (bench/RESULTS.md, session
/// 27). `SCHED_RR` lets that worker run after a time slice.
fn check_scheduling_policy() -> Result<(), ServerError> {
    // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy == libc::SCHED_FIFO {
        return Err(ServerError::SchedFifo);
    }
    Ok(())
}

fn load_cluster_id(cfg: &BrokerConfig) -> std::io::Result<String> {
    let path = cfg.data_dir.join("cluster.id");
    if let Some(b) = blocking::read_file(&path)? {
        let id = String::from_utf8_lossy(&b).trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    // Kafka cluster ids are 22-character URL-safe base64 of a UUID.
    let u = uuid::Uuid::new_v4();
    let id: String = u.simple().to_string().chars().take(22).collect();
    blocking::write_file_atomic(&path, id.as_bytes())?;
    Ok(id)
}

/// Creates `__consumer_offsets` on first start: Kafka's 50 partitions, kept
/// forever (the coordinator compacts it by snapshots), small segments.
pub(crate) fn ensure_offsets_topic(registry: &Registry, cfg: &BrokerConfig, n: usize) -> Result<(), ServerError> {
    use crate::group::{OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS};
    if registry.snapshot().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let configs = offsets_topic_configs(cfg);
    registry.create_topic(OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS, configs, &cfg.log_defaults, n, false)?;
    Ok(())
}

/// `__consumer_offsets`' topic configs: kept forever (the coordinator
/// compacts it), segments a quarter of the compaction threshold, so
/// compaction frees space: on disk a partition stays under ~1.25x the
/// threshold plus one snapshot of its live keys.
pub(crate) fn offsets_topic_configs(cfg: &BrokerConfig) -> std::collections::BTreeMap<String, String> {
    let segment_bytes = (cfg.offsets_compact_bytes / 4).clamp(4096, crate::group::OFFSETS_SEGMENT_BYTES);
    [("retention.ms", "-1".to_string()), ("segment.bytes", segment_bytes.to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Parses a partition directory name, `TOPIC-PARTITION`.
pub(crate) fn partition_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    let p: i32 = p.parse().ok()?;
    (!topic.is_empty() && p >= 0).then_some((topic, p))
}

/// Renames partition directories of topics the registry no longer has to
/// tombstones, which core 0 then removes
/// ([`spindle_engine::storage::reaper`]). A crash
/// between DeleteTopics saving the registry and renaming the directories
/// leaves them behind; without this, creating a topic of the same name
/// would bring the deleted records back.
fn bury_orphan_partitions(data_dir: &std::path::Path, snap: &crate::metadata::Snapshot) -> std::io::Result<()> {
    for name in blocking::list_subdirs(data_dir)? {
        let Some((topic, p)) = partition_dir_name(&name) else { continue };
        let live = snap.topics.get(topic).is_some_and(|t| p < t.partitions());
        if !live {
            tracing::warn!(dir = %name, "removing the directory of a deleted partition");
            reaper::bury(&data_dir.join(&name))?;
        }
    }
    Ok(())
}

/// Shutdown state shared by every core.
pub struct Stop {
    pub requested: Arc<AtomicBool>,
    closed: AtomicUsize,
    startup: Startup,
}

/// Start-up gate between cores. A core whose set-up fails (direct-I/O probe,
/// binding its listener) must not leave the others serving alone: they would
/// forward requests to a core that is gone (a panic in `invoke_on`) and, at
/// shutdown, wait forever for it to close. So every core reports the outcome
/// of its set-up, none serves before all have reported, and none serves if
/// one failed.
#[derive(Default)]
struct Startup {
    /// The core whose turn it is to run the direct-I/O probe: see
    /// [`set_up_core`].
    probe_turn: AtomicUsize,
    reported: AtomicUsize,
    failed: AtomicBool,
    /// Tombstones found before any core ran, for core 0 to remove. Listed
    /// here, not by core 0 once it runs, so that none made by this run (a
    /// DeleteTopics another core already serves) is removed twice.
    tombstones: std::sync::Mutex<Vec<std::path::PathBuf>>,
    /// The ack journals, with what earlier runs left in them.
    ack_journals: Option<Arc<crate::journal::AckJournals>>,
}

/// What a core whose own set-up worked answers when another core's failed.
const PEER_FAILED: &str = "not serving: another core failed to start";

/// Poll interval of the start-up gate (start-up only).
const STARTUP_POLL: Duration = Duration::from_millis(1);

/// How long start-up waits for an address held by a listener to be freed.
/// A process killed with -9 keeps its listening sockets for a few
/// milliseconds after it is reaped, while the kernel tears down its
/// io_uring rings (4-6 ms measured on an idle broker); a supervisor or a
/// test that restarts it at once found the port "in use".
pub const ADDRESS_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// [`check_address_free`], retried for up to [`ADDRESS_RELEASE_WAIT`] while
/// the address is in use.
pub fn wait_address_free(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + ADDRESS_RELEASE_WAIT;
    let mut logged = false;
    loop {
        match check_address_free(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                if !logged {
                    tracing::info!(%addr, wait = ?ADDRESS_RELEASE_WAIT, "address in use; waiting in case a process that just exited still holds it");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Fails if something already listens on `addr`. Every core binds with
/// SO_REUSEPORT, which would otherwise let a second broker start on the same
/// port and silently share it, the kernel splitting clients between the two.
/// A plain bind (no SO_REUSEPORT) fails with EADDRINUSE while any listener
/// holds the port.
///
/// A plain bind also fails on connections of a previous run still in
/// TIME_WAIT on the server side (glommio's listeners set SO_REUSEPORT but
/// not SO_REUSEADDR, and accepted sockets inherit that), which would keep a
/// broker killed with -9 from restarting for a minute. So a failed bind is
/// only taken as "in use" if something accepts a connection there.
pub fn check_address_free(addr: SocketAddr) -> std::io::Result<()> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let mut target = addr;
            if target.ip().is_unspecified() {
                target.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            match std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
                Ok(_) => Err(e),
                Err(c) if c.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Runs the broker until `stop` is set (or a signal arrives). Blocks.
pub fn run(cfg: BrokerConfig, requested: Arc<AtomicBool>) -> Result<(), ServerError> {
    check_scheduling_policy()?;
    let dir_err = |source| ServerError::DataDir { path: cfg.data_dir.display().to_string(), source };
    blocking::create_dir_all(&cfg.data_dir).map_err(dir_err)?;
    let _lock = blocking::lock_dir(&cfg.data_dir).map_err(dir_err)?;
    let cid = load_cluster_id(&cfg).map_err(dir_err)?;
    let _ = CLUSTER_ID.set(cid);
    let cpus: Vec<usize> = if cfg.cpus.is_empty() {
        (0..std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).collect()
    } else {
        cfg.cpus.clone()
    };
    let n = cpus.len();
    let registry = Registry::load(&cfg.data_dir, n)?;
    if !cfg.is_cluster() {
        // In a cluster the controller creates `__consumer_offsets`, and the
        // image, not `topics.json`, says which topics exist: partitions of
        // deleted topics are removed as the image is applied.
        ensure_offsets_topic(&registry, &cfg, n)?;
        bury_orphan_partitions(&cfg.data_dir, &registry.snapshot()).map_err(dir_err)?;
    }
    let tombstones = reaper::tombstones(&cfg.data_dir).map_err(dir_err)?;
    let cfg = Arc::new(cfg);
    wait_address_free(cfg.listen).map_err(|source| ServerError::Listen {
        what: "listen on",
        addr: cfg.listen,
        source,
    })?;
    if let Some(addr) = cfg.admin_listen {
        wait_address_free(addr).map_err(|source| ServerError::Listen { what: "admin listen on", addr, source })?;
    }
    if let Some(addr) = cfg.controller_listen() {
        wait_address_free(addr).map_err(|source| ServerError::Listen { what: "controller listen on", addr, source })?;
    }
    let ack_journals = Some(Arc::new(crate::journal::AckJournals::prepare(&cfg)));
    let startup = Startup { tombstones: std::sync::Mutex::new(tombstones), ack_journals, ..Startup::default() };
    let stop = Arc::new(Stop { requested, closed: AtomicUsize::new(0), startup });
    let mesh: MeshBuilder<Job, _> = MeshBuilder::full(n, MESH_CHANNEL_CAPACITY);
    tracing::info!(listen = %cfg.listen, cores = n, ?cpus, data_dir = %cfg.data_dir.display(), "starting spindle");
    let mut handles = Vec::new();
    for &cpu in &cpus {
        let (cfg, registry, mesh, stop) = (cfg.clone(), registry.clone(), mesh.clone(), stop.clone());
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("spindle-{cpu}"))
            .io_memory(cfg.io_memory_bytes)
            .preempt_timer(std::time::Duration::from_micros(cfg.task_quota_us))
            .spawn(move || async move { shard_main(cfg, registry, mesh, stop, n).await })
            .map_err(|e| ServerError::Executor { cpu, why: e.to_string() })?;
        handles.push((cpu, h));
    }
    let mut first_err = None;
    let mut peer_failed = None;
    for (cpu, h) in handles {
        match h.join() {
            Ok(Ok(())) => {}
            // Report the core that failed, not the ones that stopped for it.
            Ok(Err(e)) if e == PEER_FAILED => {
                peer_failed.get_or_insert(ServerError::Core(cpu, e));
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(ServerError::Core(cpu, e));
            }
            Err(e) => {
                first_err.get_or_insert(ServerError::Core(cpu, format!("{e:?}")));
            }
        }
    }
    match first_err.or(peer_failed) {
        Some(e) => Err(e),
        None => {
            tracing::info!("clean shutdown complete");
            Ok(())
        }
    }
}

/// A core's fallible set-up: direct I/O on the data directory, its Kafka
/// listener and (core 0) the admin listener.
///
/// The direct-I/O probe rewrites one file in the data directory, so cores
/// run it one at a time, in mesh order: run concurrently, one core could
/// read the file while another truncated it, and fail ("probe read came
/// back short", seen about once in ten starts) or, worse, let glommio
/// conclude from an empty read that the device supports polled I/O.
async fn set_up_core(
    cfg: &BrokerConfig,
    startup: &Startup,
    id: usize,
) -> Result<(DmaStorage, TcpListener, Option<TcpListener>, Option<TcpListener>), String> {
    while startup.probe_turn.load(Ordering::Acquire) != id {
        glommio::timer::sleep(STARTUP_POLL).await;
    }
    let storage = DmaStorage::new(&cfg.data_dir).await;
    startup.probe_turn.fetch_add(1, Ordering::AcqRel);
    let storage = storage
        .map_err(|e| format!("direct I/O on {}: {e}", cfg.data_dir.display()))?
        .with_deletion_pace(cfg.deletion_bytes_per_sec, Duration::from_millis(cfg.segment_delete_delay_ms));
    let listener = TcpListener::bind(cfg.listen).map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    let admin = match cfg.admin_listen {
        Some(addr) if id == 0 => Some(TcpListener::bind(addr).map_err(|e| format!("admin listen on {addr}: {e}"))?),
        _ => None,
    };
    let controller = match cfg.controller_listen() {
        Some(addr) if id == 0 => {
            Some(TcpListener::bind(addr).map_err(|e| format!("controller listen on {addr}: {e}"))?)
        }
        _ => None,
    };
    Ok((storage, listener, admin, controller))
}

async fn shard_main(
    cfg: Arc<BrokerConfig>,
    registry: Arc<Registry>,
    mesh: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
    stop: Arc<Stop>,
    n: usize,
) -> Result<(), String> {
    let (senders, mut receivers) = mesh.join().await.map_err(|_| "joining the core mesh".to_string())?;
    let id = senders.peer_id();
    let set_up = set_up_core(&cfg, &stop.startup, id).await;
    let gate = &stop.startup;
    if set_up.is_err() {
        gate.failed.store(true, Ordering::Release);
    }
    gate.reported.fetch_add(1, Ordering::AcqRel);
    while gate.reported.load(Ordering::Acquire) < n {
        glommio::timer::sleep(STARTUP_POLL).await;
    }
    let (storage, listener, admin, controller) = set_up?;
    if gate.failed.load(Ordering::Acquire) {
        return Err(PEER_FAILED.into());
    }
    let quorum_storage = storage.clone();
    let shard = Rc::new(Shard::new(id, n, cfg.clone(), registry, storage, senders));
    if let Some(controller) = controller {
        let q = crate::cluster::start_quorum(&cfg, quorum_storage, controller).await?;
        let _ = shard.quorum.set(q);
    } else if cfg.is_cluster() && id == 0 {
        // Not a voter: follow the quorum's metadata log.
        let _ = shard.quorum.set(crate::cluster::observer::start_observer(&cfg));
    }
    for (_, rx) in receivers.streams() {
        let s = shard.clone();
        glommio::spawn_local(async move {
            while let Some(job) = rx.recv().await {
                glommio::spawn_local(job(s.clone())).detach();
            }
        })
        .detach();
    }
    if let Some(journals) = &stop.startup.ack_journals {
        let _ = shard.ack_journals.set(journals.clone());
        if let Some(journal) = journals.create(id) {
            let _ = shard.ack_journal.set(journal);
        }
    }
    shard.open_owned().await;
    if let Some(journals) = &stop.startup.ack_journals {
        let snap = shard.snapshot();
        journals.core_opened(n, &cfg.data_dir, |key| crate::journal::key_of_existing_topic(key, snap.topics.values()));
    }
    shard.load_groups().await;
    if cfg.is_cluster() {
        if id == 0 {
            glommio::spawn_local(crate::cluster::run_applier(shard.clone())).detach();
        }
        glommio::spawn_local(crate::cluster::replica::isr_maintenance(shard.clone())).detach();
    }
    if id == 0 {
        // Deleted partitions whose files were not freed yet.
        let tombs = std::mem::take(&mut *stop.startup.tombstones.lock().unwrap_or_else(|e| e.into_inner()));
        tombs.into_iter().for_each(|t| shard.storage.free_tombstone(t));
        if let Some(admin) = admin {
            glommio::spawn_local(crate::admin::serve(shard.clone(), admin)).detach();
        }
        tracing::info!(listen = %cfg.listen, admin = ?cfg.admin_listen, "ready");
    }
    let maint = shard.clone();
    let retention_every = Duration::from_millis(cfg.retention_check_interval_ms.max(1));
    glommio::spawn_local(async move {
        let mut last_retention = Instant::now();
        loop {
            glommio::timer::sleep(MAINTENANCE_TICK).await;
            let due = last_retention.elapsed() >= retention_every;
            if due {
                last_retention = Instant::now();
            }
            maint.maintenance(due).await;
            maint.group_maintenance(due).await;
        }
    })
    .detach();

    // Accept until asked to stop. The accept outlives the ticks that check
    // for a stop: dropping it would cancel an io_uring ACCEPT that may
    // already have taken a connection from the kernel, and that connection
    // would then be open with nobody serving it (clients saw requests go
    // unanswered until their own timeout, replica fetchers for 10 s).
    let mut accept = Box::pin(listener.accept());
    loop {
        let tick = glommio::timer::sleep(Duration::from_millis(100));
        futures::pin_mut!(tick);
        match futures::future::select(accept.as_mut(), tick).await {
            futures::future::Either::Left((Ok(stream), _)) => {
                accept = Box::pin(listener.accept());
                let peer = stream.peer_addr().unwrap_or_else(|_| "0.0.0.0:0".parse().unwrap());
                glommio::spawn_local(crate::conn::serve(shard.clone(), stream, peer)).detach();
            }
            futures::future::Either::Left((Err(e), _)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                accept = Box::pin(listener.accept());
            }
            futures::future::Either::Right(_) => {}
        }
        if stop.requested.load(Ordering::Acquire) {
            break;
        }
    }
    if let Some(q) = shard.quorum.get() {
        // Leaderships move to other brokers before this one stops serving.
        q.controlled_shutdown().await;
    }
    shard.begin_shutdown();
    drop(accept);
    drop(listener);
    let draining = Instant::now();
    let deadline = draining + SHUTDOWN_DRAIN_TIMEOUT;
    while shard.in_flight.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.flush_group_stores(deadline).await;
    let closing = Instant::now();
    shard.close_all().await;
    if let Some(journal) = shard.ack_journal.get() {
        match journal.close() {
            Ok(true) => {}
            Ok(false) => tracing::warn!(core = id, pending = journal.pending(),
                path = %journal.path().display(), "ack journal kept: entries not written"),
            Err(e) => tracing::warn!(core = id, error = %e, "removing the ack journal"),
        }
    }
    // Where a slow shutdown spent its time.
    tracing::info!(
        core = id,
        drain_ms = (closing - draining).as_millis() as u64,
        requests_left = shard.in_flight.get(),
        close_ms = closing.elapsed().as_millis() as u64,
        "core stopped serving and closed its partitions"
    );
    stop.closed.fetch_add(1, Ordering::AcqRel);
    // Keep answering jobs from other cores until every core has closed.
    while stop.closed.load(Ordering::Acquire) < n {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if id == 0 {
        tracing::info!("all partitions closed cleanly");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn partition_directory_names_parse_from_the_right() {
        assert_eq!(super::partition_dir_name("orders-3"), Some(("orders", 3)));
        assert_eq!(super::partition_dir_name("a-1-0"), Some(("a-1", 0)));
        assert_eq!(super::partition_dir_name("__consumer_offsets-49"), Some(("__consumer_offsets", 49)));
        assert_eq!(super::partition_dir_name("notapartition"), None);
        assert_eq!(super::partition_dir_name("x-"), None);
        assert_eq!(super::partition_dir_name("-3"), None);
    }

    #[test]
    fn a_tombstone_is_never_taken_for_a_partition_directory() {
        let t = reaper::unique_path(std::path::Path::new("/data/orders-v2-17"), reaper::TOMBSTONE_SUFFIX);
        assert_eq!(partition_dir_name(t.file_name().unwrap().to_str().unwrap()), None);
    }

    use super::*;

    // Regression: cores bind with SO_REUSEPORT, so a second broker started
    // on a port a running one holds came up "fine" and the kernel split the
    // clients between the two (seen with two test brokers on one port).
    #[test]
    fn address_held_by_a_reuseport_listener_is_not_free() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let held = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = held.local_addr().unwrap();
                let e = check_address_free(addr).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
                drop(held);
                check_address_free(addr).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    // Regression: a broker restarted right after kill -9 found its
    // controller port held by the dead process's listener (the kernel
    // closes it only once the io_uring rings are torn down) and exited.
    #[test]
    fn start_up_waits_for_a_listener_that_is_going_away() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        assert_eq!(check_address_free(addr).unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let started = std::time::Instant::now();
        wait_address_free(addr).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150), "returned before the listener was gone");
        released.join().unwrap();
    }

    // Regression: after kill -9, the admin listener's closed connections sat
    // in TIME_WAIT and the restarted broker refused to start ("address in
    // use") for a minute.
    #[test]
    fn server_side_time_wait_does_not_hold_the_address() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let client = std::net::TcpStream::connect(addr).unwrap();
                let server_side = listener.accept().await.unwrap();
                // The server closes first: its side goes to TIME_WAIT.
                drop(server_side);
                drop(listener);
                let mut buf = [0u8; 1];
                let _ = std::io::Read::read(&mut &client, &mut buf);
                drop(client);
                check_address_free(addr).unwrap();
                TcpListener::bind(addr).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
