//! Topic operations: CreateTopics, DeleteTopics, CreatePartitions, IncrementalAlterConfigs on topics,
//! and the controller's own creation of `__consumer_offsets`. Kafka's
//! `ReplicationControlManager.{createTopics, deleteTopics, createPartitions}`,
//! `ConfigurationControlManager.incrementalAlterConfigs` and the duplicate checks of `ControllerApis`,
//! check by check in the same order (the order decides which error a client sees), with Kafka's
//! messages.
//!
//! Each function validates against an image (the core's speculative one), returns the records of
//! the whole request (one entry: it commits atomically, as Kafka's CreateTopics does) and a result per
//! topic. `validate_only` computes everything and returns no records.
//!
//! Configs: the controller checks only the keys whose values decide its own rules:
//! `min.insync.replicas` (an integer ≥ 1) and `unclean.leader.election.enable` (a boolean that must
//! be false: leaders come from the ISR only, design 5.3). Every other key is `net`'s to validate
//! (its effective-config layer knows their types) before it forwards the request; here they pass
//! through as strings.

use std::collections::{BTreeMap, BTreeSet};

use rand::RngCore;

use crate::metadata::{
    place_replicas, validate_manual_assignment, AssignmentError, ConfigResource, MetadataImage, MetadataRecord,
    PartitionRecord, PlacementError,
};
use crate::types::{BrokerId, TopicId};

use super::config::{ControllerConfig, MAX_NEW_PARTITIONS_PER_REQUEST, OFFSETS_TOPIC};
use super::errors::ErrorCode;

/// Kafka's `Topic.MAX_NAME_LENGTH`: a partition directory `<topic>-<partition>` (plus a deletion
/// suffix) must fit a 255-byte file name.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// `min.insync.replicas`.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `unclean.leader.election.enable`.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Why a topic name is illegal: Kafka's `Topic.validate` messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("Topic name is illegal, it can't be empty")]
    Empty,
    #[error("Topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error("Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, Topic name: {0}")]
    TooLong(String),
    #[error("Topic name \"{0}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'")]
    IllegalCharacter(String),
}

/// Kafka's `Topic.validate`: non-empty, not `.` or `..`, at most 249 characters (Java's UTF-16 count;
/// a non-ASCII name fails the character check anyway), only `[a-zA-Z0-9._-]`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        Err(TopicNameError::Empty)
    } else if name == "." || name == ".." {
        Err(TopicNameError::Dots)
    } else if name.encode_utf16().count() > MAX_TOPIC_NAME_LENGTH {
        Err(TopicNameError::TooLong(name.to_owned()))
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        Err(TopicNameError::IllegalCharacter(name.to_owned()))
    } else {
        Ok(())
    }
}

/// An invalid topic config value, with Kafka's `ConfigException` message shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid value {value} for configuration {name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Checks the value of a topic config key the controller's rules depend on; other keys pass.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let invalid =
        |reason: &str| ConfigError { name: name.to_owned(), value: value.to_owned(), reason: reason.to_owned() };
    match name {
        MIN_INSYNC_REPLICAS => match value.trim().parse::<i32>() {
            Err(_) => Err(invalid("Not a number of type INT")),
            Ok(n) if n < 1 => Err(invalid("Value must be at least 1")),
            Ok(_) => Ok(()),
        },
        UNCLEAN_LEADER_ELECTION_ENABLE => {
            let value = value.trim();
            if value.eq_ignore_ascii_case("false") {
                Ok(())
            } else if value.eq_ignore_ascii_case("true") {
                Err(invalid("unclean leader election is not supported: leaders are elected from the ISR only"))
            } else {
                Err(invalid("Expected value to be either true or false"))
            }
        }
        _ => Ok(()),
    }
}

// ---- CreateTopics ----

/// One topic of a CreateTopics request (Kafka API 19).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatableTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub num_partitions: i32,
    /// -1: `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual placement; then both counts above must be -1.
    pub assignments: Vec<ReplicaAssignment>,
    pub configs: BTreeMap<String, String>,
}

/// A manual assignment of one partition's replicas, the first being the preferred leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaAssignment {
    pub partition_index: i32,
    pub broker_ids: Vec<BrokerId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    pub validate_only: bool,
}

/// The result for one topic name of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicResult {
    pub name: String,
    pub outcome: Result<CreatedTopic, CreateTopicError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedTopic {
    pub topic_id: TopicId,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// The configs set explicitly (net adds defaults and sources for the response).
    pub configs: BTreeMap<String, String>,
}

/// Why a topic is not created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreateTopicError {
    /// The name appears more than once in the request (`ControllerApis`).
    #[error("Duplicate topic name.")]
    DuplicateName,
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidName(TopicNameError),
    /// Names differing only in '.' versus '_' collide in metric names.
    #[error("Topic '{name}' collides with existing topic: {existing}")]
    Collision { name: String, existing: String },
    #[error("{0}")]
    InvalidConfig(ConfigError),
    #[error("A manual partition assignment was specified, but replication factor was not set to -1.")]
    AssignmentWithReplicationFactor,
    #[error("A manual partition assignment was specified, but numPartitions was not set to -1.")]
    AssignmentWithPartitionCount,
    #[error("Found multiple manual partition assignments for partition {0}")]
    DuplicateAssignment(i32),
    #[error("{0}")]
    InvalidAssignment(AssignmentError),
    #[error(
        "All brokers specified in the manual partition assignment for partition {0} are fenced or in controlled shutdown."
    )]
    AssignmentAllInactive(i32),
    #[error("partitions should be a consecutive 0-based integer sequence")]
    AssignmentNotConsecutive,
    #[error("Replication factor must be larger than 0, or -1 to use the default value.")]
    InvalidReplicationFactor(i16),
    #[error("Number of partitions was set to an invalid non-positive value.")]
    InvalidPartitionCount(i32),
    #[error("Unable to replicate the partition {replication_factor} time(s): {error}")]
    Placement { replication_factor: i16, error: PlacementError },
    #[error(
        "Unable to replicate the partition {0} time(s): All brokers are currently fenced or in controlled shutdown."
    )]
    AllInactive(i16),
    #[error(
        "Creating {0} partition(s) would exceed the limit of {MAX_NEW_PARTITIONS_PER_REQUEST} new partitions per request."
    )]
    TooManyPartitions(usize),
}

impl CreateTopicError {
    pub fn code(&self) -> ErrorCode {
        use CreateTopicError::*;
        match self {
            DuplicateName | AssignmentWithReplicationFactor | AssignmentWithPartitionCount => ErrorCode::InvalidRequest,
            AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
            InvalidName(_) | Collision { .. } => ErrorCode::InvalidTopicException,
            InvalidConfig(_) => ErrorCode::InvalidConfig,
            DuplicateAssignment(_) | InvalidAssignment(_) | AssignmentAllInactive(_) | AssignmentNotConsecutive => {
                ErrorCode::InvalidReplicaAssignment
            }
            InvalidReplicationFactor(_) | Placement { .. } | AllInactive(_) => ErrorCode::InvalidReplicationFactor,
            InvalidPartitionCount(_) | TooManyPartitions(_) => ErrorCode::InvalidPartitions,
        }
    }
}

/// State shared by the topics of one request: what earlier topics took.
struct Budget {
    /// Partitions the request may still create.
    partitions_left: usize,
    /// Topic ids drawn so far, so two new topics never share one.
    new_ids: BTreeSet<TopicId>,
}

impl Budget {
    fn new() -> Budget {
        Budget { partitions_left: MAX_NEW_PARTITIONS_PER_REQUEST, new_ids: BTreeSet::new() }
    }

    fn take(&mut self, partitions: usize) -> Result<(), usize> {
        self.partitions_left = self.partitions_left.checked_sub(partitions).ok_or(partitions)?;
        Ok(())
    }
}

/// CreateTopics against `image`: the records of every created topic (`Topic`, its `Config`s, one
/// `Partition` per partition, in that order) and one result per distinct name, in request order.
pub(crate) fn create_topics(
    image: &MetadataImage,
    config: &ControllerConfig,
    request: &CreateTopicsRequest,
    rng: &mut impl RngCore,
) -> (Vec<MetadataRecord>, Vec<CreateTopicResult>) {
    let duplicates = duplicated(request.topics.iter().map(|t| t.name.as_str()));
    let mut reported = BTreeSet::new();
    let mut budget = Budget::new();
    let mut records = Vec::new();
    let mut results = Vec::new();
    for topic in &request.topics {
        if duplicates.contains(topic.name.as_str()) {
            if reported.insert(topic.name.as_str()) {
                results.push(CreateTopicResult {
                    name: topic.name.clone(),
                    outcome: Err(CreateTopicError::DuplicateName),
                });
            }
            continue;
        }
        let outcome = create_topic(image, config, topic, rng, &mut budget).map(|(created, topic_records)| {
            records.extend(topic_records);
            created
        });
        results.push(CreateTopicResult { name: topic.name.clone(), outcome });
    }
    if request.validate_only {
        records.clear();
    }
    (records, results)
}

/// The names that appear more than once.
fn duplicated<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    names.filter(|name| !seen.insert(*name)).collect()
}

fn create_topic(
    image: &MetadataImage,
    config: &ControllerConfig,
    topic: &CreatableTopic,
    rng: &mut impl RngCore,
    budget: &mut Budget,
) -> Result<(CreatedTopic, Vec<MetadataRecord>), CreateTopicError> {
    let name = topic.name.as_str();
    if image.topic_by_name(name).is_some() {
        return Err(CreateTopicError::AlreadyExists(name.to_owned()));
    }
    validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
    if let Some(existing) = colliding_topic(image, name) {
        return Err(CreateTopicError::Collision { name: name.to_owned(), existing: existing.to_owned() });
    }
    for (key, value) in &topic.configs {
        validate_topic_config(key, value).map_err(CreateTopicError::InvalidConfig)?;
    }

    let replicas: Vec<Vec<BrokerId>> = if !topic.assignments.is_empty() {
        if topic.replication_factor != -1 {
            return Err(CreateTopicError::AssignmentWithReplicationFactor);
        }
        if topic.num_partitions != -1 {
            return Err(CreateTopicError::AssignmentWithPartitionCount);
        }
        let mut by_index: BTreeMap<i32, Vec<BrokerId>> = BTreeMap::new();
        let mut replication_factor = None;
        for assignment in &topic.assignments {
            let index = assignment.partition_index;
            if by_index.contains_key(&index) {
                return Err(CreateTopicError::DuplicateAssignment(index));
            }
            validate_manual_assignment(image, &assignment.broker_ids, replication_factor)
                .map_err(CreateTopicError::InvalidAssignment)?;
            replication_factor = Some(assignment.broker_ids.len());
            if !assignment.broker_ids.iter().any(|&id| image.is_active_broker(id)) {
                return Err(CreateTopicError::AssignmentAllInactive(index));
            }
            by_index.insert(index, assignment.broker_ids.clone());
        }
        // Keys 0..len, each present once, iff the last key is len - 1 and the first 0.
        if by_index.keys().copied().ne(0..by_index.len() as i32) {
            return Err(CreateTopicError::AssignmentNotConsecutive);
        }
        budget.take(by_index.len()).map_err(CreateTopicError::TooManyPartitions)?;
        by_index.into_values().collect()
    } else {
        if topic.replication_factor < -1 || topic.replication_factor == 0 {
            return Err(CreateTopicError::InvalidReplicationFactor(topic.replication_factor));
        }
        if topic.num_partitions < -1 || topic.num_partitions == 0 {
            return Err(CreateTopicError::InvalidPartitionCount(topic.num_partitions));
        }
        let count = if topic.num_partitions == -1 { config.default_num_partitions } else { topic.num_partitions };
        let replication_factor =
            if topic.replication_factor == -1 { config.default_replication_factor } else { topic.replication_factor };
        // A non-positive `num.partitions` is a config bug net refuses; fail the topic, not the node.
        let count = u32::try_from(count).map_err(|_| CreateTopicError::InvalidPartitionCount(count))?;
        budget.take(count as usize).map_err(CreateTopicError::TooManyPartitions)?;
        let placed = place_replicas(&image.usable_brokers(), count, replication_factor.into(), rng.next_u64())
            .map_err(|error| CreateTopicError::Placement { replication_factor, error })?;
        if placed.iter().any(|replicas| !replicas.iter().any(|&id| image.is_active_broker(id))) {
            return Err(CreateTopicError::AllInactive(replication_factor));
        }
        placed
    };

    let topic_id = new_topic_id(rng, |id| image.topic(id).is_some() || budget.new_ids.contains(&id));
    budget.new_ids.insert(topic_id);
    let mut records = vec![MetadataRecord::Topic { name: name.to_owned(), topic_id }];
    // Configs after the topic (they name it) and before its partitions, as Kafka orders them.
    records.extend(topic.configs.iter().map(|(key, value)| MetadataRecord::Config {
        resource: ConfigResource::Topic(name.to_owned()),
        name: key.clone(),
        value: Some(value.clone()),
    }));
    records.extend(partition_records(image, topic_id, 0, &replicas));
    let created = CreatedTopic {
        topic_id,
        num_partitions: replicas.len() as i32,
        replication_factor: replicas[0].len() as i16,
        configs: topic.configs.clone(),
    };
    Ok((created, records))
}

/// `Partition` records for new partitions from `first` on. As Kafka: the ISR is the replicas that
/// are active now (a fenced replica joins later through AlterPartition), the leader the first of
/// them, epochs 0. The caller has checked every ISR is non-empty.
fn partition_records<'a>(
    image: &'a MetadataImage,
    topic_id: TopicId,
    first: i32,
    replicas: &'a [Vec<BrokerId>],
) -> impl Iterator<Item = MetadataRecord> + 'a {
    replicas.iter().zip(first..).map(move |(replicas, partition)| {
        let isr: Vec<BrokerId> = replicas.iter().copied().filter(|&id| image.is_active_broker(id)).collect();
        MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition,
            replicas: replicas.clone(),
            leader: isr[0],
            isr,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    })
}

/// An existing topic whose name equals `name` once '.' and '_' are unified (Kafka's
/// `Topic.unifyCollisionChars`), other than `name` itself.
fn colliding_topic<'a>(image: &'a MetadataImage, name: &str) -> Option<&'a str> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let unified = name.replace('.', "_");
    image
        .topic_ids
        .keys()
        .map(String::as_str)
        .find(|existing| *existing != name && existing.replace('.', "_") == unified)
}

/// A random topic id (UUID v4 bits) as Kafka's `Uuid.randomUuid` draws them: never one already
/// `taken`, never one whose base64 form starts with '-' (command lines would read it as a flag).
/// The v4 version bits make the reserved all-zero and metadata-topic ids impossible.
pub(crate) fn new_topic_id(rng: &mut impl RngCore, taken: impl Fn(TopicId) -> bool) -> TopicId {
    loop {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        // base64url digit 62 is '-': the first six bits.
        if id.as_bytes()[0] >> 2 != 62 && !taken(id) {
            return id;
        }
    }
}

/// The records creating `__consumer_offsets` once enough brokers are active to place it (design
/// 5.5); `None` while it exists or cannot be placed yet.
pub(crate) fn offsets_topic_records(
    image: &MetadataImage,
    config: &ControllerConfig,
    rng: &mut impl RngCore,
) -> Option<Vec<MetadataRecord>> {
    if image.topic_by_name(OFFSETS_TOPIC).is_some() {
        return None;
    }
    let active = image.brokers.values().filter(|b| b.is_active()).count();
    if active < usize::try_from(config.offsets_topic_replication_factor).unwrap_or(usize::MAX) {
        return None;
    }
    let topic = CreatableTopic {
        name: OFFSETS_TOPIC.to_owned(),
        num_partitions: config.offsets_topic_num_partitions,
        replication_factor: config.offsets_topic_replication_factor,
        assignments: Vec::new(),
        configs: config.offsets_topic_configs.clone(),
    };
    create_topic(image, config, &topic, rng, &mut Budget::new()).ok().map(|(_, records)| records)
}

// ---- DeleteTopics ----

/// A topic named in a DeleteTopics request (Kafka API 20, v6 names or ids).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicRef {
    Name(String),
    Id(TopicId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteTopicsRequest {
    pub topics: Vec<TopicRef>,
}

/// The result for one topic of the request: name and id as far as known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteTopicResult {
    pub name: Option<String>,
    pub topic_id: Option<TopicId>,
    pub outcome: Result<(), DeleteTopicError>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeleteTopicError {
    /// Kafka's default message for UNKNOWN_TOPIC_OR_PARTITION.
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("Duplicate topic name.")]
    DuplicateName,
    #[error("Duplicate topic id.")]
    DuplicateId,
}

impl DeleteTopicError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DeleteTopicError::UnknownTopic => ErrorCode::UnknownTopicOrPartition,
            DeleteTopicError::UnknownTopicId => ErrorCode::UnknownTopicId,
            DeleteTopicError::DuplicateName | DeleteTopicError::DuplicateId => ErrorCode::InvalidRequest,
        }
    }
}

/// DeleteTopics against `image`: one `RemoveTopic` per deleted topic (its configs go with it on
/// apply). A name or id given twice is refused once; a topic named once by name and once by id is
/// deleted by the first and refused as a duplicate by the second.
pub(crate) fn delete_topics(
    image: &MetadataImage,
    request: &DeleteTopicsRequest,
) -> (Vec<MetadataRecord>, Vec<DeleteTopicResult>) {
    let names = duplicated(request.topics.iter().filter_map(|t| match t {
        TopicRef::Name(name) => Some(name.as_str()),
        TopicRef::Id(_) => None,
    }));
    let mut ids = BTreeSet::new();
    let duplicate_ids: BTreeSet<TopicId> = request
        .topics
        .iter()
        .filter_map(|t| match t {
            TopicRef::Id(id) => Some(*id),
            TopicRef::Name(_) => None,
        })
        .filter(|id| !ids.insert(*id))
        .collect();

    let mut reported = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut records = Vec::new();
    let mut results = Vec::new();
    for topic in &request.topics {
        let result = match topic {
            TopicRef::Name(name) if names.contains(name.as_str()) => {
                if !reported.insert(topic) {
                    continue;
                }
                DeleteTopicResult {
                    name: Some(name.clone()),
                    topic_id: None,
                    outcome: Err(DeleteTopicError::DuplicateName),
                }
            }
            TopicRef::Id(id) if duplicate_ids.contains(id) => {
                if !reported.insert(topic) {
                    continue;
                }
                DeleteTopicResult { name: None, topic_id: Some(*id), outcome: Err(DeleteTopicError::DuplicateId) }
            }
            TopicRef::Name(name) => match image.topic_by_name(name) {
                None => DeleteTopicResult {
                    name: Some(name.clone()),
                    topic_id: None,
                    outcome: Err(DeleteTopicError::UnknownTopic),
                },
                Some(t) if !deleted.insert(t.topic_id) => DeleteTopicResult {
                    name: Some(name.clone()),
                    topic_id: Some(t.topic_id),
                    outcome: Err(DeleteTopicError::DuplicateName),
                },
                Some(t) => {
                    records.push(MetadataRecord::RemoveTopic { topic_id: t.topic_id });
                    DeleteTopicResult { name: Some(name.clone()), topic_id: Some(t.topic_id), outcome: Ok(()) }
                }
            },
            TopicRef::Id(id) => match image.topic(*id) {
                None => DeleteTopicResult {
                    name: None,
                    topic_id: Some(*id),
                    outcome: Err(DeleteTopicError::UnknownTopicId),
                },
                Some(t) if !deleted.insert(*id) => DeleteTopicResult {
                    name: Some(t.name.clone()),
                    topic_id: Some(*id),
                    outcome: Err(DeleteTopicError::DuplicateId),
                },
                Some(t) => {
                    records.push(MetadataRecord::RemoveTopic { topic_id: *id });
                    DeleteTopicResult { name: Some(t.name.clone()), topic_id: Some(*id), outcome: Ok(()) }
                }
            },
        };
        results.push(result);
    }
    (records, results)
}

// ---- CreatePartitions ----

/// One topic of a CreatePartitions request (Kafka API 37).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsTopic {
    pub name: String,
    /// The new total partition count.
    pub count: i32,
    /// Replicas of each new partition, in order; `None`: placed like a new topic.
    pub assignments: Option<Vec<Vec<BrokerId>>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsRequest {
    pub topics: Vec<CreatePartitionsTopic>,
    pub validate_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePartitionsResult {
    pub name: String,
    pub outcome: Result<(), CreatePartitionsError>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreatePartitionsError {
    #[error("Duplicate topic name.")]
    DuplicateName,
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("Topic already has {0} partition(s).")]
    AlreadyHas(usize),
    #[error("The topic {name} currently has {current} partition(s); {requested} would not be an increase.")]
    NotAnIncrease { name: String, current: usize, requested: i32 },
    #[error("Attempted to add {additional} additional partition(s), but only {given} assignment(s) were specified.")]
    AssignmentCount { additional: usize, given: usize },
    #[error("{0}")]
    InvalidAssignment(AssignmentError),
    #[error(
        "All brokers specified in the manual partition assignment for partition {0} are fenced or in controlled shutdown."
    )]
    AssignmentAllInactive(i32),
    /// Kafka passes the placer's message through unwrapped here.
    #[error("{0}")]
    Placement(PlacementError),
    #[error(
        "Unable to replicate the partition {0} time(s): All brokers are currently fenced or in controlled shutdown."
    )]
    AllInactive(usize),
    #[error(
        "Creating {0} partition(s) would exceed the limit of {MAX_NEW_PARTITIONS_PER_REQUEST} new partitions per request."
    )]
    TooManyPartitions(usize),
}

impl CreatePartitionsError {
    pub fn code(&self) -> ErrorCode {
        use CreatePartitionsError::*;
        match self {
            DuplicateName => ErrorCode::InvalidRequest,
            UnknownTopic => ErrorCode::UnknownTopicOrPartition,
            AlreadyHas(_) | NotAnIncrease { .. } | TooManyPartitions(_) => ErrorCode::InvalidPartitions,
            AssignmentCount { .. } | InvalidAssignment(_) | AssignmentAllInactive(_) => {
                ErrorCode::InvalidReplicaAssignment
            }
            Placement(_) | AllInactive(_) => ErrorCode::InvalidReplicationFactor,
        }
    }
}

/// CreatePartitions against `image`: `Partition` records for the new partitions of every topic.
pub(crate) fn create_partitions(
    image: &MetadataImage,
    request: &CreatePartitionsRequest,
    rng: &mut impl RngCore,
) -> (Vec<MetadataRecord>, Vec<CreatePartitionsResult>) {
    let duplicates = duplicated(request.topics.iter().map(|t| t.name.as_str()));
    let mut reported = BTreeSet::new();
    let mut budget = Budget::new();
    let mut records = Vec::new();
    let mut results = Vec::new();
    for topic in &request.topics {
        let outcome = if duplicates.contains(topic.name.as_str()) {
            if !reported.insert(topic.name.as_str()) {
                continue;
            }
            Err(CreatePartitionsError::DuplicateName)
        } else {
            create_topic_partitions(image, topic, rng, &mut budget).map(|new| records.extend(new))
        };
        results.push(CreatePartitionsResult { name: topic.name.clone(), outcome });
    }
    if request.validate_only {
        records.clear();
    }
    (records, results)
}

fn create_topic_partitions(
    image: &MetadataImage,
    topic: &CreatePartitionsTopic,
    rng: &mut impl RngCore,
    budget: &mut Budget,
) -> Result<Vec<MetadataRecord>, CreatePartitionsError> {
    let existing = image.topic_by_name(&topic.name).ok_or(CreatePartitionsError::UnknownTopic)?;
    let current = existing.partitions.len();
    let requested = usize::try_from(topic.count).unwrap_or(0);
    if requested == current {
        return Err(CreatePartitionsError::AlreadyHas(current));
    }
    if requested < current {
        return Err(CreatePartitionsError::NotAnIncrease { name: topic.name.clone(), current, requested: topic.count });
    }
    let additional = requested - current;
    if let Some(assignments) = &topic.assignments {
        if assignments.len() != additional {
            return Err(CreatePartitionsError::AssignmentCount { additional, given: assignments.len() });
        }
    }
    budget.take(additional).map_err(CreatePartitionsError::TooManyPartitions)?;
    // A topic always has a partition: the image refuses a topic's records out of order, and
    // creation writes at least one.
    let replication_factor = existing.partitions[0].replicas.len();
    let first = current as i32;
    let replicas = match &topic.assignments {
        Some(assignments) => {
            for (replicas, partition) in assignments.iter().zip(first..) {
                validate_manual_assignment(image, replicas, Some(replication_factor))
                    .map_err(CreatePartitionsError::InvalidAssignment)?;
                if !replicas.iter().any(|&id| image.is_active_broker(id)) {
                    return Err(CreatePartitionsError::AssignmentAllInactive(partition));
                }
            }
            assignments.clone()
        }
        None => {
            let placed =
                place_replicas(&image.usable_brokers(), additional as u32, replication_factor as i32, rng.next_u64())
                    .map_err(CreatePartitionsError::Placement)?;
            if placed.iter().any(|replicas| !replicas.iter().any(|&id| image.is_active_broker(id))) {
                return Err(CreatePartitionsError::AllInactive(replication_factor));
            }
            placed
        }
    };
    Ok(partition_records(image, existing.topic_id, first, &replicas).collect())
}

// ---- IncrementalAlterConfigs (topics) ----

/// One change to a config key. Kafka's APPEND and SUBTRACT apply to list-typed keys only, whose
/// types net knows: it turns them into `Set` of the resulting list before forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    Delete,
}

/// The changes to one topic's configs (Kafka API 44, resource type TOPIC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterTopicConfigs {
    pub topic: String,
    pub ops: Vec<(String, ConfigOp)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementalAlterConfigsRequest {
    pub resources: Vec<AlterTopicConfigs>,
    pub validate_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterConfigsResult {
    pub topic: String,
    pub outcome: Result<(), AlterConfigsError>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlterConfigsError {
    #[error("Duplicate resource.")]
    DuplicateResource,
    #[error("Error due to duplicate config keys")]
    DuplicateKey(String),
    #[error("The topic '{0}' does not exist.")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidConfig(ConfigError),
}

impl AlterConfigsError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AlterConfigsError::DuplicateResource | AlterConfigsError::DuplicateKey(_) => ErrorCode::InvalidRequest,
            AlterConfigsError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
            AlterConfigsError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        }
    }
}

/// IncrementalAlterConfigs on topics against `image`: a `Config` record per key whose value
/// changes (setting a key to its current value, or deleting an absent one, writes nothing, as in
/// Kafka). A resource is changed whole or not at all.
pub(crate) fn alter_topic_configs(
    image: &MetadataImage,
    request: &IncrementalAlterConfigsRequest,
) -> (Vec<MetadataRecord>, Vec<AlterConfigsResult>) {
    let duplicates = duplicated(request.resources.iter().map(|r| r.topic.as_str()));
    let mut reported = BTreeSet::new();
    let mut records = Vec::new();
    let mut results = Vec::new();
    for resource in &request.resources {
        let outcome = if duplicates.contains(resource.topic.as_str()) {
            if !reported.insert(resource.topic.as_str()) {
                continue;
            }
            Err(AlterConfigsError::DuplicateResource)
        } else {
            alter_one_topic(image, resource).map(|new| records.extend(new))
        };
        results.push(AlterConfigsResult { topic: resource.topic.clone(), outcome });
    }
    if request.validate_only {
        records.clear();
    }
    (records, results)
}

fn alter_one_topic(
    image: &MetadataImage,
    resource: &AlterTopicConfigs,
) -> Result<Vec<MetadataRecord>, AlterConfigsError> {
    if let Some(key) = duplicated(resource.ops.iter().map(|(key, _)| key.as_str())).into_iter().next() {
        return Err(AlterConfigsError::DuplicateKey(key.to_owned()));
    }
    let topic =
        image.topic_by_name(&resource.topic).ok_or_else(|| AlterConfigsError::UnknownTopic(resource.topic.clone()))?;
    let mut records = Vec::new();
    for (key, op) in &resource.ops {
        let value = match op {
            ConfigOp::Set(value) => {
                validate_topic_config(key, value).map_err(AlterConfigsError::InvalidConfig)?;
                Some(value.clone())
            }
            ConfigOp::Delete => None,
        };
        if topic.configs.get(key) != value.as_ref() {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic(resource.topic.clone()),
                name: key.clone(),
                value,
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;
    use crate::metadata::image::tests::{image_with, tid};
    use crate::metadata::PartitionRegistration;
    use crate::types::TopicIdPartition;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        }
    }

    fn create(image: &MetadataImage, topics: Vec<CreatableTopic>) -> (Vec<MetadataRecord>, Vec<CreateTopicResult>) {
        create_topics(
            image,
            &ControllerConfig::new(3),
            &CreateTopicsRequest { topics, validate_only: false },
            &mut rng(),
        )
    }

    fn error_of(results: &[CreateTopicResult], name: &str) -> CreateTopicError {
        results.iter().find(|r| r.name == name).unwrap().outcome.clone().unwrap_err()
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        let index = image.applied_index + 1;
        let delta = image.apply(index, records);
        assert!(delta.rejected.is_empty(), "{:?}", delta.rejected);
    }

    fn fence(image: &mut MetadataImage, broker_id: BrokerId) {
        let broker_epoch = image.brokers[&broker_id].epoch;
        apply(
            image,
            &[MetadataRecord::BrokerChange {
                broker_id,
                broker_epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            }],
        );
    }

    #[test]
    fn topic_names_follow_kafkas_rules_and_messages() {
        assert_eq!(validate_topic_name("a-Z_0.9"), Ok(()));
        assert_eq!(validate_topic_name(&"x".repeat(249)), Ok(()));
        assert_eq!(validate_topic_name("").unwrap_err().to_string(), "Topic name is illegal, it can't be empty");
        assert_eq!(validate_topic_name(".").unwrap_err().to_string(), "Topic name cannot be \".\" or \"..\"");
        assert_eq!(validate_topic_name("..").unwrap_err(), TopicNameError::Dots);
        let long = "x".repeat(250);
        assert_eq!(
            validate_topic_name(&long).unwrap_err().to_string(),
            format!("Topic name is illegal, it can't be longer than 249 characters, Topic name: {long}")
        );
        for bad in ["a b", "a/b", "é", "a\0", "topic!"] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().to_string(),
                format!("Topic name \"{bad}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'")
            );
        }
    }

    #[test]
    fn controller_config_keys_are_checked_with_kafkas_messages() {
        assert_eq!(validate_topic_config("min.insync.replicas", "2"), Ok(()));
        assert_eq!(validate_topic_config("min.insync.replicas", " 1 "), Ok(()));
        assert_eq!(
            validate_topic_config("min.insync.replicas", "0").unwrap_err().to_string(),
            "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"
        );
        assert_eq!(
            validate_topic_config("min.insync.replicas", "two").unwrap_err().to_string(),
            "Invalid value two for configuration min.insync.replicas: Not a number of type INT"
        );
        assert_eq!(validate_topic_config("unclean.leader.election.enable", "FALSE"), Ok(()));
        assert_eq!(
            validate_topic_config("unclean.leader.election.enable", "yes").unwrap_err().to_string(),
            "Invalid value yes for configuration unclean.leader.election.enable: Expected value to be either true or false"
        );
        assert!(validate_topic_config("unclean.leader.election.enable", "true").is_err());
        assert_eq!(validate_topic_config("retention.ms", "anything"), Ok(()), "net validates other keys");
    }

    #[test]
    fn created_topic_is_a_topic_its_configs_and_one_partition_record_each() {
        let mut image = image_with(&[1, 2, 3], &[]);
        let mut t = topic("orders", 3, 2);
        t.configs.insert("min.insync.replicas".into(), "2".into());
        let (records, results) = create(&image, vec![t]);
        let created = results[0].outcome.clone().unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (3, 2));
        assert_eq!(records.len(), 1 + 1 + 3);
        assert_eq!(records[0], MetadataRecord::Topic { name: "orders".into(), topic_id: created.topic_id });
        assert_eq!(
            records[1],
            MetadataRecord::Config {
                resource: ConfigResource::Topic("orders".into()),
                name: "min.insync.replicas".into(),
                value: Some("2".into())
            }
        );
        apply(&mut image, &records);
        let image_topic = image.topic_by_name("orders").unwrap();
        assert_eq!(image_topic.configs["min.insync.replicas"], "2");
        let mut leaders = BTreeSet::new();
        for p in &image_topic.partitions {
            assert_eq!(p.replicas.len(), 2);
            assert_eq!(p.isr, p.replicas, "every replica is active");
            assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(p.replicas[0]), 0, 0));
            leaders.insert(p.replicas[0]);
        }
        assert_eq!(leaders.len(), 3, "three partitions lead on three brokers");
    }

    #[test]
    fn fenced_replicas_are_left_out_of_the_initial_isr() {
        // Kafka's createTopic: ISR = active replicas, leader = the first of them.
        let mut image = image_with(&[1, 2, 3], &[]);
        fence(&mut image, 3);
        let (records, results) = create(&image, vec![topic("t2", 6, 3)]);
        assert!(results[0].outcome.is_ok());
        apply(&mut image, &records);
        for p in &image.topic_by_name("t2").unwrap().partitions {
            assert_eq!(p.replicas.len(), 3);
            assert!(!p.isr.contains(&3));
            assert_eq!(p.isr.len(), 2);
            assert_ne!(p.leader, Some(3));
            assert_eq!(p.leader, Some(p.isr[0]));
        }
    }

    #[test]
    fn default_counts_apply_for_minus_one() {
        let image = image_with(&[1, 2, 3], &[]);
        let mut config = ControllerConfig::new(3);
        config.default_num_partitions = 4;
        config.default_replication_factor = 2;
        let request = CreateTopicsRequest { topics: vec![topic("d", -1, -1)], validate_only: false };
        let (_, results) = create_topics(&image, &config, &request, &mut rng());
        let created = results[0].outcome.clone().unwrap();
        assert_eq!((created.num_partitions, created.replication_factor), (4, 2));
    }

    #[test]
    fn create_topic_errors_carry_kafkas_codes_and_messages() {
        let image = image_with(&[1, 2], &[(&[1], &[1], 1)]);
        let mut unclean = topic("unclean", 1, 1);
        unclean.configs.insert("unclean.leader.election.enable".into(), "true".into());
        let (records, results) = create(
            &image,
            vec![
                topic("t", 1, 1),
                topic("bad name", 1, 1),
                topic("rf0", 1, 0),
                topic("rf-2", 1, -2),
                topic("p0", 0, 1),
                topic("rf3", 1, 3),
                unclean,
                topic("dup", 1, 1),
                topic("dup", 2, 1),
            ],
        );
        assert!(records.is_empty());
        let check = |name: &str, code: i16, message: &str| {
            let err = error_of(&results, name);
            assert_eq!((err.code().code(), err.to_string().as_str()), (code, message), "{name}");
        };
        check("t", 36, "Topic 't' already exists.");
        check(
            "bad name",
            17,
            "Topic name \"bad name\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'",
        );
        check("rf0", 38, "Replication factor must be larger than 0, or -1 to use the default value.");
        check("rf-2", 38, "Replication factor must be larger than 0, or -1 to use the default value.");
        check("p0", 37, "Number of partitions was set to an invalid non-positive value.");
        check(
            "rf3",
            38,
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because \
             only 2 broker(s) are registered.",
        );
        check(
            "unclean",
            40,
            "Invalid value true for configuration unclean.leader.election.enable: unclean leader election is not \
             supported: leaders are elected from the ISR only",
        );
        check("dup", 42, "Duplicate topic name.");
        assert_eq!(results.iter().filter(|r| r.name == "dup").count(), 1, "a duplicate name is reported once");
        assert_eq!(results.len(), 8);
    }

    #[test]
    fn all_brokers_fenced_is_an_invalid_replication_factor() {
        let mut image = image_with(&[1, 2], &[]);
        fence(&mut image, 1);
        fence(&mut image, 2);
        let (_, results) = create(&image, vec![topic("u", 1, 1)]);
        let err = error_of(&results, "u");
        assert_eq!(err.code(), ErrorCode::InvalidReplicationFactor);
        assert_eq!(err.to_string(), "Unable to replicate the partition 1 time(s): All brokers are currently fenced.");
    }

    #[test]
    fn names_differing_only_in_dot_and_underscore_collide() {
        let mut image = image_with(&[1], &[]);
        let (records, _) = create(&image, vec![topic("a.b", 1, 1)]);
        apply(&mut image, &records);
        let (_, results) = create(&image, vec![topic("a_b", 1, 1), topic("a.b", 1, 1), topic("a-b", 1, 1)]);
        let err = error_of(&results, "a_b");
        assert_eq!((err.code().code(), err.to_string()), (17, "Topic 'a_b' collides with existing topic: a.b".into()));
        assert_eq!(error_of(&results, "a.b").code(), ErrorCode::TopicAlreadyExists, "an exact match already exists");
        assert!(results[2].outcome.is_ok());
    }

    #[test]
    fn manual_assignments_are_checked_in_kafkas_order() {
        let mut image = image_with(&[1, 2, 3], &[]);
        fence(&mut image, 3);
        let manual = |assignments: &[(i32, &[BrokerId])]| CreatableTopic {
            name: "m".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: assignments
                .iter()
                .map(|(index, ids)| ReplicaAssignment { partition_index: *index, broker_ids: ids.to_vec() })
                .collect(),
            configs: BTreeMap::new(),
        };
        let err = |t: CreatableTopic| error_of(&create(&image, vec![t]).1, "m");

        let mut with_rf = manual(&[(0, &[1])]);
        with_rf.replication_factor = 1;
        assert_eq!(err(with_rf), CreateTopicError::AssignmentWithReplicationFactor);
        let mut with_count = manual(&[(0, &[1])]);
        with_count.num_partitions = 1;
        assert_eq!(err(with_count).code().code(), 42);
        assert_eq!(
            err(manual(&[(0, &[1]), (0, &[2])])).to_string(),
            "Found multiple manual partition assignments for partition 0"
        );
        let e = err(manual(&[(0, &[1, 9])]));
        assert_eq!(
            (e.code().code(), e.to_string()),
            (39, "The manual partition assignment includes broker 9, but no such broker is registered.".into())
        );
        assert_eq!(err(manual(&[(0, &[1, 2]), (1, &[1])])).code(), ErrorCode::InvalidReplicaAssignment);
        assert_eq!(
            err(manual(&[(0, &[1]), (1, &[3])])).to_string(),
            "All brokers specified in the manual partition assignment for partition 1 are fenced or in controlled \
             shutdown."
        );
        assert_eq!(
            err(manual(&[(0, &[1]), (2, &[2])])).to_string(),
            "partitions should be a consecutive 0-based integer sequence"
        );

        // Accepted, in partition order, fenced 3 a replica but not in the ISR.
        let (records, results) = create(&image, vec![manual(&[(1, &[2, 3]), (0, &[3, 1])])]);
        assert_eq!(results[0].outcome.as_ref().unwrap().replication_factor, 2);
        apply(&mut image, &records);
        let parts = &image.topic_by_name("m").unwrap().partitions;
        assert_eq!(
            parts[0],
            PartitionRegistration {
                replicas: vec![3, 1],
                isr: vec![1],
                leader: Some(1),
                leader_epoch: 0,
                partition_epoch: 0
            }
        );
        assert_eq!((parts[1].replicas.clone(), parts[1].isr.clone(), parts[1].leader), (vec![2, 3], vec![2], Some(2)));
    }

    #[test]
    fn validate_only_checks_everything_and_writes_nothing() {
        let image = image_with(&[1], &[]);
        let request = CreateTopicsRequest { topics: vec![topic("v", 2, 1), topic("w", 1, 2)], validate_only: true };
        let (records, results) = create_topics(&image, &ControllerConfig::new(1), &request, &mut rng());
        assert!(records.is_empty());
        assert!(results[0].outcome.is_ok());
        assert_eq!(error_of(&results, "w").code(), ErrorCode::InvalidReplicationFactor);
    }

    #[test]
    fn one_request_may_not_create_more_than_the_partition_limit() {
        let image = image_with(&[1], &[]);
        let (records, results) = create(&image, vec![topic("a", 6_000, 1), topic("b", 5_000, 1), topic("c", 4_000, 1)]);
        assert!(results[0].outcome.is_ok());
        let err = error_of(&results, "b");
        assert_eq!(err.code(), ErrorCode::InvalidPartitions);
        assert_eq!(
            err.to_string(),
            "Creating 5000 partition(s) would exceed the limit of 10000 new partitions per request."
        );
        assert!(results[2].outcome.is_ok(), "what is left of the budget still serves");
        assert_eq!(records.len(), 2 + 6_000 + 4_000);
    }

    #[test]
    fn topic_ids_are_fresh_and_never_start_with_a_dash() {
        let mut rng = rng();
        let mut seen = BTreeSet::new();
        for _ in 0..2_000 {
            let id = new_topic_id(&mut rng, |id| seen.contains(&id));
            assert_ne!(id.as_bytes()[0] >> 2, 62);
            assert!(seen.insert(id));
        }
        // A taken id is drawn again.
        let first = new_topic_id(&mut SmallRng::seed_from_u64(1), |_| false);
        let second = new_topic_id(&mut SmallRng::seed_from_u64(1), |id| id == first);
        assert_ne!(first, second);
    }

    #[test]
    fn offsets_topic_waits_for_enough_active_brokers() {
        let mut config = ControllerConfig::new(3);
        config.offsets_topic_configs.insert("retention.ms".into(), "-1".into());
        let mut image = image_with(&[1, 2, 3], &[]);
        fence(&mut image, 3);
        assert_eq!(offsets_topic_records(&image, &config, &mut rng()), None, "two active brokers, factor 3");
        let mut image = image_with(&[1, 2, 3], &[]);
        let records = offsets_topic_records(&image, &config, &mut rng()).unwrap();
        assert_eq!(records.len(), 1 + 1 + 50);
        apply(&mut image, &records);
        let t = image.topic_by_name(OFFSETS_TOPIC).unwrap();
        assert_eq!(t.configs["retention.ms"], "-1");
        assert!(t.partitions.iter().all(|p| p.replicas.len() == 3 && p.isr.len() == 3));
        assert_eq!(offsets_topic_records(&image, &config, &mut rng()), None, "it exists");
    }

    #[test]
    fn delete_by_name_or_id_with_unknown_and_duplicate_errors() {
        let image = image_with(&[1], &[(&[1], &[1], 1)]);
        let request = DeleteTopicsRequest {
            topics: vec![
                TopicRef::Name("t".into()),
                TopicRef::Id(tid(1)),
                TopicRef::Name("missing".into()),
                TopicRef::Id(tid(9)),
                TopicRef::Name("x".into()),
                TopicRef::Name("x".into()),
            ],
        };
        let (records, results) = delete_topics(&image, &request);
        assert_eq!(records, vec![MetadataRecord::RemoveTopic { topic_id: tid(1) }]);
        let summary: Vec<_> = results
            .iter()
            .map(|r| (r.name.clone(), r.topic_id, r.outcome.as_ref().err().map(|e| (e.code().code(), e.to_string()))))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("t".into()), Some(tid(1)), None),
                (Some("t".into()), Some(tid(1)), Some((42, "Duplicate topic id.".into()))),
                (Some("missing".into()), None, Some((3, "This server does not host this topic-partition.".into()))),
                (None, Some(tid(9)), Some((100, "This server does not host this topic ID.".into()))),
                (Some("x".into()), None, Some((42, "Duplicate topic name.".into()))),
            ]
        );
    }

    #[test]
    fn create_partitions_adds_placed_partitions_after_the_existing_ones() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2], &[1, 2], 1)]);
        let request = CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic { name: "t".into(), count: 4, assignments: None }],
            validate_only: false,
        };
        let (records, results) = create_partitions(&image, &request, &mut rng());
        assert_eq!(results[0].outcome, Ok(()));
        assert_eq!(records.len(), 3);
        apply(&mut image, &records);
        let parts = &image.topic(tid(1)).unwrap().partitions;
        assert_eq!(parts.len(), 4);
        for p in &parts[1..] {
            assert_eq!((p.replicas.len(), p.isr.clone(), p.leader_epoch), (2, p.replicas.clone(), 0));
        }
        let tp = TopicIdPartition { topic_id: tid(1), partition: 3 };
        assert!(image.partition(tp).is_some());
    }

    #[test]
    fn create_partitions_errors_carry_kafkas_codes_and_messages() {
        let mut image = image_with(&[1, 2, 3], &[(&[1, 2], &[1, 2], 1), (&[2, 3], &[2, 3], 2)]);
        fence(&mut image, 3);
        let topic = |count: i32, assignments: Option<Vec<Vec<BrokerId>>>| CreatePartitionsTopic {
            name: "t".into(),
            count,
            assignments,
        };
        let err = |t: CreatePartitionsTopic| {
            let request = CreatePartitionsRequest { topics: vec![t], validate_only: false };
            let e = create_partitions(&image, &request, &mut rng()).1.remove(0).outcome.unwrap_err();
            (e.code().code(), e.to_string())
        };
        assert_eq!(err(topic(2, None)), (37, "Topic already has 2 partition(s).".into()));
        assert_eq!(
            err(topic(1, None)),
            (37, "The topic t currently has 2 partition(s); 1 would not be an increase.".into())
        );
        assert_eq!(err(topic(-1, None)).0, 37);
        assert_eq!(
            err(topic(4, Some(vec![vec![1, 2]]))),
            (39, "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.".into())
        );
        assert_eq!(
            err(topic(3, Some(vec![vec![1]]))),
            (
                39,
                "The manual partition assignment includes a partition with 1 replica(s), but this is not consistent \
                 with previous partitions, which have 2 replica(s)."
                    .into()
            )
        );
        assert_eq!(
            err(topic(3, Some(vec![vec![3, 3]]))).1,
            "The manual partition assignment includes the broker 3 more than once."
        );
        assert_eq!(
            err(topic(3, Some(vec![vec![1, 4]]))).1,
            "The manual partition assignment includes broker 4, but no such broker is registered."
        );
        let mut unknown = topic(3, None);
        unknown.name = "nope".into();
        assert_eq!(err(unknown), (3, "This server does not host this topic-partition.".into()));

        // Duplicates are refused once; validate_only writes nothing.
        let request = CreatePartitionsRequest { topics: vec![topic(3, None), topic(4, None)], validate_only: false };
        let (records, results) = create_partitions(&image, &request, &mut rng());
        assert!(records.is_empty());
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].outcome.as_ref().unwrap_err().to_string(), "Duplicate topic name.");
        let request = CreatePartitionsRequest { topics: vec![topic(3, Some(vec![vec![2, 3]]))], validate_only: true };
        let (records, results) = create_partitions(&image, &request, &mut rng());
        assert_eq!((records.len(), results[0].outcome.clone()), (0, Ok(())));
    }

    #[test]
    fn alter_configs_writes_only_changes_and_refuses_unclean_election() {
        let mut image = image_with(&[1], &[(&[1], &[1], 1)]);
        let set = |key: &str, value: &str| (key.to_owned(), ConfigOp::Set(value.to_owned()));
        let alter = |image: &MetadataImage, ops: Vec<(String, ConfigOp)>| {
            let request = IncrementalAlterConfigsRequest {
                resources: vec![AlterTopicConfigs { topic: "t".into(), ops }],
                validate_only: false,
            };
            let (records, mut results) = alter_topic_configs(image, &request);
            (records, results.remove(0).outcome)
        };
        let (records, outcome) = alter(&image, vec![set("min.insync.replicas", "2"), set("retention.ms", "5")]);
        assert_eq!(outcome, Ok(()));
        assert_eq!(records.len(), 2);
        apply(&mut image, &records);

        // Same value again: nothing; delete of an absent key: nothing; delete of a present one: one record.
        let (records, _) = alter(
            &image,
            vec![
                set("min.insync.replicas", "2"),
                ("absent".into(), ConfigOp::Delete),
                ("retention.ms".into(), ConfigOp::Delete),
            ],
        );
        assert_eq!(
            records,
            vec![MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "retention.ms".into(),
                value: None
            }]
        );

        // One bad key refuses the whole resource.
        let (records, outcome) =
            alter(&image, vec![set("retention.ms", "9"), set("unclean.leader.election.enable", "true")]);
        assert!(records.is_empty());
        assert_eq!(outcome.unwrap_err().code().code(), 40);
        let (_, outcome) = alter(&image, vec![set("a", "1"), set("a", "2")]);
        assert_eq!(outcome.unwrap_err().to_string(), "Error due to duplicate config keys");

        let request = IncrementalAlterConfigsRequest {
            resources: vec![
                AlterTopicConfigs { topic: "missing".into(), ops: vec![set("a", "1")] },
                AlterTopicConfigs { topic: "t".into(), ops: vec![] },
                AlterTopicConfigs { topic: "t".into(), ops: vec![] },
            ],
            validate_only: false,
        };
        let (_, results) = alter_topic_configs(&image, &request);
        let errors: Vec<_> = results.iter().map(|r| r.outcome.as_ref().unwrap_err().to_string()).collect();
        assert_eq!(errors, vec!["The topic 'missing' does not exist.", "Duplicate resource."]);
        assert_eq!(results[0].outcome.as_ref().unwrap_err().code().code(), 3);
    }
}
