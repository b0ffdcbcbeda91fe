//! The topic registry: names, ids, partition counts, partition-to-core
//! placement and per-topic config overrides.
//!
//! Shared by all cores behind a lock because it changes only on admin
//! operations (create, delete, alter). The data path never takes the lock:
//! each core keeps its own [`Snapshot`] and refreshes it when the registry's
//! version counter (one atomic load per request) says it changed.
//!
//! Persisted as `DATA_DIR/topics.json`, replaced atomically on every change,
//! so placement survives restarts.

use serde::{Deserialize, Serialize};
use spindle_engine::storage::blocking;
use spindle_engine::LogConfig;
use spindle_replication::controller::topics::{MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION_ENABLE};
use spindle_replication::metadata::{BrokerRegistration, MetadataImage, PartitionRegistration};
use spindle_replication::partition_replica::{BrokerLiveness, BrokerStatus};
use spindle_replication::types::BrokerId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const REGISTRY_FILE: &str = "topics.json";
/// Kafka's limit on topic name length.
pub const TOPIC_NAME_MAX: usize = 249;
/// Upper bound on partitions per topic, a guard against typos that would
/// create millions of directories.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (UUID), stable for the topic's life.
    pub id: [u8; 16],
    /// Owning core (shard index) of each partition.
    pub placement: Vec<usize>,
    /// Topic config overrides by Kafka name.
    pub configs: BTreeMap<String, String>,
    /// Cluster mode: each partition's registration in the metadata image
    /// (replicas, ISR, leader, epochs). Empty on a single node, where this
    /// broker leads every partition at epoch 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<PartitionRegistration>,
}

impl TopicMeta {
    pub fn partitions(&self) -> i32 {
        self.placement.len() as i32
    }
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.id)
    }

    /// A partition's registration (cluster mode only).
    pub fn registration(&self, partition: i32) -> Option<&PartitionRegistration> {
        usize::try_from(partition).ok().and_then(|p| self.registrations.get(p))
    }
}

/// Cluster mode: what the data path needs of the metadata image besides
/// topics (brokers for Metadata responses, ISR eligibility and fetchers).
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// This broker's id.
    pub local: BrokerId,
    pub applied_index: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// The quorum leader when the view was published (the active controller).
    pub controller: Option<BrokerId>,
}

impl ClusterView {
    /// This broker's registration epoch, -1 before it registered.
    pub fn local_broker_epoch(&self) -> i64 {
        self.brokers.get(&self.local).map_or(-1, |b| b.epoch)
    }
}

impl BrokerLiveness for ClusterView {
    fn broker_status(&self, broker: BrokerId) -> Option<BrokerStatus> {
        self.brokers.get(&broker).map(|b| BrokerStatus {
            epoch: b.epoch,
            fenced: b.fenced,
            shutting_down: b.in_controlled_shutdown,
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    topics: BTreeMap<String, TopicMeta>,
}

#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    topics: RwLock<BTreeMap<String, TopicMeta>>,
    /// Cluster mode: set once the first metadata has been applied.
    cluster: RwLock<Option<Arc<ClusterView>>>,
    version: AtomicU64,
    /// Names deleted from `topics` whose partition directories are still
    /// being removed. A partition's directory is named after its topic and
    /// index only, so a new topic of the same name created meanwhile would
    /// open the old files (old records, or files unlinked under it). Not
    /// persisted: see [`Registry::delete_topic`]. Lock order: `topics`, then
    /// this.
    deleting: Mutex<BTreeSet<String>>,
    /// Producer ids handed out for idempotent producers ([`Registry::new_producer_id`]).
    producer_ids: Mutex<ProducerIdBlock>,
}

/// The file holding the end of the last block of producer ids reserved.
pub const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Producer ids reserved at a time: one durable file write per block.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Low bits of a producer id that name its broker, so brokers of a
/// cluster never hand out the same one (node ids below 4096).
const PRODUCER_ID_NODE_BITS: u32 = 12;

/// The block of producer ids being handed out: `next..end`, with `end`
/// persisted before any id of the block goes out, so a restart never
/// reuses one.
#[derive(Debug)]
struct ProducerIdBlock {
    path: PathBuf,
    next: i64,
    end: i64,
}

/// One core's copy of the registry.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Cluster mode, once metadata has been applied; `None` on a single node.
    pub cluster: Option<Arc<ClusterView>>,
}

impl Snapshot {
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.uuid() == id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("topic {0} already exists")]
    Exists(String),
    /// Deleted, but its partitions are still being removed: the name is not
    /// free yet (Kafka: "marked for deletion").
    #[error("topic {0} is being deleted")]
    BeingDeleted(String),
    #[error("topic {0} does not exist")]
    Unknown(String),
    #[error("invalid topic name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("persisting topic registry: {0}")]
    Io(#[from] std::io::Error),
}

/// Kafka's topic name rule: 1..=249 of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), RegistryError> {
    let bad = |why| Err(RegistryError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if name.len() > TOPIC_NAME_MAX {
        return bad("longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Applies topic config overrides over broker defaults, validating them.
pub fn effective_log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> Result<LogConfig, String> {
    let mut c = defaults.clone();
    for (k, v) in overrides {
        match k.as_str() {
            "cleanup.policy" => {
                if v != "delete" {
                    return Err(format!("cleanup.policy={v} is not supported (only delete)"));
                }
            }
            // Replication settings, read by the partition's leader, not by
            // the log. The controller validated them (cluster mode).
            MIN_INSYNC_REPLICAS | UNCLEAN_LEADER_ELECTION_ENABLE => {}
            _ => match c.set(k, v) {
                Ok(true) => {}
                Ok(false) => return Err(format!("unknown topic config {k}")),
                Err(e) => return Err(e.to_string()),
            },
        }
    }
    Ok(c)
}

impl Registry {
    /// Loads the registry from `data_dir`, or starts empty. Partitions
    /// placed on cores that no longer exist (fewer `--cores`) are re-placed.
    pub fn load(data_dir: &Path, nr_shards: usize) -> Result<Arc<Registry>, RegistryError> {
        let path = data_dir.join(REGISTRY_FILE);
        let mut file: RegistryFile = match blocking::read_file(&path)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            None => RegistryFile::default(),
        };
        let mut load = vec![0usize; nr_shards];
        let mut moved = false;
        for t in file.topics.values_mut() {
            for s in t.placement.iter_mut() {
                if *s >= nr_shards {
                    *s = least_loaded(&load);
                    moved = true;
                }
                load[*s] += 1;
            }
        }
        let ids_path = data_dir.join(PRODUCER_IDS_FILE);
        let ids_end = match blocking::read_file(&ids_path)? {
            Some(b) => std::str::from_utf8(&b).ok().and_then(|t| t.trim().parse::<i64>().ok()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: not a number", ids_path.display()))
            })?,
            None => 0,
        };
        let reg = Registry {
            path,
            topics: RwLock::new(file.topics),
            cluster: RwLock::new(None),
            version: AtomicU64::new(1),
            deleting: Mutex::new(BTreeSet::new()),
            producer_ids: Mutex::new(ProducerIdBlock { path: ids_path, next: ids_end, end: ids_end }),
        };
        if moved {
            reg.persist(&reg.topics.read().unwrap())?;
        }
        Ok(Arc::new(reg))
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Snapshot {
        let topics = self.topics.read().unwrap();
        let cluster = self.cluster.read().unwrap().clone();
        Snapshot { version: self.version(), topics: topics.clone(), cluster }
    }

    /// A producer id no producer of this broker (or, by its low bits, of
    /// any other broker of the cluster) had before, across restarts.
    pub fn new_producer_id(&self, node_id: i32) -> std::io::Result<i64> {
        if !(0..1 << PRODUCER_ID_NODE_BITS).contains(&node_id) {
            return Err(std::io::Error::other(format!(
                "producer ids need a node id below {}, not {node_id}",
                1 << PRODUCER_ID_NODE_BITS
            )));
        }
        let mut b = self.producer_ids.lock().unwrap();
        if b.next == b.end {
            let end = b.end + PRODUCER_ID_BLOCK;
            blocking::write_file_atomic(&b.path, end.to_string().as_bytes())?;
            b.end = end;
        }
        let n = b.next;
        b.next += 1;
        Ok((n << PRODUCER_ID_NODE_BITS) | node_id as i64)
    }

    fn persist(&self, topics: &BTreeMap<String, TopicMeta>) -> std::io::Result<()> {
        let file = RegistryFile { topics: topics.clone() };
        let bytes = serde_json::to_vec_pretty(&file).expect("registry serialises");
        blocking::write_file_atomic(&self.path, &bytes)
    }

    fn mutate<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, TopicMeta>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut topics = self.topics.write().unwrap();
        let mut next = topics.clone();
        let out = f(&mut next)?;
        self.persist(&next)?;
        *topics = next;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }

    /// Creates a topic, placing each partition on the least loaded core.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        defaults: &LogConfig,
        nr_shards: usize,
        validate_only: bool,
    ) -> Result<TopicMeta, RegistryError> {
        validate_topic_name(name)?;
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(RegistryError::InvalidPartitions(partitions));
        }
        effective_log_config(defaults, &configs).map_err(RegistryError::InvalidConfig)?;
        let make = |topics: &BTreeMap<String, TopicMeta>| {
            if topics.contains_key(name) {
                return Err(RegistryError::Exists(name.to_string()));
            }
            if self.deleting.lock().unwrap().contains(name) {
                return Err(RegistryError::BeingDeleted(name.to_string()));
            }
            let mut load = shard_load(topics, nr_shards);
            let placement = (0..partitions)
                .map(|_| {
                    let s = least_loaded(&load);
                    load[s] += 1;
                    s
                })
                .collect();
            Ok(TopicMeta {
                name: name.to_string(),
                id: *uuid::Uuid::new_v4().as_bytes(),
                placement,
                configs,
                registrations: Vec::new(),
            })
        };
        if validate_only {
            return make(&self.topics.read().unwrap());
        }
        self.mutate(|topics| {
            let t = make(topics)?;
            topics.insert(name.to_string(), t.clone());
            Ok(t)
        })
    }

    /// Removes a topic. Its name stays taken (creating it again fails with
    /// [`RegistryError::BeingDeleted`]) until the caller has removed every
    /// partition directory and called [`Registry::finish_delete`].
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, RegistryError> {
        self.mutate(|topics| {
            let t = topics.remove(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
            self.deleting.lock().unwrap().insert(name.to_string());
            Ok(t)
        })
    }

    /// The partitions of a deleted topic are gone: its name is free again.
    pub fn finish_delete(&self, name: &str) {
        self.deleting.lock().unwrap().remove(name);
    }

    /// Grows a topic to `count` partitions.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        nr_shards: usize,
        validate_only: bool,
    ) -> Result<TopicMeta, RegistryError> {
        let grow = |topics: &mut BTreeMap<String, TopicMeta>| {
            let mut load = shard_load(topics, nr_shards);
            let t = topics.get_mut(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
            if count <= t.partitions() || count > PARTITIONS_PER_TOPIC_MAX {
                return Err(RegistryError::InvalidPartitions(count));
            }
            while t.partitions() < count {
                let s = least_loaded(&load);
                load[s] += 1;
                t.placement.push(s);
            }
            Ok(t.clone())
        };
        if validate_only {
            let mut copy = self.topics.read().unwrap().clone();
            return grow(&mut copy);
        }
        self.mutate(grow)
    }

    /// Replaces a topic's config overrides (validated against `defaults`).
    pub fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        defaults: &LogConfig,
        validate_only: bool,
    ) -> Result<TopicMeta, RegistryError> {
        effective_log_config(defaults, &configs).map_err(RegistryError::InvalidConfig)?;
        let set = |topics: &mut BTreeMap<String, TopicMeta>| {
            let t = topics.get_mut(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
            t.configs = configs.clone();
            Ok(t.clone())
        };
        if validate_only {
            let mut copy = self.topics.read().unwrap().clone();
            return set(&mut copy);
        }
        self.mutate(set)
    }
}

impl Registry {
    /// Cluster mode: makes the registry the image's topics, as this broker
    /// serves them. Placement (the owning core) is local state: kept for
    /// partitions it already had, least loaded among this broker's replicas
    /// for new ones. Returns the topics that were removed (their local
    /// partitions are the caller's to delete).
    pub fn sync_from_image(
        &self,
        image: &MetadataImage,
        controller: Option<BrokerId>,
        local: BrokerId,
        nr_shards: usize,
    ) -> Result<Vec<TopicMeta>, RegistryError> {
        let view = Arc::new(ClusterView {
            local,
            applied_index: image.applied_index,
            cluster_id: image.cluster_id.clone(),
            brokers: image.brokers.clone(),
            controller,
        });
        let mut topics = self.topics.write().unwrap();
        let mut next = BTreeMap::new();
        let mut removed = Vec::new();
        for (name, old) in topics.iter() {
            if image.topic_by_name(name).is_none_or(|t| *t.topic_id.as_bytes() != old.id) {
                removed.push(old.clone());
            }
        }
        let mut load = vec![0usize; nr_shards];
        for t in image.topics.values() {
            let old = topics.get(&t.name).filter(|o| o.id == *t.topic_id.as_bytes());
            let placement: Vec<usize> = t
                .partitions
                .iter()
                .enumerate()
                .map(|(p, reg)| match old.and_then(|o| o.placement.get(p)) {
                    Some(&s) if s < nr_shards => s,
                    _ if !reg.replicas.contains(&local) => p % nr_shards.max(1),
                    _ => usize::MAX,
                })
                .collect();
            for (p, &s) in placement.iter().enumerate() {
                if s != usize::MAX && t.partitions[p].replicas.contains(&local) {
                    load[s] += 1;
                }
            }
            next.insert(
                t.name.clone(),
                TopicMeta {
                    name: t.name.clone(),
                    id: *t.topic_id.as_bytes(),
                    placement,
                    configs: t.configs.clone(),
                    registrations: t.partitions.clone(),
                },
            );
        }
        for t in next.values_mut() {
            for s in t.placement.iter_mut().filter(|s| **s == usize::MAX) {
                *s = least_loaded(&load);
                load[*s] += 1;
            }
        }
        if next != *topics {
            self.persist(&next)?;
            *topics = next;
        }
        *self.cluster.write().unwrap() = Some(view);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(removed)
    }
}

fn shard_load(topics: &BTreeMap<String, TopicMeta>, nr_shards: usize) -> Vec<usize> {
    let mut load = vec![0usize; nr_shards];
    for t in topics.values() {
        for &s in &t.placement {
            if s < nr_shards {
                load[s] += 1;
            }
        }
    }
    load
}

fn least_loaded(load: &[usize]) -> usize {
    load.iter().enumerate().min_by_key(|(_, l)| **l).map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_are_never_handed_out_twice_across_restarts_or_brokers() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = BTreeSet::new();
        for _restart in 0..3 {
            let reg = Registry::load(dir.path(), 1).unwrap();
            // Past a block, so a second block is reserved.
            for _ in 0..PRODUCER_ID_BLOCK + 5 {
                let id = reg.new_producer_id(7).unwrap();
                assert_eq!(id & ((1 << PRODUCER_ID_NODE_BITS) - 1), 7, "the node's id in the low bits");
                assert!(id >= 0 && seen.insert(id), "{id} handed out twice");
            }
        }
        let other = Registry::load(dir.path(), 1).unwrap().new_producer_id(8).unwrap();
        assert!(!seen.contains(&other));
        assert!(Registry::load(dir.path(), 1).unwrap().new_producer_id(4096).is_err());
    }

    // Regression: DeleteTopics removed the name from the registry before the
    // cores removed the partition directories, and a producer's auto-create
    // of the same name in between opened the old directories while they
    // were being deleted ("epoch checkpoint failed", a partition that could
    // not open). The name stays taken until the directories are gone.
    #[test]
    fn deleted_name_cannot_be_reused_until_the_delete_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::load(dir.path(), 2).unwrap();
        let d = LogConfig::default();
        reg.create_topic("t", 2, BTreeMap::new(), &d, 2, false).unwrap();
        reg.delete_topic("t").unwrap();
        assert!(!reg.snapshot().topics.contains_key("t"));
        for validate_only in [true, false] {
            let e = reg.create_topic("t", 1, BTreeMap::new(), &d, 2, validate_only).unwrap_err();
            assert!(matches!(e, RegistryError::BeingDeleted(_)), "{e}");
        }
        assert!(matches!(reg.delete_topic("t").unwrap_err(), RegistryError::Unknown(_)));
        reg.finish_delete("t");
        let again = reg.create_topic("t", 1, BTreeMap::new(), &d, 2, false).unwrap();
        assert_eq!(again.partitions(), 1);
    }

    #[test]
    fn partitions_are_balanced_and_placement_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::load(dir.path(), 2).unwrap();
        let d = LogConfig::default();
        let a = reg.create_topic("a", 3, BTreeMap::new(), &d, 2, false).unwrap();
        let b = reg.create_topic("b", 3, BTreeMap::new(), &d, 2, false).unwrap();
        let mut load = [0; 2];
        for s in a.placement.iter().chain(&b.placement) {
            load[*s] += 1;
        }
        assert_eq!(load, [3, 3]);
        let again = Registry::load(dir.path(), 2).unwrap().snapshot();
        assert_eq!(again.topics["a"], a);
        assert_eq!(again.topics["b"].placement, b.placement);
    }

    #[test]
    fn duplicate_bad_names_and_bad_counts_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::load(dir.path(), 1).unwrap();
        let d = LogConfig::default();
        reg.create_topic("t", 1, BTreeMap::new(), &d, 1, false).unwrap();
        assert!(matches!(reg.create_topic("t", 1, BTreeMap::new(), &d, 1, false), Err(RegistryError::Exists(_))));
        assert!(matches!(
            reg.create_topic("a/b", 1, BTreeMap::new(), &d, 1, false),
            Err(RegistryError::InvalidName(..))
        ));
        assert!(matches!(
            reg.create_topic("z", 0, BTreeMap::new(), &d, 1, false),
            Err(RegistryError::InvalidPartitions(0))
        ));
        let bad: BTreeMap<_, _> = [("retention.ms".to_string(), "x".to_string())].into();
        assert!(matches!(reg.create_topic("c", 1, bad, &d, 1, false), Err(RegistryError::InvalidConfig(_))));
        assert!(reg.create_topic("v", 1, BTreeMap::new(), &d, 1, true).is_ok());
        assert!(!reg.snapshot().topics.contains_key("v"), "validate_only creates nothing");
    }

    #[test]
    fn fewer_cores_after_restart_replaces_orphaned_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::load(dir.path(), 4).unwrap();
        reg.create_topic("t", 8, BTreeMap::new(), &LogConfig::default(), 4, false).unwrap();
        let snap = Registry::load(dir.path(), 2).unwrap().snapshot();
        assert!(snap.topics["t"].placement.iter().all(|&s| s < 2));
    }

    fn image_with(topics: &[(&str, u128, Vec<Vec<i32>>)]) -> MetadataImage {
        use spindle_replication::metadata::TopicImage;
        let mut image = MetadataImage { applied_index: 7, ..MetadataImage::default() };
        for (name, id, replicas) in topics {
            let id = uuid::Uuid::from_u128(*id);
            let partitions = replicas
                .iter()
                .map(|r| PartitionRegistration {
                    replicas: r.clone(),
                    isr: r.clone(),
                    leader: r.first().copied(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                })
                .collect();
            image
                .topics
                .insert(id, TopicImage { topic_id: id, name: name.to_string(), partitions, configs: BTreeMap::new() });
            image.topic_ids.insert(name.to_string(), id);
        }
        image
    }

    // Cluster mode: the registry follows the image. A partition keeps its
    // core across updates and restarts; this broker's replicas are spread
    // over its cores; a topic gone from the image, or recreated under a new
    // id, is reported removed so its local partitions get deleted.
    #[test]
    fn sync_from_image_keeps_placement_and_reports_removed_topics() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::load(dir.path(), 2).unwrap();
        let local = 1;
        let image =
            image_with(&[("a", 1, vec![vec![1, 2], vec![2, 1], vec![0, 2], vec![1, 0]]), ("b", 2, vec![vec![1]])]);
        assert!(reg.sync_from_image(&image, Some(0), local, 2).unwrap().is_empty());
        let first = reg.snapshot();
        let view = first.cluster.clone().expect("a cluster view once synced");
        assert_eq!((view.local, view.controller, view.applied_index), (1, Some(0), 7));
        let a = &first.topics["a"];
        assert_eq!(a.registrations.len(), 4);
        assert_eq!(a.uuid(), uuid::Uuid::from_u128(1));
        // Local replicas: a-0, a-1, a-3, b-0: two per core.
        let mut load = [0, 0];
        for (t, p) in [("a", 0), ("a", 1), ("a", 3), ("b", 0)] {
            load[first.topics[t].placement[p]] += 1;
        }
        assert_eq!(load, [2, 2], "{first:?}");

        // Reloaded from disk (a restart), then the same image again:
        // every partition keeps its core.
        let reg = Registry::load(dir.path(), 2).unwrap();
        reg.sync_from_image(&image, Some(0), local, 2).unwrap();
        assert_eq!(reg.snapshot().topics["a"].placement, a.placement);

        // "b" deleted, "a" recreated with a new id.
        let next = image_with(&[("a", 3, vec![vec![1]])]);
        let mut removed: Vec<String> =
            reg.sync_from_image(&next, Some(2), local, 2).unwrap().into_iter().map(|t| t.name).collect();
        removed.sort();
        assert_eq!(removed, ["a", "b"]);
        let snap = reg.snapshot();
        assert_eq!(snap.topics.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(snap.topics["a"].uuid(), uuid::Uuid::from_u128(3));
        assert_eq!(snap.cluster.as_ref().unwrap().controller, Some(2));
    }
}
