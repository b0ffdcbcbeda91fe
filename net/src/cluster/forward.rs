//! Sends a controller request from any broker to the active controller:
//! in-process when this node's controller is active, else over the
//! controller listener of the quorum leader, as the Kafka message of its
//! kind (`controller_api.rs` serves them there).
//!
//! The reply a caller gets is the [`ControllerReply`] the controller
//! produced, whichever way it travelled, so callers are written once.
//! Over the wire that takes two things Kafka's messages do not give
//! directly:
//!
//! - **Typed errors from code and message.** Where Kafka's schema carries
//!   a message (CreateTopics, DeleteTopics, CreatePartitions,
//!   IncrementalAlterConfigs), the controller sends the error's `Display`;
//!   here the candidates are rebuilt from the message, the request, and
//!   the result's name, and the one whose code and rendering equal what
//!   came is kept. Nothing is trusted that does not re-render exactly; a
//!   code and message no candidate produces (a controller of another
//!   version) is [`ForwardError::Protocol`], not a guess. The two values
//!   Kafka's messages drop are taken from the request, which is where the
//!   controller took them: the replication factor or partition count of
//!   INVALID_REPLICATION_FACTOR / INVALID_PARTITIONS, and the smallest
//!   duplicated key of "duplicate config keys".
//! - **AlterPartition detail.** Its schema has codes only. The controller
//!   fills the current epochs and leader into fields Kafka's brokers ignore
//!   on errors (see `alter_partition_response`), and the replicas, which
//!   AlterPartition never changes and the response does not carry, come
//!   from this node's metadata image. Two details are lost: the current
//!   broker epoch of a STALE_BROKER_EPOCH (`None`) and the list of an
//!   INELIGIBLE_REPLICA (empty). Leaders act on the codes.
//!
//! Retries: NOT_CONTROLLER, REQUEST_TIMED_OUT (the controller is busy),
//! a missing leader and connection failures are retried every
//! [`RETRY_BACKOFF`] until the caller's timeout, re-reading the leader
//! each time. A retried request may have taken effect the first time (a
//! reply lost with its connection, a controller that resigned after
//! proposing): a CreateTopics can then answer TOPIC_ALREADY_EXISTS, as in
//! Kafka. A fresh connection per attempt: forwarded requests are admin
//! operations and ISR changes, rare enough that a cached connection (and
//! its invalidation on every leader change) would not pay.

use super::controller_api::{
    self as api, call_with_limit, request_frame_bytes, ALTER_PARTITION_VERSION, CREATE_PARTITIONS_VERSION,
    CREATE_TOPICS_VERSION, DELETE_TOPICS_VERSION, ELECT_LEADERS_RESPONSE_MAX_BYTES, ELECT_LEADERS_VERSION,
    INCREMENTAL_ALTER_CONFIGS_VERSION, RESPONSE_MAX_BYTES,
};
use super::node::{ClusterNode, NotController};
use super::raft_driver::DriverHandle;
use super::transport::{self, CONTROLLER_REQUEST_MAX_BYTES};
use crate::api::str_bytes;
use kafka_protocol::messages::{self as km, ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use spindle_replication::controller::{self as ctl, ControllerReply, ControllerRequest};
use spindle_replication::metadata::{AssignmentError, PartitionRegistration, PlacementError};
use spindle_replication::quorum::Role;
use spindle_replication::types::{TopicIdPartition, NO_LEADER};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Pause between attempts: an election takes 50-100 ms here, so a retry
/// soon after finds the new leader; Kafka's `retry.backoff.ms` is 100 ms too.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Why [`forward`] has no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// No active controller answered within the timeout. The request may
    /// still take effect: answer REQUEST_TIMED_OUT, as Kafka does.
    Timeout,
    /// This node's controller is not active and the request has no message
    /// on the controller listener (registrations and heartbeats have their
    /// own task).
    NotForwardable,
    /// The encoded request exceeds `CONTROLLER_REQUEST_MAX_BYTES`, which the
    /// controller listener would refuse by closing the connection.
    TooLarge { bytes: usize },
    /// The exchange broke the protocol: the controller answered something
    /// that is not a reply to this request, or our request did not encode
    /// (a bug, or brokers of different versions). Retrying would not help.
    Protocol(String),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Timeout => write!(f, "no active controller answered in time"),
            ForwardError::NotForwardable => write!(f, "this request kind is not forwarded to the controller"),
            ForwardError::TooLarge { bytes } => {
                write!(f, "request of {bytes} bytes exceeds the controller listener's {CONTROLLER_REQUEST_MAX_BYTES}")
            }
            ForwardError::Protocol(why) => write!(f, "controller protocol error: {why}"),
        }
    }
}

/// Runs on core 0 of a broker that runs the quorum. Sends `request` to the
/// active controller: in-process via `node.request` when this node's
/// controller answers, else over the controller listener of the current
/// quorum leader (its address from `voters`). Retries NOT_CONTROLLER,
/// busy controllers and connection failures (re-reading the leader from
/// the driver's status, [`RETRY_BACKOFF`] apart) until `timeout` passes.
pub async fn forward(
    node: &Rc<ClusterNode>,
    driver: &DriverHandle,
    voters: &[(i32, SocketAddr)],
    request: ControllerRequest,
    timeout: Duration,
) -> Result<ControllerReply, ForwardError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ForwardError::Timeout);
        }
        match attempt(node, driver, voters, &request, left).await {
            Ok(reply) => return Ok(reply),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(why)) => tracing::debug!(why = %why, "controller request not served; retrying"),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        glommio::timer::sleep(RETRY_BACKOFF.min(left)).await;
    }
}

/// How one attempt ended without a reply.
enum Attempt {
    Retry(String),
    Final(ForwardError),
}

async fn attempt(
    node: &Rc<ClusterNode>,
    driver: &DriverHandle,
    voters: &[(i32, SocketAddr)],
    request: &ControllerRequest,
    left: Duration,
) -> Result<ControllerReply, Attempt> {
    let status = within(left, driver.status())
        .await
        .flatten()
        .ok_or_else(|| Attempt::Retry("quorum driver did not answer".into()))?;
    // In-process first: when this node's controller is not active it
    // answers Elsewhere at once, without touching anything.
    match within(left, node.request(request.clone(), &status)).await {
        None => return Err(Attempt::Retry("in-process controller did not answer in time".into())),
        Some(Ok(reply)) => return Ok(reply),
        Some(Err(NotController::Busy)) => return Err(Attempt::Retry("controller busy".into())),
        Some(Err(NotController::Resigned)) => return Err(Attempt::Retry("controller resigned".into())),
        Some(Err(NotController::Elsewhere(_))) => {}
    }
    if status.role == Role::Leader {
        // This node leads but its controller is not active yet (it has not
        // applied its term's first entry): asking itself over TCP would say
        // the same.
        return Err(Attempt::Retry("controller not active yet on this leader".into()));
    }
    if matches!(request, ControllerRequest::BrokerRegistration(_) | ControllerRequest::BrokerHeartbeat(_)) {
        return Err(Attempt::Final(ForwardError::NotForwardable));
    }
    let leader = status.leader.ok_or_else(|| Attempt::Retry("no quorum leader".into()))?;
    let addr = voters
        .iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, a)| *a)
        .ok_or_else(|| Attempt::Retry(format!("leader {leader} is not among the configured voters")))?;
    let replicas = |tp: TopicIdPartition| {
        let image = node.image.borrow();
        let partition = usize::try_from(tp.partition).ok();
        image
            .topic(tp.topic_id)
            .and_then(|t| t.partitions.get(partition?))
            .map(|p| p.replicas.clone())
            .unwrap_or_default()
    };
    remote(addr, request, left, &replicas).await
}

/// `fut`'s output, or `None` once `limit` passed.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    let expired = glommio::timer::sleep(limit);
    futures::pin_mut!(fut);
    futures::pin_mut!(expired);
    match futures::future::select(fut, expired).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

/// One exchange with the controller listener at `addr`.
async fn remote(
    addr: SocketAddr,
    request: &ControllerRequest,
    left: Duration,
    replicas: &dyn Fn(TopicIdPartition) -> Vec<i32>,
) -> Result<ControllerReply, Attempt> {
    let timeout_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
    match request {
        ControllerRequest::CreateTopics(r) => {
            let req = create_topics_to_kafka(r, timeout_ms);
            let resp = exchange(addr, ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req, left).await?;
            Ok(ControllerReply::CreateTopics(create_topics_reply(r, resp)?))
        }
        ControllerRequest::DeleteTopics(r) => {
            let req = delete_topics_to_kafka(r, timeout_ms);
            let resp = exchange(addr, ApiKey::DeleteTopics, DELETE_TOPICS_VERSION, &req, left).await?;
            Ok(ControllerReply::DeleteTopics(delete_topics_reply(resp)?))
        }
        ControllerRequest::CreatePartitions(r) => {
            let req = create_partitions_to_kafka(r, timeout_ms);
            let resp = exchange(addr, ApiKey::CreatePartitions, CREATE_PARTITIONS_VERSION, &req, left).await?;
            Ok(ControllerReply::CreatePartitions(create_partitions_reply(r, resp)?))
        }
        ControllerRequest::IncrementalAlterConfigs(r) => {
            let req = incremental_alter_configs_to_kafka(r);
            let version = INCREMENTAL_ALTER_CONFIGS_VERSION;
            let resp = exchange(addr, ApiKey::IncrementalAlterConfigs, version, &req, left).await?;
            Ok(ControllerReply::IncrementalAlterConfigs(incremental_alter_configs_reply(r, resp)?))
        }
        ControllerRequest::AlterPartition(r) => {
            let req = alter_partition_to_kafka(r);
            let resp = exchange(addr, ApiKey::AlterPartition, ALTER_PARTITION_VERSION, &req, left).await?;
            Ok(ControllerReply::AlterPartition(alter_partition_reply(r, resp, replicas)?))
        }
        ControllerRequest::ElectLeaders(r) => {
            let req = elect_leaders_to_kafka(r, timeout_ms);
            let resp = exchange(addr, ApiKey::ElectLeaders, ELECT_LEADERS_VERSION, &req, left).await?;
            Ok(ControllerReply::ElectLeaders(elect_leaders_reply(resp)?))
        }
        // Refused in `attempt` before connecting; kept here so a new kind
        // must be placed.
        ControllerRequest::BrokerRegistration(_) | ControllerRequest::BrokerHeartbeat(_) => {
            Err(Attempt::Final(ForwardError::NotForwardable))
        }
    }
}

/// Connects and makes one call on a fresh connection (so a late answer to
/// an abandoned call can never be read as this one's).
async fn exchange<Req: Encodable, Resp: Decodable>(
    addr: SocketAddr,
    key: ApiKey,
    version: i16,
    request: &Req,
    left: Duration,
) -> Result<Resp, Attempt> {
    let bytes = request_frame_bytes(key, version, request)
        .map_err(|e| Attempt::Final(ForwardError::Protocol(format!("encoding {key:?}: {e}"))))?;
    if bytes > CONTROLLER_REQUEST_MAX_BYTES {
        return Err(Attempt::Final(ForwardError::TooLarge { bytes }));
    }
    let mut stream = within(left, transport::connect(addr))
        .await
        .ok_or_else(|| Attempt::Retry(format!("connecting to {addr} timed out")))?
        .map_err(|e| Attempt::Retry(format!("connecting to {addr}: {e}")))?;
    let response_max = if key == ApiKey::ElectLeaders { ELECT_LEADERS_RESPONSE_MAX_BYTES } else { RESPONSE_MAX_BYTES };
    call_with_limit(&mut stream, key, version, 1, request, left, response_max)
        .await
        .map_err(|e| Attempt::Retry(format!("{key:?} to {addr}: {e}")))
}

/// Why a Kafka response did not become a reply.
#[derive(Debug, PartialEq, Eq)]
enum ReplyError {
    /// The controller did not take the request (NOT_CONTROLLER, or
    /// REQUEST_TIMED_OUT when busy): try again.
    NotServed(i16),
    /// Not a reply to this request.
    Bad(String),
}

impl From<ReplyError> for Attempt {
    fn from(e: ReplyError) -> Attempt {
        match e {
            ReplyError::NotServed(code) => Attempt::Retry(format!("controller answered error {code}")),
            ReplyError::Bad(why) => Attempt::Final(ForwardError::Protocol(why)),
        }
    }
}

/// The codes a controller that did not take the request sends for every
/// topic; none of the topic operations produces them as a result.
fn served(code: i16) -> Result<(), ReplyError> {
    if code == ResponseError::NotController.code() || code == ResponseError::RequestTimedOut.code() {
        Err(ReplyError::NotServed(code))
    } else {
        Ok(())
    }
}

fn message(m: &Option<StrBytes>) -> &str {
    m.as_deref().unwrap_or("")
}

/// The candidate whose code and rendering are exactly what came.
fn matching<E: std::fmt::Display>(
    what: &str,
    code: i16,
    message: &str,
    candidates: Vec<E>,
    code_of: impl Fn(&E) -> i16,
) -> Result<E, ReplyError> {
    candidates.into_iter().find(|c| code_of(c) == code && c.to_string() == message).ok_or_else(|| {
        ReplyError::Bad(format!("{what}: error {code} with message {message:?} is no controller error we know"))
    })
}

fn count<T>(what: &str, got: usize, sent: &[T]) -> Result<(), ReplyError> {
    if got == sent.len() {
        Ok(())
    } else {
        Err(ReplyError::Bad(format!("{what}: {got} results for {} entries", sent.len())))
    }
}

// ---- Parsing messages back ----

/// The text between the fixed parts of a message: `message` must read
/// `literals[0] h1 literals[1] … hn literals[n]`; each middle literal is
/// taken at its first occurrence. A wrong split is possible (a hole that
/// contains the next literal); callers re-render what they build from the
/// holes and compare, so it is caught, never trusted.
fn holes<'m>(message: &'m str, literals: &[&str]) -> Option<Vec<&'m str>> {
    let (first, rest) = literals.split_first()?;
    let (last, middle) = rest.split_last()?;
    let mut s = message.strip_prefix(first)?;
    let mut out = Vec::with_capacity(rest.len());
    for literal in middle {
        let at = s.find(literal)?;
        out.push(&s[..at]);
        s = &s[at + literal.len()..];
    }
    out.push(s.strip_suffix(last)?);
    Some(out)
}

/// The number between `prefix` and `suffix`.
fn number<T: std::str::FromStr>(message: &str, prefix: &str, suffix: &str) -> Option<T> {
    holes(message, &[prefix, suffix])?[0].parse().ok()
}

/// Two numbers between three literals.
fn two<A: std::str::FromStr, B: std::str::FromStr>(message: &str, literals: [&str; 3]) -> Option<(A, B)> {
    let h = holes(message, &literals)?;
    Some((h[0].parse().ok()?, h[1].parse().ok()?))
}

fn placement_errors(message: &str) -> Vec<PlacementError> {
    let mut out = vec![PlacementError::AllBrokersFenced];
    out.extend(
        number(message, "Invalid replication factor ", ": the replication factor must be positive.")
            .map(PlacementError::NonPositiveReplicationFactor),
    );
    out.extend(
        two(
            message,
            ["The target replication factor of ", " cannot be reached because only ", " broker(s) are registered."],
        )
        .map(|(replication_factor, registered)| PlacementError::TooFewBrokers { replication_factor, registered }),
    );
    out
}

fn assignment_errors(message: &str) -> Vec<AssignmentError> {
    let mut out = vec![AssignmentError::EmptyReplicaList];
    out.extend(
        number(message, "The manual partition assignment includes broker ", ", but no such broker is registered.")
            .map(AssignmentError::UnregisteredBroker),
    );
    out.extend(
        number(message, "The manual partition assignment includes the broker ", " more than once.")
            .map(AssignmentError::DuplicateBroker),
    );
    out.extend(
        two(
            message,
            [
                "The manual partition assignment includes a partition with ",
                " replica(s), but this is not consistent with previous partitions, which have ",
                " replica(s).",
            ],
        )
        .map(|(found, expected)| AssignmentError::InconsistentReplicationFactor { found, expected }),
    );
    out
}

/// The config errors a message can be, given the key/value pairs the
/// request set (the controller validates those, and names them).
fn config_errors<'a>(message: &str, set: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<ctl::ConfigError> {
    set.filter_map(|(name, value)| {
        let prefix = format!("Invalid value {value} for configuration {name}: ");
        let reason = holes(message, &[&prefix, ""])?[0];
        Some(ctl::ConfigError { name: name.to_owned(), value: value.to_owned(), reason: reason.to_owned() })
    })
    .collect()
}

fn too_many_partitions(message: &str) -> Option<usize> {
    holes(message, &["Creating ", " partition(s) would exceed the limit of ", ""])?[0].parse().ok()
}

/// "Unable to replicate the partition {n} time(s): All brokers are
/// currently fenced or in controlled shutdown."
fn all_inactive<T: std::str::FromStr>(message: &str) -> Option<T> {
    number(
        message,
        "Unable to replicate the partition ",
        " time(s): All brokers are currently fenced or in controlled shutdown.",
    )
}

fn assignment_all_inactive(message: &str) -> Option<i32> {
    number(
        message,
        "All brokers specified in the manual partition assignment for partition ",
        " are fenced or in controlled shutdown.",
    )
}

// ---- CreateTopics ----

/// `timeout_ms` is what is left of the forwarder's wait (the controller
/// does not read it).
fn create_topics_to_kafka(r: &ctl::CreateTopicsRequest, timeout_ms: i32) -> km::CreateTopicsRequest {
    use km::create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
    let topics = r
        .topics
        .iter()
        .map(|t| {
            CreatableTopic::default()
                .with_name(TopicName(str_bytes(&t.name)))
                .with_num_partitions(t.num_partitions)
                .with_replication_factor(t.replication_factor)
                .with_assignments(
                    t.assignments
                        .iter()
                        .map(|a| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(a.partition_index)
                                .with_broker_ids(a.broker_ids.iter().map(|&b| BrokerId(b)).collect())
                        })
                        .collect(),
                )
                .with_configs(
                    t.configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default().with_name(str_bytes(k)).with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )
        })
        .collect();
    km::CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(timeout_ms)
        .with_validate_only(r.validate_only)
}

fn create_topics_reply(
    r: &ctl::CreateTopicsRequest,
    resp: km::CreateTopicsResponse,
) -> Result<Vec<ctl::CreateTopicResult>, ReplyError> {
    resp.topics
        .into_iter()
        .map(|t| {
            served(t.error_code)?;
            let name = t.name.0.to_string();
            let outcome = if t.error_code == 0 {
                let configs = t
                    .configs
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                    .collect();
                Ok(ctl::CreatedTopic {
                    topic_id: t.topic_id,
                    num_partitions: t.num_partitions,
                    replication_factor: t.replication_factor,
                    configs,
                })
            } else {
                let topic = r.topics.iter().find(|x| x.name == name);
                let message = message(&t.error_message);
                let candidates = create_topic_errors(message, &name, topic);
                Err(matching("CreateTopics", t.error_code, message, candidates, |e| e.code().code())?)
            };
            Ok(ctl::CreateTopicResult { name, outcome })
        })
        .collect()
}

fn create_topic_errors(message: &str, name: &str, topic: Option<&ctl::CreatableTopic>) -> Vec<ctl::CreateTopicError> {
    use ctl::CreateTopicError as E;
    use ctl::TopicNameError as N;
    let mut out = vec![
        E::DuplicateName,
        E::AlreadyExists(name.to_owned()),
        E::AssignmentWithReplicationFactor,
        E::AssignmentWithPartitionCount,
        E::AssignmentNotConsecutive,
    ];
    out.extend(
        [N::Empty, N::Dots, N::TooLong(name.to_owned()), N::IllegalCharacter(name.to_owned())].map(E::InvalidName),
    );
    if let Some(t) = topic {
        // The message omits the value: it is the request's (a non-positive
        // `num.partitions` default, which net refuses at startup, would
        // read back as the request's -1).
        out.push(E::InvalidReplicationFactor(t.replication_factor));
        out.push(E::InvalidPartitionCount(t.num_partitions));
        out.extend(
            config_errors(message, t.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .into_iter()
                .map(E::InvalidConfig),
        );
    }
    let collision = format!("Topic '{name}' collides with existing topic: ");
    if let Some(h) = holes(message, &[&collision, ""]) {
        out.push(E::Collision { name: name.to_owned(), existing: h[0].to_owned() });
    }
    out.extend(
        number(message, "Found multiple manual partition assignments for partition ", "").map(E::DuplicateAssignment),
    );
    out.extend(assignment_errors(message).into_iter().map(E::InvalidAssignment));
    out.extend(assignment_all_inactive(message).map(E::AssignmentAllInactive));
    if let Some(h) = holes(message, &["Unable to replicate the partition ", " time(s): ", ""]) {
        if let Ok(replication_factor) = h[0].parse() {
            out.extend(placement_errors(h[1]).into_iter().map(|error| E::Placement { replication_factor, error }));
        }
    }
    out.extend(all_inactive(message).map(E::AllInactive));
    out.extend(too_many_partitions(message).map(E::TooManyPartitions));
    out
}

// ---- DeleteTopics ----

fn delete_topics_to_kafka(r: &ctl::DeleteTopicsRequest, timeout_ms: i32) -> km::DeleteTopicsRequest {
    use km::delete_topics_request::DeleteTopicState;
    let topics = r
        .topics
        .iter()
        .map(|t| match t {
            ctl::TopicRef::Name(name) => DeleteTopicState::default().with_name(Some(TopicName(str_bytes(name)))),
            ctl::TopicRef::Id(id) => DeleteTopicState::default().with_name(None).with_topic_id(*id),
        })
        .collect();
    km::DeleteTopicsRequest::default().with_topics(topics).with_timeout_ms(timeout_ms)
}

fn delete_topics_reply(resp: km::DeleteTopicsResponse) -> Result<Vec<ctl::DeleteTopicResult>, ReplyError> {
    use ctl::DeleteTopicError as E;
    resp.responses
        .into_iter()
        .map(|t| {
            served(t.error_code)?;
            let outcome = if t.error_code == 0 {
                Ok(())
            } else {
                let candidates = vec![E::UnknownTopic, E::UnknownTopicId, E::DuplicateName, E::DuplicateId];
                Err(matching("DeleteTopics", t.error_code, message(&t.error_message), candidates, |e| e.code().code())?)
            };
            Ok(ctl::DeleteTopicResult {
                name: t.name.map(|n| n.0.to_string()),
                topic_id: Some(t.topic_id).filter(|id| !id.is_nil()),
                outcome,
            })
        })
        .collect()
}

// ---- CreatePartitions ----

fn create_partitions_to_kafka(r: &ctl::CreatePartitionsRequest, timeout_ms: i32) -> km::CreatePartitionsRequest {
    use km::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
    let topics = r
        .topics
        .iter()
        .map(|t| {
            CreatePartitionsTopic::default()
                .with_name(TopicName(str_bytes(&t.name)))
                .with_count(t.count)
                .with_assignments(t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|ids| {
                            CreatePartitionsAssignment::default()
                                .with_broker_ids(ids.iter().map(|&b| BrokerId(b)).collect())
                        })
                        .collect()
                }))
        })
        .collect();
    km::CreatePartitionsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(timeout_ms)
        .with_validate_only(r.validate_only)
}

fn create_partitions_reply(
    r: &ctl::CreatePartitionsRequest,
    resp: km::CreatePartitionsResponse,
) -> Result<Vec<ctl::CreatePartitionsResult>, ReplyError> {
    resp.results
        .into_iter()
        .map(|t| {
            served(t.error_code)?;
            let name = t.name.0.to_string();
            let outcome = if t.error_code == 0 {
                Ok(())
            } else {
                let message = message(&t.error_message);
                let requested = r.topics.iter().find(|x| x.name == name).map(|x| x.count);
                let candidates = create_partitions_errors(message, &name, requested);
                Err(matching("CreatePartitions", t.error_code, message, candidates, |e| e.code().code())?)
            };
            Ok(ctl::CreatePartitionsResult { name, outcome })
        })
        .collect()
}

fn create_partitions_errors(message: &str, name: &str, requested: Option<i32>) -> Vec<ctl::CreatePartitionsError> {
    use ctl::CreatePartitionsError as E;
    let mut out = vec![E::DuplicateName, E::UnknownTopic];
    out.extend(number(message, "Topic already has ", " partition(s).").map(E::AlreadyHas));
    let not_an_increase = format!("The topic {name} currently has ");
    if let (Some(h), Some(requested)) =
        (holes(message, &[&not_an_increase, " partition(s); ", " would not be an increase."]), requested)
    {
        if let Ok(current) = h[0].parse() {
            out.push(E::NotAnIncrease { name: name.to_owned(), current, requested });
        }
    }
    out.extend(
        two(message, ["Attempted to add ", " additional partition(s), but only ", " assignment(s) were specified."])
            .map(|(additional, given)| E::AssignmentCount { additional, given }),
    );
    out.extend(assignment_errors(message).into_iter().map(E::InvalidAssignment));
    out.extend(assignment_all_inactive(message).map(E::AssignmentAllInactive));
    out.extend(placement_errors(message).into_iter().map(E::Placement));
    out.extend(all_inactive(message).map(E::AllInactive));
    out.extend(too_many_partitions(message).map(E::TooManyPartitions));
    out
}

// ---- ElectLeaders ----

fn elect_leaders_to_kafka(r: &ctl::ElectLeadersRequest, timeout_ms: i32) -> km::ElectLeadersRequest {
    use km::elect_leaders_request::TopicPartitions;
    let topics = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| {
                TopicPartitions::default()
                    .with_topic(TopicName(str_bytes(&t.name)))
                    .with_partitions(t.partitions.clone())
            })
            .collect()
    });
    km::ElectLeadersRequest::default()
        .with_election_type(api::election_type_byte(r.election))
        .with_topic_partitions(topics)
        .with_timeout_ms(timeout_ms)
}

/// A refusal is in the response-level code; every partition's error is
/// one of the controller's, rebuilt from its topic and partition.
fn elect_leaders_reply(resp: km::ElectLeadersResponse) -> Result<Vec<ctl::ElectLeadersTopicResult>, ReplyError> {
    served(resp.error_code)?;
    if resp.error_code != 0 {
        return Err(ReplyError::Bad(format!("ElectLeaders: response error {}", resp.error_code)));
    }
    resp.replica_election_results
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partition_result
                .into_iter()
                .map(|p| {
                    let outcome = if p.error_code == 0 {
                        Ok(())
                    } else {
                        let candidates = elect_leader_errors(&name, p.partition_id);
                        let message = message(&p.error_message);
                        Err(matching("ElectLeaders", p.error_code, message, candidates, |e| e.code().code())?)
                    };
                    Ok((p.partition_id, outcome))
                })
                .collect::<Result<_, ReplyError>>()?;
            Ok(ctl::ElectLeadersTopicResult { name, partitions })
        })
        .collect()
}

fn elect_leader_errors(name: &str, partition: i32) -> Vec<ctl::ElectLeaderError> {
    use ctl::ElectLeaderError as E;
    vec![
        E::UnknownTopic(name.to_owned()),
        E::UnknownPartition { topic: name.to_owned(), partition },
        E::ElectionNotNeeded,
        E::PreferredLeaderNotAvailable,
        E::EligibleLeadersNotAvailable,
        E::TooManyElections,
    ]
}

// ---- IncrementalAlterConfigs ----

fn incremental_alter_configs_to_kafka(r: &ctl::IncrementalAlterConfigsRequest) -> km::IncrementalAlterConfigsRequest {
    use km::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let resources = r
        .resources
        .iter()
        .map(|res| {
            let configs = res
                .ops
                .iter()
                .map(|(key, op)| {
                    let config = AlterableConfig::default().with_name(str_bytes(key));
                    match op {
                        ctl::ConfigOp::Set(value) => {
                            config.with_config_operation(api::OP_SET).with_value(Some(str_bytes(value)))
                        }
                        ctl::ConfigOp::Delete => config.with_config_operation(api::OP_DELETE).with_value(None),
                    }
                })
                .collect();
            AlterConfigsResource::default()
                .with_resource_type(api::RESOURCE_TOPIC)
                .with_resource_name(str_bytes(&res.topic))
                .with_configs(configs)
        })
        .collect();
    km::IncrementalAlterConfigsRequest::default().with_resources(resources).with_validate_only(r.validate_only)
}

fn incremental_alter_configs_reply(
    r: &ctl::IncrementalAlterConfigsRequest,
    resp: km::IncrementalAlterConfigsResponse,
) -> Result<Vec<ctl::AlterConfigsResult>, ReplyError> {
    use ctl::AlterConfigsError as E;
    resp.responses
        .into_iter()
        .map(|res| {
            served(res.error_code)?;
            if res.resource_type != api::RESOURCE_TOPIC {
                return Err(ReplyError::Bad(format!(
                    "IncrementalAlterConfigs: an answer for resource type {} to a request of topics",
                    res.resource_type
                )));
            }
            let topic = res.resource_name.to_string();
            let outcome = if res.error_code == 0 {
                Ok(())
            } else {
                let message = message(&res.error_message);
                let mut candidates = vec![E::DuplicateResource, E::UnknownTopic(topic.clone())];
                if let Some(sent) = r.resources.iter().find(|x| x.topic == topic) {
                    // The controller names the smallest key given twice.
                    let mut seen = BTreeSet::new();
                    let duplicated: BTreeSet<&str> =
                        sent.ops.iter().map(|(k, _)| k.as_str()).filter(|k| !seen.insert(*k)).collect();
                    candidates.extend(duplicated.first().map(|k| E::DuplicateKey((*k).to_owned())));
                    let set = sent.ops.iter().filter_map(|(k, op)| match op {
                        ctl::ConfigOp::Set(v) => Some((k.as_str(), v.as_str())),
                        ctl::ConfigOp::Delete => None,
                    });
                    candidates.extend(config_errors(message, set).into_iter().map(E::InvalidConfig));
                }
                Err(matching("IncrementalAlterConfigs", res.error_code, message, candidates, |e| e.code().code())?)
            };
            Ok(ctl::AlterConfigsResult { topic, outcome })
        })
        .collect()
}

// ---- AlterPartition ----

/// Consecutive partitions of one topic go under one topic entry, so the
/// request's order survives the round trip.
fn alter_partition_to_kafka(r: &ctl::AlterPartitionRequest) -> km::AlterPartitionRequest {
    use km::alter_partition_request::{BrokerState, PartitionData, TopicData};
    let mut topics: Vec<TopicData> = Vec::new();
    for p in &r.partitions {
        let data = PartitionData::default()
            .with_partition_index(p.tp.partition)
            .with_leader_epoch(p.leader_epoch)
            .with_partition_epoch(p.partition_epoch)
            .with_new_isr_with_epochs(
                p.new_isr
                    .iter()
                    .map(|m| {
                        BrokerState::default()
                            .with_broker_id(BrokerId(m.broker_id))
                            .with_broker_epoch(m.broker_epoch.unwrap_or(api::NO_BROKER_EPOCH))
                    })
                    .collect(),
            );
        match topics.last_mut() {
            Some(topic) if topic.topic_id == p.tp.topic_id => topic.partitions.push(data),
            _ => topics.push(TopicData::default().with_topic_id(p.tp.topic_id).with_partitions(vec![data])),
        }
    }
    km::AlterPartitionRequest::default()
        .with_broker_id(BrokerId(r.broker_id))
        .with_broker_epoch(r.broker_epoch)
        .with_topics(topics)
}

/// The reply from the codes and the fields `alter_partition_response`
/// fills; `replicas` gives a partition's replicas (from this node's image:
/// AlterPartition never changes them).
fn alter_partition_reply(
    r: &ctl::AlterPartitionRequest,
    resp: km::AlterPartitionResponse,
    replicas: &dyn Fn(TopicIdPartition) -> Vec<i32>,
) -> Result<Result<Vec<ctl::AlterPartitionResult>, ctl::AlterPartitionError>, ReplyError> {
    use ctl::AlterPartitionError as E;
    use ctl::InvalidAlterPartition as Invalid;
    served(resp.error_code)?;
    if resp.error_code == ResponseError::StaleBrokerEpoch.code() {
        // The controller's view of the sender's epoch is not in the schema.
        return Ok(Err(E::StaleBrokerEpoch { broker_id: r.broker_id, current: None, request: r.broker_epoch }));
    }
    if resp.error_code != 0 {
        return Err(ReplyError::Bad(format!("AlterPartition: request-level error {}", resp.error_code)));
    }
    let answers: Vec<_> = resp
        .topics
        .into_iter()
        .flat_map(|t| {
            let topic_id = t.topic_id;
            t.partitions.into_iter().map(move |p| (TopicIdPartition { topic_id, partition: p.partition_index }, p))
        })
        .collect();
    count("AlterPartition", answers.len(), &r.partitions)?;
    let sender = r.broker_id;
    let mut seen = BTreeSet::new();
    let mut results = Vec::with_capacity(answers.len());
    for ((tp, p), sent) in answers.into_iter().zip(&r.partitions) {
        if tp != sent.tp {
            return Err(ReplyError::Bad(format!("AlterPartition: answer for {tp:?} where {:?} was sent", sent.tp)));
        }
        let first = seen.insert(tp);
        let leader = Some(p.leader_id.0).filter(|&l| l != NO_LEADER);
        let code = p.error_code;
        let outcome = match ResponseError::try_from_code(code) {
            None => Ok(PartitionRegistration {
                replicas: replicas(tp),
                isr: p.isr.iter().map(|b| b.0).collect(),
                leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
            }),
            Some(ResponseError::UnknownTopicId) => Err(E::UnknownTopicId(tp.topic_id)),
            Some(ResponseError::UnknownTopicOrPartition) => Err(E::UnknownTopicOrPartition(tp)),
            Some(ResponseError::NotController) => Err(E::NotController {
                current_leader_epoch: p.leader_epoch,
                request_leader_epoch: sent.leader_epoch,
                current_partition_epoch: p.partition_epoch,
                request_partition_epoch: sent.partition_epoch,
            }),
            Some(ResponseError::FencedLeaderEpoch) => {
                Err(E::FencedLeaderEpoch { current: p.leader_epoch, request: sent.leader_epoch })
            }
            Some(ResponseError::InvalidUpdateVersion) => {
                Err(E::InvalidUpdateVersion { current: p.partition_epoch, request: sent.partition_epoch })
            }
            Some(ResponseError::InvalidRequest) => {
                // The controller's checks, in its order: duplicate entry,
                // sender not the leader, ISR not within the replicas, ISR
                // without the leader.
                let isr: Vec<i32> = sent.new_isr.iter().map(|m| m.broker_id).collect();
                Err(E::InvalidRequest(if !first {
                    Invalid::DuplicatePartition
                } else if leader != Some(sender) {
                    Invalid::NotLeader { sender, leader }
                } else {
                    let replicas = replicas(tp);
                    if isr_within_replicas(&replicas, &isr) {
                        Invalid::IsrWithoutLeader { isr, leader: sender }
                    } else {
                        Invalid::IsrNotWithinReplicas { isr, replicas }
                    }
                }))
            }
            // Which members, and why, is not in the schema.
            Some(ResponseError::IneligibleReplica) => Err(E::IneligibleReplica(Vec::new())),
            Some(_) => return Err(ReplyError::Bad(format!("AlterPartition: error {code} for {tp:?}"))),
        };
        results.push(ctl::AlterPartitionResult { tp, outcome });
    }
    Ok(Ok(results))
}

/// The controller's ISR check (`Replicas.validateIsr`): no negative id, no
/// duplicate, every member a replica.
fn isr_within_replicas(replicas: &[i32], isr: &[i32]) -> bool {
    let mut seen = BTreeSet::new();
    isr.iter().all(|&id| id >= 0 && seen.insert(id) && replicas.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ctl::{AlterPartitionError as APE, CreatePartitionsError as CPE, CreateTopicError as CTE};
    use std::collections::BTreeMap;

    fn tid(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    /// Encodes at `version` and decodes back, as the wire would.
    fn wire<T: Encodable + Decodable>(value: &T, version: i16) -> T {
        let mut buf = BytesMut::new();
        value.encode(&mut buf, version).expect("our message encodes at this version");
        let mut bytes = buf.freeze();
        let back = T::decode(&mut bytes, version).expect("and decodes");
        assert!(bytes.is_empty(), "{} bytes left after decoding", bytes.len());
        back
    }

    /// Every proper prefix of the encoded `value` fails to decode (never
    /// panics, never yields a shorter message).
    fn truncations_fail<T: Encodable + Decodable>(value: &T, version: i16) {
        let mut buf = BytesMut::new();
        value.encode(&mut buf, version).expect("encodes");
        let full = buf.freeze();
        for len in 0..full.len() {
            let mut prefix = full.slice(..len);
            assert!(crate::api::decode::<T>(&mut prefix, version, "test").is_err(), "prefix of {len} bytes decoded");
        }
    }

    /// ControllerRequest -> Kafka request -> wire -> ControllerRequest, as
    /// the forwarder and the controller listener convert it.
    fn request_round_trip(request: &ControllerRequest) -> ControllerRequest {
        match request {
            ControllerRequest::CreateTopics(r) => {
                let k = wire(&create_topics_to_kafka(r, 5000), CREATE_TOPICS_VERSION);
                assert_eq!(k.timeout_ms, 5000);
                ControllerRequest::CreateTopics(api::create_topics_request(&k))
            }
            ControllerRequest::DeleteTopics(r) => {
                let k = wire(&delete_topics_to_kafka(r, 5000), DELETE_TOPICS_VERSION);
                ControllerRequest::DeleteTopics(api::delete_topics_request(&k).expect("names or ids, never both"))
            }
            ControllerRequest::CreatePartitions(r) => {
                let k = wire(&create_partitions_to_kafka(r, 5000), CREATE_PARTITIONS_VERSION);
                ControllerRequest::CreatePartitions(api::create_partitions_request(&k))
            }
            ControllerRequest::IncrementalAlterConfigs(r) => {
                let k = wire(&incremental_alter_configs_to_kafka(r), INCREMENTAL_ALTER_CONFIGS_VERSION);
                let (request, refused) = api::incremental_alter_configs_request(&k);
                assert!(refused.is_empty(), "{refused:?}");
                ControllerRequest::IncrementalAlterConfigs(request)
            }
            ControllerRequest::AlterPartition(r) => {
                let k = wire(&alter_partition_to_kafka(r), ALTER_PARTITION_VERSION);
                ControllerRequest::AlterPartition(api::alter_partition_request(&k))
            }
            ControllerRequest::ElectLeaders(r) => {
                let k = wire(&elect_leaders_to_kafka(r, 5000), ELECT_LEADERS_VERSION);
                assert_eq!(k.timeout_ms, 5000);
                let election = api::election_type(k.election_type).expect("a type Kafka defines");
                ControllerRequest::ElectLeaders(api::elect_leaders_request(election, k.topic_partitions))
            }
            other => panic!("not forwarded: {other:?}"),
        }
    }

    /// Replicas as this node's image would give them: [1, 2, 3] for every
    /// partition of topic 1, unknown elsewhere.
    fn replicas(tp: TopicIdPartition) -> Vec<i32> {
        if tp.topic_id == tid(1) {
            vec![1, 2, 3]
        } else {
            Vec::new()
        }
    }

    /// ControllerReply -> Kafka response -> wire -> ControllerReply, as the
    /// controller listener and the forwarder convert it.
    fn reply_round_trip(request: &ControllerRequest, reply: &ControllerReply) -> Result<ControllerReply, ReplyError> {
        Ok(match (request, reply) {
            (ControllerRequest::CreateTopics(r), ControllerReply::CreateTopics(results)) => {
                let k = wire(&api::create_topics_response(results), CREATE_TOPICS_VERSION);
                ControllerReply::CreateTopics(create_topics_reply(r, k)?)
            }
            (ControllerRequest::DeleteTopics(_), ControllerReply::DeleteTopics(results)) => {
                let k = wire(&api::delete_topics_response(results), DELETE_TOPICS_VERSION);
                ControllerReply::DeleteTopics(delete_topics_reply(k)?)
            }
            (ControllerRequest::CreatePartitions(r), ControllerReply::CreatePartitions(results)) => {
                let k = wire(&api::create_partitions_response(results), CREATE_PARTITIONS_VERSION);
                ControllerReply::CreatePartitions(create_partitions_reply(r, k)?)
            }
            (ControllerRequest::IncrementalAlterConfigs(r), ControllerReply::IncrementalAlterConfigs(results)) => {
                let k = api::incremental_alter_configs_response(results, Vec::new());
                let k = wire(&k, INCREMENTAL_ALTER_CONFIGS_VERSION);
                ControllerReply::IncrementalAlterConfigs(incremental_alter_configs_reply(r, k)?)
            }
            (ControllerRequest::AlterPartition(r), ControllerReply::AlterPartition(reply)) => {
                let k = wire(&api::alter_partition_response(r.broker_id, reply), ALTER_PARTITION_VERSION);
                ControllerReply::AlterPartition(alter_partition_reply(r, k, &replicas)?)
            }
            (ControllerRequest::ElectLeaders(_), ControllerReply::ElectLeaders(results)) => {
                let k = wire(&api::elect_leaders_response(results), ELECT_LEADERS_VERSION);
                ControllerReply::ElectLeaders(elect_leaders_reply(k)?)
            }
            other => panic!("mismatched case {other:?}"),
        })
    }

    fn assert_round_trips(request: ControllerRequest, reply: ControllerReply) {
        assert_eq!(request_round_trip(&request), request);
        assert_eq!(reply_round_trip(&request, &reply), Ok(reply));
    }

    fn topic(
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> ctl::CreatableTopic {
        ctl::CreatableTopic {
            name: name.into(),
            num_partitions,
            replication_factor,
            assignments: Vec::new(),
            configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn config_error(name: &str, value: &str, reason: &str) -> ctl::ConfigError {
        ctl::ConfigError { name: name.into(), value: value.into(), reason: reason.into() }
    }

    /// Adding a variant to the controller's error enums fails to compile
    /// here: each needs a round-trip case.
    fn create_topic_error_kind(e: &CTE) -> u8 {
        match e {
            CTE::DuplicateName => 0,
            CTE::AlreadyExists(_) => 1,
            CTE::InvalidName(_) => 2,
            CTE::Collision { .. } => 3,
            CTE::InvalidConfig(_) => 4,
            CTE::AssignmentWithReplicationFactor => 5,
            CTE::AssignmentWithPartitionCount => 6,
            CTE::DuplicateAssignment(_) => 7,
            CTE::InvalidAssignment(_) => 8,
            CTE::AssignmentAllInactive(_) => 9,
            CTE::AssignmentNotConsecutive => 10,
            CTE::InvalidReplicationFactor(_) => 11,
            CTE::InvalidPartitionCount(_) => 12,
            CTE::Placement { .. } => 13,
            CTE::AllInactive(_) => 14,
            CTE::TooManyPartitions(_) => 15,
        }
    }

    fn create_partitions_error_kind(e: &CPE) -> u8 {
        match e {
            CPE::DuplicateName => 0,
            CPE::UnknownTopic => 1,
            CPE::AlreadyHas(_) => 2,
            CPE::NotAnIncrease { .. } => 3,
            CPE::AssignmentCount { .. } => 4,
            CPE::InvalidAssignment(_) => 5,
            CPE::AssignmentAllInactive(_) => 6,
            CPE::Placement(_) => 7,
            CPE::AllInactive(_) => 8,
            CPE::TooManyPartitions(_) => 9,
        }
    }

    fn alter_partition_error_kind(e: &APE) -> u8 {
        match e {
            APE::StaleBrokerEpoch { .. } => 0,
            APE::UnknownTopicId(_) => 1,
            APE::UnknownTopicOrPartition(_) => 2,
            APE::NotController { .. } => 3,
            APE::FencedLeaderEpoch { .. } => 4,
            APE::InvalidRequest(ctl::InvalidAlterPartition::NotLeader { .. }) => 5,
            APE::InvalidRequest(ctl::InvalidAlterPartition::IsrNotWithinReplicas { .. }) => 6,
            APE::InvalidRequest(ctl::InvalidAlterPartition::IsrWithoutLeader { .. }) => 7,
            APE::InvalidRequest(ctl::InvalidAlterPartition::DuplicatePartition) => 8,
            APE::InvalidUpdateVersion { .. } => 9,
            APE::IneligibleReplica(_) => 10,
        }
    }

    fn all_assignment_errors() -> Vec<AssignmentError> {
        vec![
            AssignmentError::EmptyReplicaList,
            AssignmentError::UnregisteredBroker(7),
            AssignmentError::DuplicateBroker(2),
            AssignmentError::InconsistentReplicationFactor { found: 1, expected: 2 },
        ]
    }

    fn all_placement_errors() -> Vec<PlacementError> {
        vec![
            PlacementError::NonPositiveReplicationFactor(-2),
            PlacementError::AllBrokersFenced,
            PlacementError::TooFewBrokers { replication_factor: 3, registered: 1 },
        ]
    }

    #[test]
    fn create_topics_round_trips_every_outcome() {
        let long = "a".repeat(250);
        let mut manual = topic("manual", -1, -1, &[]);
        manual.assignments = vec![
            ctl::ReplicaAssignment { partition_index: 0, broker_ids: vec![1, 2] },
            ctl::ReplicaAssignment { partition_index: 1, broker_ids: vec![2, 3] },
        ];
        let request = ctl::CreateTopicsRequest {
            topics: vec![
                topic("orders", 3, 2, &[("cleanup.policy", "compact"), ("retention.ms", "1000")]),
                manual,
                topic("cfg", 1, 1, &[("cleanup.policy", "delete"), ("min.insync.replicas", "0")]),
                topic("rf", 1, 0, &[]),
                topic("np", -5, 1, &[]),
            ],
            validate_only: true,
        };
        let mut errors: Vec<(String, CTE)> = vec![
            ("dup".into(), CTE::DuplicateName),
            ("exists".into(), CTE::AlreadyExists("exists".into())),
            ("".into(), CTE::InvalidName(ctl::TopicNameError::Empty)),
            ("..".into(), CTE::InvalidName(ctl::TopicNameError::Dots)),
            (long.clone(), CTE::InvalidName(ctl::TopicNameError::TooLong(long))),
            ("bad/name".into(), CTE::InvalidName(ctl::TopicNameError::IllegalCharacter("bad/name".into()))),
            ("a.b".into(), CTE::Collision { name: "a.b".into(), existing: "a_b".into() }),
            ("cfg".into(), CTE::InvalidConfig(config_error("min.insync.replicas", "0", "Value must be at least 1"))),
            ("m1".into(), CTE::AssignmentWithReplicationFactor),
            ("m2".into(), CTE::AssignmentWithPartitionCount),
            ("m3".into(), CTE::DuplicateAssignment(1)),
            ("m8".into(), CTE::AssignmentAllInactive(0)),
            ("m9".into(), CTE::AssignmentNotConsecutive),
            ("rf".into(), CTE::InvalidReplicationFactor(0)),
            ("np".into(), CTE::InvalidPartitionCount(-5)),
            ("ai".into(), CTE::AllInactive(3)),
            ("many".into(), CTE::TooManyPartitions(20_000)),
        ];
        errors.extend(all_assignment_errors().into_iter().map(|e| ("m".to_string(), CTE::InvalidAssignment(e))));
        errors.extend(
            all_placement_errors()
                .into_iter()
                .map(|error| ("p".to_string(), CTE::Placement { replication_factor: 3, error })),
        );
        let kinds: BTreeSet<u8> = errors.iter().map(|(_, e)| create_topic_error_kind(e)).collect();
        assert_eq!(kinds.len(), 16, "a CreateTopicError variant has no case");

        let mut results = vec![
            ctl::CreateTopicResult {
                name: "orders".into(),
                outcome: Ok(ctl::CreatedTopic {
                    topic_id: tid(1),
                    num_partitions: 3,
                    replication_factor: 2,
                    configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
                }),
            },
            ctl::CreateTopicResult {
                name: "manual".into(),
                outcome: Ok(ctl::CreatedTopic {
                    topic_id: tid(2),
                    num_partitions: 2,
                    replication_factor: 2,
                    configs: BTreeMap::new(),
                }),
            },
        ];
        results.extend(errors.into_iter().map(|(name, e)| ctl::CreateTopicResult { name, outcome: Err(e) }));
        assert_round_trips(ControllerRequest::CreateTopics(request), ControllerReply::CreateTopics(results));
    }

    #[test]
    fn create_topics_error_not_rendering_exactly_is_a_bad_response() {
        // A TOPIC_ALREADY_EXISTS that names another topic than its result:
        // no candidate renders it, so it is refused rather than guessed.
        let request = ctl::CreateTopicsRequest { topics: vec![topic("y", 1, 1, &[])], validate_only: false };
        let response = km::CreateTopicsResponse::default().with_topics(vec![
            km::create_topics_response::CreatableTopicResult::default()
                .with_name(TopicName(str_bytes("y")))
                .with_error_code(ResponseError::TopicAlreadyExists.code())
                .with_error_message(Some(str_bytes("Topic 'x' already exists."))),
        ]);
        assert!(matches!(create_topics_reply(&request, response), Err(ReplyError::Bad(_))));
        // The right message with the wrong code is refused too.
        let response = km::CreateTopicsResponse::default().with_topics(vec![
            km::create_topics_response::CreatableTopicResult::default()
                .with_name(TopicName(str_bytes("y")))
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes("Topic 'y' already exists."))),
        ]);
        assert!(matches!(create_topics_reply(&request, response), Err(ReplyError::Bad(_))));
    }

    #[test]
    fn delete_topics_round_trips_every_outcome() {
        use ctl::DeleteTopicError as E;
        let request = ctl::DeleteTopicsRequest {
            topics: vec![ctl::TopicRef::Name("a".into()), ctl::TopicRef::Id(tid(2)), ctl::TopicRef::Name("a".into())],
        };
        let result = |name: Option<&str>, id: Option<u128>, outcome| ctl::DeleteTopicResult {
            name: name.map(str::to_owned),
            topic_id: id.map(tid),
            outcome,
        };
        let results = vec![
            result(Some("a"), Some(1), Ok(())),
            result(Some("b"), Some(2), Ok(())),
            result(None, Some(3), Err(E::UnknownTopicId)),
            result(Some("x"), None, Err(E::UnknownTopic)),
            result(Some("a"), None, Err(E::DuplicateName)),
            result(None, Some(2), Err(E::DuplicateId)),
        ];
        assert_round_trips(ControllerRequest::DeleteTopics(request), ControllerReply::DeleteTopics(results));
    }

    #[test]
    fn delete_topics_naming_a_topic_by_name_and_id_is_refused() {
        use km::delete_topics_request::DeleteTopicState;
        let k = km::DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(str_bytes("a")))),
            DeleteTopicState::default().with_name(Some(TopicName(str_bytes("b")))).with_topic_id(tid(2)),
        ]);
        assert!(api::delete_topics_request(&k).is_err());
    }

    #[test]
    fn create_partitions_round_trips_every_outcome() {
        let request = ctl::CreatePartitionsRequest {
            topics: vec![
                ctl::CreatePartitionsTopic { name: "a".into(), count: 4, assignments: None },
                ctl::CreatePartitionsTopic {
                    name: "b".into(),
                    count: 6,
                    assignments: Some(vec![vec![1, 2], vec![2, 3]]),
                },
                ctl::CreatePartitionsTopic { name: "c".into(), count: 3, assignments: Some(Vec::new()) },
            ],
            validate_only: true,
        };
        let mut errors: Vec<(String, CPE)> = vec![
            ("d".into(), CPE::DuplicateName),
            ("u".into(), CPE::UnknownTopic),
            ("c".into(), CPE::AlreadyHas(3)),
            ("b".into(), CPE::NotAnIncrease { name: "b".into(), current: 8, requested: 6 }),
            ("e".into(), CPE::AssignmentCount { additional: 2, given: 1 }),
            ("f".into(), CPE::AssignmentAllInactive(4)),
            ("g".into(), CPE::AllInactive(2)),
            ("h".into(), CPE::TooManyPartitions(20_000)),
        ];
        errors.extend(all_assignment_errors().into_iter().map(|e| ("i".to_string(), CPE::InvalidAssignment(e))));
        errors.extend(all_placement_errors().into_iter().map(|e| ("j".to_string(), CPE::Placement(e))));
        let kinds: BTreeSet<u8> = errors.iter().map(|(_, e)| create_partitions_error_kind(e)).collect();
        assert_eq!(kinds.len(), 10, "a CreatePartitionsError variant has no case");
        let mut results = vec![ctl::CreatePartitionsResult { name: "a".into(), outcome: Ok(()) }];
        results.extend(errors.into_iter().map(|(name, e)| ctl::CreatePartitionsResult { name, outcome: Err(e) }));
        assert_round_trips(ControllerRequest::CreatePartitions(request), ControllerReply::CreatePartitions(results));
    }

    #[test]
    fn incremental_alter_configs_round_trips_every_outcome() {
        use ctl::AlterConfigsError as E;
        use ctl::ConfigOp::{Delete, Set};
        let resource = |topic: &str, ops: Vec<(&str, ctl::ConfigOp)>| ctl::AlterTopicConfigs {
            topic: topic.into(),
            ops: ops.into_iter().map(|(k, op)| (k.to_string(), op)).collect(),
        };
        let request = ctl::IncrementalAlterConfigsRequest {
            resources: vec![
                resource("a", vec![("retention.ms", Set("1000".into())), ("cleanup.policy", Delete)]),
                // Two keys given twice: the controller names the smallest of
                // them, neither the first duplicated nor the smallest key.
                resource(
                    "b",
                    vec![("x", Set("1".into())), ("x", Delete), ("k", Set("1".into())), ("k", Delete), ("a", Delete)],
                ),
                resource("c", vec![]),
                resource("c", vec![]),
                resource("e", vec![("retention.ms", Delete), ("unclean.leader.election.enable", Set("true".into()))]),
            ],
            validate_only: true,
        };
        let result = |topic: &str, outcome| ctl::AlterConfigsResult { topic: topic.into(), outcome };
        let unclean = "unclean leader election is not supported: leaders are elected from the ISR only";
        let results = vec![
            result("a", Ok(())),
            result("b", Err(E::DuplicateKey("k".into()))),
            result("c", Err(E::DuplicateResource)),
            result("d", Err(E::UnknownTopic("d".into()))),
            result("e", Err(E::InvalidConfig(config_error("unclean.leader.election.enable", "true", unclean)))),
        ];
        assert_round_trips(
            ControllerRequest::IncrementalAlterConfigs(request),
            ControllerReply::IncrementalAlterConfigs(results),
        );
    }

    #[test]
    fn incremental_alter_configs_refuses_other_resources_and_list_ops_before_the_controller() {
        use km::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let config = |name: &str, op: i8, value: Option<&str>| {
            AlterableConfig::default()
                .with_name(str_bytes(name))
                .with_config_operation(op)
                .with_value(value.map(str_bytes))
        };
        let k = km::IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(api::RESOURCE_TOPIC)
                .with_resource_name(str_bytes("t"))
                .with_configs(vec![config("retention.ms", api::OP_SET, Some("5")), config("a", api::OP_SET, None)]),
            // BROKER
            AlterConfigsResource::default().with_resource_type(4).with_resource_name(str_bytes("1")),
            // APPEND
            AlterConfigsResource::default()
                .with_resource_type(api::RESOURCE_TOPIC)
                .with_resource_name(str_bytes("u"))
                .with_configs(vec![config("cleanup.policy", 2, Some("compact"))]),
        ]);
        let (request, refused) = api::incremental_alter_configs_request(&k);
        assert_eq!(
            request.resources,
            vec![ctl::AlterTopicConfigs {
                topic: "t".into(),
                ops: vec![
                    ("retention.ms".into(), ctl::ConfigOp::Set("5".into())),
                    // SET of null removes the key, as in KRaft.
                    ("a".into(), ctl::ConfigOp::Delete),
                ],
            }]
        );
        let refused: Vec<_> =
            refused.iter().map(|r| (r.resource_type, r.resource_name.to_string(), r.error_code)).collect();
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(refused, vec![(4, "1".to_string(), invalid), (api::RESOURCE_TOPIC, "u".to_string(), invalid)]);
    }

    fn data(
        tp: TopicIdPartition,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[(i32, Option<i64>)],
    ) -> ctl::AlterPartitionData {
        ctl::AlterPartitionData {
            tp,
            leader_epoch,
            partition_epoch,
            new_isr: isr.iter().map(|&(broker_id, broker_epoch)| ctl::IsrMember { broker_id, broker_epoch }).collect(),
        }
    }

    fn tp(topic: u128, partition: i32) -> TopicIdPartition {
        TopicIdPartition { topic_id: tid(topic), partition }
    }

    #[test]
    fn alter_partition_round_trips_results_and_exact_errors() {
        let sent = [
            data(tp(1, 0), 4, 6, &[(1, Some(10)), (2, None)]),
            data(tp(2, 0), 1, 1, &[(1, None)]),
            data(tp(1, 1), 1, 1, &[(1, None)]),
            data(tp(1, 2), 5, 9, &[(1, None)]),
            data(tp(1, 3), 5, 9, &[(1, None)]),
            data(tp(1, 4), 5, 7, &[(1, None)]),
            data(tp(1, 5), 5, 7, &[(1, None)]),
            data(tp(1, 6), 5, 7, &[(1, None)]),
            data(tp(1, 7), 5, 7, &[(1, None), (9, None)]),
            data(tp(1, 8), 5, 7, &[(2, Some(3)), (3, None)]),
            data(tp(1, 9), 5, 7, &[(1, None)]),
            data(tp(1, 0), 4, 6, &[(1, None)]),
        ];
        let request = ctl::AlterPartitionRequest { broker_id: 1, broker_epoch: 10, partitions: sent.to_vec() };
        let invalid = |e| Err(APE::InvalidRequest(e));
        let outcomes = vec![
            Ok(PartitionRegistration {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader: Some(1),
                leader_epoch: 4,
                partition_epoch: 7,
            }),
            Err(APE::UnknownTopicId(tid(2))),
            Err(APE::UnknownTopicOrPartition(tp(1, 1))),
            Err(APE::NotController {
                current_leader_epoch: 3,
                request_leader_epoch: 5,
                current_partition_epoch: 2,
                request_partition_epoch: 9,
            }),
            Err(APE::FencedLeaderEpoch { current: 6, request: 5 }),
            Err(APE::InvalidUpdateVersion { current: 8, request: 7 }),
            invalid(ctl::InvalidAlterPartition::NotLeader { sender: 1, leader: Some(2) }),
            invalid(ctl::InvalidAlterPartition::NotLeader { sender: 1, leader: None }),
            invalid(ctl::InvalidAlterPartition::IsrNotWithinReplicas { isr: vec![1, 9], replicas: vec![1, 2, 3] }),
            invalid(ctl::InvalidAlterPartition::IsrWithoutLeader { isr: vec![2, 3], leader: 1 }),
            Ok(PartitionRegistration {
                replicas: vec![1, 2, 3],
                isr: vec![],
                leader: None,
                leader_epoch: 5,
                partition_epoch: 8,
            }),
            invalid(ctl::InvalidAlterPartition::DuplicatePartition),
        ];
        let results: Vec<_> =
            sent.iter().zip(outcomes).map(|(d, outcome)| ctl::AlterPartitionResult { tp: d.tp, outcome }).collect();
        let mut kinds: BTreeSet<u8> =
            results.iter().filter_map(|r| r.outcome.as_ref().err()).map(alter_partition_error_kind).collect();
        let request = ControllerRequest::AlterPartition(request);
        assert_round_trips(request.clone(), ControllerReply::AlterPartition(Ok(results)));

        let stale = APE::StaleBrokerEpoch { broker_id: 1, current: None, request: 10 };
        kinds.insert(alter_partition_error_kind(&stale));
        assert_round_trips(request, ControllerReply::AlterPartition(Err(stale)));
        // The last kind, IneligibleReplica, loses its detail: see below.
        assert_eq!(kinds.len(), 10);
    }

    #[test]
    fn alter_partition_keeps_the_code_where_kafka_has_no_detail() {
        // Kafka's schema carries neither the controller's broker epoch for
        // the sender nor which ISR members are ineligible: the codes and
        // what the request says survive, documented in the module docs.
        let request = ctl::AlterPartitionRequest {
            broker_id: 1,
            broker_epoch: 10,
            partitions: vec![data(tp(1, 0), 4, 6, &[(1, None), (2, Some(3))])],
        };
        let request = ControllerRequest::AlterPartition(request);
        let stale = ControllerReply::AlterPartition(Err(APE::StaleBrokerEpoch {
            broker_id: 1,
            current: Some(12),
            request: 10,
        }));
        assert_eq!(
            reply_round_trip(&request, &stale),
            Ok(ControllerReply::AlterPartition(Err(APE::StaleBrokerEpoch {
                broker_id: 1,
                current: None,
                request: 10
            })))
        );
        let ineligible = APE::IneligibleReplica(vec![ctl::IneligibleReplica {
            broker_id: 2,
            reason: ctl::IneligibleReason::BrokerEpochMismatch { requested: 3, expected: 4 },
        }]);
        assert_eq!(alter_partition_error_kind(&ineligible), 10);
        let reply = ControllerReply::AlterPartition(Ok(vec![ctl::AlterPartitionResult {
            tp: tp(1, 0),
            outcome: Err(ineligible),
        }]));
        let want = ControllerReply::AlterPartition(Ok(vec![ctl::AlterPartitionResult {
            tp: tp(1, 0),
            outcome: Err(APE::IneligibleReplica(Vec::new())),
        }]));
        assert_eq!(reply_round_trip(&request, &reply), Ok(want));
    }

    #[test]
    fn alter_partition_answer_for_other_partitions_is_a_bad_response() {
        let r = ctl::AlterPartitionRequest {
            broker_id: 1,
            broker_epoch: 10,
            partitions: vec![data(tp(1, 0), 4, 6, &[(1, None)])],
        };
        let other = ctl::AlterPartitionResult { tp: tp(1, 1), outcome: Err(APE::UnknownTopicOrPartition(tp(1, 1))) };
        let k = api::alter_partition_response(1, &Ok(vec![other.clone()]));
        assert!(matches!(alter_partition_reply(&r, k, &replicas), Err(ReplyError::Bad(_))));
        let k = api::alter_partition_response(1, &Ok(vec![other.clone(), other]));
        assert!(matches!(alter_partition_reply(&r, k, &replicas), Err(ReplyError::Bad(_))));
    }

    #[test]
    fn not_controller_and_busy_answers_are_retried_for_every_kind() {
        for code in [ResponseError::NotController.code(), ResponseError::RequestTimedOut.code()] {
            let refusal = (code, "not here".to_string());
            let topics = ctl::CreateTopicsRequest { topics: vec![topic("a", 1, 1, &[])], validate_only: false };
            let k = api::create_topics_refused(&create_topics_to_kafka(&topics, 1), refusal.clone());
            assert_eq!(create_topics_reply(&topics, wire(&k, CREATE_TOPICS_VERSION)), Err(ReplyError::NotServed(code)));

            let delete = ctl::DeleteTopicsRequest { topics: vec![ctl::TopicRef::Id(tid(1))] };
            let k = api::delete_topics_refused(&delete_topics_to_kafka(&delete, 1), refusal.clone());
            assert_eq!(delete_topics_reply(wire(&k, DELETE_TOPICS_VERSION)), Err(ReplyError::NotServed(code)));

            let partitions = ctl::CreatePartitionsRequest {
                topics: vec![ctl::CreatePartitionsTopic { name: "a".into(), count: 2, assignments: None }],
                validate_only: false,
            };
            let k = api::create_partitions_refused(&create_partitions_to_kafka(&partitions, 1), refusal.clone());
            let k = wire(&k, CREATE_PARTITIONS_VERSION);
            assert_eq!(create_partitions_reply(&partitions, k), Err(ReplyError::NotServed(code)));

            let configs = ctl::IncrementalAlterConfigsRequest {
                resources: vec![ctl::AlterTopicConfigs { topic: "a".into(), ops: vec![] }],
                validate_only: false,
            };
            let k = api::incremental_alter_configs_refused(&incremental_alter_configs_to_kafka(&configs), refusal);
            let k = wire(&k, INCREMENTAL_ALTER_CONFIGS_VERSION);
            assert_eq!(incremental_alter_configs_reply(&configs, k), Err(ReplyError::NotServed(code)));

            let alter = ctl::AlterPartitionRequest { broker_id: 1, broker_epoch: 1, partitions: vec![] };
            let k = wire(&km::AlterPartitionResponse::default().with_error_code(code), ALTER_PARTITION_VERSION);
            assert_eq!(alter_partition_reply(&alter, k, &replicas), Err(ReplyError::NotServed(code)));

            let k = wire(&km::ElectLeadersResponse::default().with_error_code(code), ELECT_LEADERS_VERSION);
            assert_eq!(elect_leaders_reply(k), Err(ReplyError::NotServed(code)));
        }
    }

    #[test]
    fn elect_leaders_round_trips_every_outcome() {
        use ctl::ElectLeaderError as E;
        let errors = [
            E::UnknownTopic("u".into()),
            E::UnknownPartition { topic: "a".into(), partition: 9 },
            E::ElectionNotNeeded,
            E::PreferredLeaderNotAvailable,
            E::EligibleLeadersNotAvailable,
            E::TooManyElections,
        ];
        // Adding a variant fails to compile here: each needs a case above.
        let kinds: BTreeSet<u8> = errors
            .iter()
            .map(|e| match e {
                E::UnknownTopic(_) => 0,
                E::UnknownPartition { .. } => 1,
                E::ElectionNotNeeded => 2,
                E::PreferredLeaderNotAvailable => 3,
                E::EligibleLeadersNotAvailable => 4,
                E::TooManyElections => 5,
            })
            .collect();
        assert_eq!(kinds.len(), 6, "an ElectLeaderError variant has no case");
        let topics = vec![
            ctl::ElectLeadersTopic { name: "a".into(), partitions: vec![0, 9, 1] },
            ctl::ElectLeadersTopic { name: "u".into(), partitions: vec![0] },
        ];
        for election in [ctl::ElectionType::Preferred, ctl::ElectionType::Unclean] {
            for topics in [Some(topics.clone()), None] {
                let request = ControllerRequest::ElectLeaders(ctl::ElectLeadersRequest { election, topics });
                let results = vec![
                    ctl::ElectLeadersTopicResult {
                        name: "a".into(),
                        partitions: errors
                            .iter()
                            .filter(|e| !matches!(e, E::UnknownTopic(_)))
                            .enumerate()
                            .map(|(i, e)| (if i == 0 { 9 } else { i as i32 }, Err(e.clone())))
                            .chain([(7, Ok(()))])
                            .collect(),
                    },
                    ctl::ElectLeadersTopicResult { name: "u".into(), partitions: vec![(0, Err(errors[0].clone()))] },
                    ctl::ElectLeadersTopicResult { name: "empty".into(), partitions: Vec::new() },
                ];
                assert_round_trips(request, ControllerReply::ElectLeaders(results));
            }
        }
        // A message the controller would not have rendered is no reply.
        let bad = api::elect_leaders_response(&[ctl::ElectLeadersTopicResult {
            name: "a".into(),
            partitions: vec![(3, Err(E::UnknownPartition { topic: "b".into(), partition: 3 }))],
        }]);
        assert!(matches!(elect_leaders_reply(wire(&bad, ELECT_LEADERS_VERSION)), Err(ReplyError::Bad(_))));
    }

    #[test]
    fn truncated_requests_fail_to_decode() {
        let create = ctl::CreateTopicsRequest {
            topics: vec![topic("orders", 3, 2, &[("retention.ms", "1000")])],
            validate_only: false,
        };
        truncations_fail(&create_topics_to_kafka(&create, 100), CREATE_TOPICS_VERSION);
        let delete = ctl::DeleteTopicsRequest { topics: vec![ctl::TopicRef::Name("a".into())] };
        truncations_fail(&delete_topics_to_kafka(&delete, 100), DELETE_TOPICS_VERSION);
        let partitions = ctl::CreatePartitionsRequest {
            topics: vec![ctl::CreatePartitionsTopic { name: "a".into(), count: 2, assignments: Some(vec![vec![1]]) }],
            validate_only: false,
        };
        truncations_fail(&create_partitions_to_kafka(&partitions, 100), CREATE_PARTITIONS_VERSION);
        let configs = ctl::IncrementalAlterConfigsRequest {
            resources: vec![ctl::AlterTopicConfigs {
                topic: "a".into(),
                ops: vec![("retention.ms".into(), ctl::ConfigOp::Set("1".into()))],
            }],
            validate_only: false,
        };
        truncations_fail(&incremental_alter_configs_to_kafka(&configs), INCREMENTAL_ALTER_CONFIGS_VERSION);
        let alter = ctl::AlterPartitionRequest {
            broker_id: 1,
            broker_epoch: 1,
            partitions: vec![data(tp(1, 0), 1, 1, &[(1, Some(1))])],
        };
        truncations_fail(&alter_partition_to_kafka(&alter), ALTER_PARTITION_VERSION);
    }

    #[test]
    fn holes_split_at_first_occurrences_and_need_both_ends() {
        assert_eq!(holes("Topic 'a' x", &["Topic '", "' x"]), Some(vec!["a"]));
        assert_eq!(holes("a 1 b 2 c", &["a ", " b ", " c"]), Some(vec!["1", "2"]));
        assert_eq!(holes("rest", &["", ""]), Some(vec!["rest"]));
        assert_eq!(holes("a 1 b 2", &["a ", " b ", " c"]), None);
        assert_eq!(holes("x 1 b 2 c", &["a ", " b ", " c"]), None);
        assert_eq!(number::<i32>("for partition 7", "for partition ", ""), Some(7));
        assert_eq!(number::<i32>("for partition seven", "for partition ", ""), None);
    }

    /// Three voters over TCP with their controllers, as `start_quorum` runs
    /// them, minus the broker lifecycle.
    async fn cluster() -> (Vec<(i32, SocketAddr)>, Vec<(Rc<ClusterNode>, Rc<DriverHandle>)>) {
        use super::super::raft_driver::QuorumDriver;
        use futures::channel::mpsc;
        use spindle_engine::storage::memory::MemStorage;
        use spindle_replication::quorum::{discard_logger, Entry, QuorumConfig};
        let ids = vec![0, 1, 2];
        let listeners: Vec<_> = ids.iter().map(|_| glommio::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let voters: Vec<(i32, SocketAddr)> =
            ids.iter().zip(&listeners).map(|(&id, l)| (id, l.local_addr().unwrap())).collect();
        let mut nodes = Vec::new();
        for (listener, &(id, _)) in listeners.into_iter().zip(&voters) {
            let (tx, rx) = mpsc::channel(1024);
            let handle = DriverHandle::new(tx.clone());
            let node = ClusterNode::new(id, 3, handle.clone(), ctl::ControllerConfig::new(3));
            let controller = Some((node.clone(), handle.clone()));
            glommio::spawn_local(transport::serve(listener, tx.clone(), ids.clone(), controller)).detach();
            let peers = voters.iter().filter(|(p, _)| *p != id).copied().collect();
            let out = transport::RaftPeers::spawn(peers, tx);
            let cfg = QuorumConfig { node: id, voters: ids.clone() };
            let driver = QuorumDriver::open(
                MemStorage::new(),
                std::path::Path::new("/data"),
                &cfg,
                7 + id as u64,
                &discard_logger(),
            )
            .await
            .unwrap();
            let n = node.clone();
            let apply = move |e: &Entry| n.on_entry(e);
            glommio::spawn_local(driver.run(rx, out, apply, Some(Duration::from_millis(5)))).detach();
            let (n, h) = (node.clone(), handle.clone());
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    if let Some(status) = h.status().await {
                        n.tick(&status);
                    }
                }
            })
            .detach();
            nodes.push((node, handle));
        }
        (voters, nodes)
    }

    #[test]
    fn a_follower_gets_the_reply_the_controller_gives_in_process() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let (voters, nodes) = cluster().await;
                let mut active = None;
                for _ in 0..1000 {
                    active = nodes.iter().position(|(n, _)| n.is_active());
                    if active.is_some() {
                        break;
                    }
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                let active = active.expect("a controller became active within 10 s");
                let follower = (active + 1) % nodes.len();
                // Nothing is registered: every request fails, deterministically,
                // and fails the same way whichever path it took.
                let requests = [
                    ControllerRequest::CreateTopics(ctl::CreateTopicsRequest {
                        topics: vec![topic("t", 1, 1, &[])],
                        validate_only: true,
                    }),
                    ControllerRequest::DeleteTopics(ctl::DeleteTopicsRequest {
                        topics: vec![ctl::TopicRef::Name("nope".into())],
                    }),
                    ControllerRequest::IncrementalAlterConfigs(ctl::IncrementalAlterConfigsRequest {
                        resources: vec![ctl::AlterTopicConfigs { topic: "nope".into(), ops: vec![] }],
                        validate_only: false,
                    }),
                    ControllerRequest::AlterPartition(ctl::AlterPartitionRequest {
                        broker_id: 7,
                        broker_epoch: 3,
                        partitions: vec![data(tp(1, 0), 0, 0, &[(7, None)])],
                    }),
                ];
                let timeout = Duration::from_secs(10);
                for request in requests {
                    let (node, driver) = &nodes[active];
                    let local = forward(node, driver, &voters, request.clone(), timeout).await;
                    let (node, driver) = &nodes[follower];
                    assert!(!node.is_active());
                    let remote = forward(node, driver, &voters, request.clone(), timeout).await;
                    assert_eq!(remote, local, "{request:?}");
                    assert!(local.is_ok(), "{local:?}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn forward_gives_up_at_the_timeout_when_no_controller_is_reachable() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let (_, nodes) = cluster().await;
                // Wait for a leader, then forward from a follower that knows no
                // voter addresses: every attempt is retried until the timeout.
                let follower = loop {
                    let mut leader_known = None;
                    for (i, (_, d)) in nodes.iter().enumerate() {
                        if let Some(s) = d.status().await {
                            if s.leader.is_some() && s.role != Role::Leader {
                                leader_known = Some(i);
                            }
                        }
                    }
                    if let Some(i) = leader_known {
                        break i;
                    }
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                };
                let (node, driver) = &nodes[follower];
                let request = ControllerRequest::DeleteTopics(ctl::DeleteTopicsRequest { topics: vec![] });
                let started = Instant::now();
                let got = forward(node, driver, &[], request, Duration::from_millis(300)).await;
                assert_eq!(got, Err(ForwardError::Timeout));
                assert!(started.elapsed() >= Duration::from_millis(300));
                assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
