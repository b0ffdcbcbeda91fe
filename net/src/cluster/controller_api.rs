//! Kafka's broker-to-controller APIs on the controller listener, both
//! sides: the handler the active controller runs, and the client brokers
//! use (the lifecycle task for BrokerRegistration and BrokerHeartbeat,
//! [`super::forward`] for the rest).
//!
//! Besides registration and heartbeats the listener serves the requests a
//! broker forwards to the active controller: CreateTopics, DeleteTopics,
//! CreatePartitions, IncrementalAlterConfigs (topics), AlterPartition and
//! ElectLeaders, each at exactly one version. The only client is our own forwarder, so
//! one version per key is all we need, and refusing the others (the
//! connection closes) beats half-serving a version nobody tested. The
//! handler turns each into a [`ControllerRequest`], runs it on this node's
//! controller and encodes the [`ControllerReply`]; this file holds that
//! side of the conversion, `forward.rs` the other.
//!
//! When this node's controller cannot take the request, every topic (or,
//! for AlterPartition and ElectLeaders, the whole response) carries NOT_CONTROLLER, or
//! REQUEST_TIMED_OUT when it is busy: the sender retries, as Kafka's
//! brokers do.

use super::node::{ClusterNode, NotController};
use super::raft_driver::DriverHandle;
use crate::api::{decode, encode_response, str_bytes};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{
    self as km, ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest,
    BrokerRegistrationResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use spindle_replication::controller::{self as ctl, ControllerReply, ControllerRequest};
use spindle_replication::types::{TopicIdPartition, NO_LEADER};
use std::rc::Rc;

pub const REGISTRATION_VERSION: i16 = 3;
pub const HEARTBEAT_VERSION: i16 = 1;
/// CreateTopics v7, the newest our kafka-protocol knows: its response
/// carries the new topic's id.
pub const CREATE_TOPICS_VERSION: i16 = 7;
/// DeleteTopics v6: topics by name or by id.
pub const DELETE_TOPICS_VERSION: i16 = 6;
/// CreatePartitions v3, the newest (flexible) version.
pub const CREATE_PARTITIONS_VERSION: i16 = 3;
/// IncrementalAlterConfigs v1, the newest (flexible) version.
pub const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 1;
/// AlterPartition v3: topics by id, and every new ISR member with the
/// broker epoch the leader saw it catch up at (`new_isr_with_epochs`).
pub const ALTER_PARTITION_VERSION: i16 = 3;
/// ElectLeaders v2, the newest (flexible) version: it has the election type
/// and a response-level error code, where a refusal goes.
pub const ELECT_LEADERS_VERSION: i16 = 2;
/// Largest controller response a broker reads (registration and heartbeat
/// answers are a few dozen bytes; a forwarded request's answer is bounded
/// by the request, itself at most `CONTROLLER_REQUEST_MAX_BYTES`).
pub const RESPONSE_MAX_BYTES: usize = 1 << 20;
/// Largest ElectLeaders answer a broker reads: with a null partition list
/// the controller answers every partition that needed an election, which a
/// request does not bound (about 70 bytes each: 64 MiB is some 900,000).
pub const ELECT_LEADERS_RESPONSE_MAX_BYTES: usize = 64 << 20;

/// Kafka's `ConfigResource.Type.TOPIC`.
pub(super) const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `AlterConfigOp.OpType.SET`.
pub(super) const OP_SET: i8 = 0;
/// Kafka's `AlterConfigOp.OpType.DELETE`. APPEND and SUBTRACT are not
/// served here: they need the key's type, which the forwarding broker
/// knows; it sends them as SET of the resulting list.
pub(super) const OP_DELETE: i8 = 1;
/// Kafka's `ConfigSource.DYNAMIC_TOPIC_CONFIG`: a config set on the topic.
pub(super) const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// Kafka's "no broker epoch" in `new_isr_with_epochs`: skip the check.
pub(super) const NO_BROKER_EPOCH: i64 = -1;
/// Kafka's message when a DeleteTopics entry has both a name and an id
/// (it refuses the whole request).
const BOTH_NAME_AND_ID: &str = "You may not specify both topic name and topic id.";

fn not_controller_code(e: NotController) -> i16 {
    match e {
        NotController::Busy => ResponseError::RequestTimedOut.code(),
        NotController::Elsewhere(_) | NotController::Resigned => ResponseError::NotController.code(),
    }
}

/// The code and Kafka's default message for a request this node's
/// controller did not take.
fn refusal(e: NotController) -> (i16, String) {
    let code = not_controller_code(e);
    (code, ResponseError::try_from_code(code).map(|e| e.to_string()).unwrap_or_default())
}

/// The controller answered a request with a reply of another kind: a bug
/// in the controller, but one connection's worth, not the node's.
fn mismatched(reply: &ControllerReply, what: &str) -> String {
    format!("controller answered {reply:?} to {what}")
}

/// Answers one controller-API request frame (after its size prefix).
/// `Err` closes the connection.
pub async fn handle_frame(node: &Rc<ClusterNode>, driver: &DriverHandle, mut frame: Bytes) -> Result<Bytes, String> {
    if frame.len() < 8 {
        return Err("request header truncated".into());
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    if key == super::observer::SPINDLE_METADATA_FETCH_KEY {
        return super::observer::serve_fetch(node, driver, frame).await;
    }
    let key = ApiKey::try_from(key).map_err(|_| format!("api key {key} not served on the controller listener"))?;
    let versions = match key {
        ApiKey::BrokerRegistration => 0..=4,
        ApiKey::BrokerHeartbeat => 0..=1,
        ApiKey::CreateTopics => CREATE_TOPICS_VERSION..=CREATE_TOPICS_VERSION,
        ApiKey::DeleteTopics => DELETE_TOPICS_VERSION..=DELETE_TOPICS_VERSION,
        ApiKey::CreatePartitions => CREATE_PARTITIONS_VERSION..=CREATE_PARTITIONS_VERSION,
        ApiKey::IncrementalAlterConfigs => INCREMENTAL_ALTER_CONFIGS_VERSION..=INCREMENTAL_ALTER_CONFIGS_VERSION,
        ApiKey::AlterPartition => ALTER_PARTITION_VERSION..=ALTER_PARTITION_VERSION,
        ApiKey::ElectLeaders => ELECT_LEADERS_VERSION..=ELECT_LEADERS_VERSION,
        _ => return Err(format!("{key:?} not served on the controller listener")),
    };
    if !versions.contains(&version) {
        return Err(format!("{key:?} v{version} not supported"));
    }
    let header: RequestHeader =
        decode(&mut frame, key.request_header_version(version), "request header").map_err(|e| e.to_string())?;
    let status = driver.status().await.ok_or("quorum driver did not answer")?;
    let correlation_id = header.correlation_id;
    let out = match key {
        ApiKey::BrokerRegistration => {
            let req: BrokerRegistrationRequest =
                decode(&mut frame, version, "BrokerRegistration").map_err(|e| e.to_string())?;
            let listener = req.listeners.first();
            let request = ctl::BrokerRegistrationRequest {
                broker_id: req.broker_id.0,
                incarnation_id: req.incarnation_id,
                host: listener.map(|l| l.host.to_string()).unwrap_or_default(),
                port: listener.map_or(0, |l| l.port),
                rack: req.rack.map(|r| r.to_string()),
                cluster_id: Some(req.cluster_id.to_string()).filter(|c| !c.is_empty()),
            };
            let (error_code, broker_epoch) =
                match node.request(ControllerRequest::BrokerRegistration(request), &status).await {
                    Ok(ControllerReply::BrokerRegistration(Ok(r))) => (0, r.broker_epoch),
                    Ok(ControllerReply::BrokerRegistration(Err(e))) => (e.code().code(), -1),
                    Ok(other) => return Err(mismatched(&other, "a registration")),
                    Err(e) => (not_controller_code(e), -1),
                };
            let resp =
                BrokerRegistrationResponse::default().with_error_code(error_code).with_broker_epoch(broker_epoch);
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::BrokerHeartbeat => {
            let req: BrokerHeartbeatRequest =
                decode(&mut frame, version, "BrokerHeartbeat").map_err(|e| e.to_string())?;
            let request = ctl::BrokerHeartbeatRequest {
                broker_id: req.broker_id.0,
                broker_epoch: req.broker_epoch,
                current_metadata_offset: req.current_metadata_offset.max(0) as u64,
                want_fence: req.want_fence,
                want_shut_down: req.want_shut_down,
            };
            let mut resp = BrokerHeartbeatResponse::default();
            match node.request(ControllerRequest::BrokerHeartbeat(request), &status).await {
                Ok(ControllerReply::BrokerHeartbeat(Ok(r))) => {
                    resp = resp
                        .with_is_caught_up(r.is_caught_up)
                        .with_is_fenced(r.is_fenced)
                        .with_should_shut_down(r.should_shut_down);
                }
                Ok(ControllerReply::BrokerHeartbeat(Err(e))) => resp = resp.with_error_code(e.code().code()),
                Ok(other) => return Err(mismatched(&other, "a heartbeat")),
                Err(e) => resp = resp.with_error_code(not_controller_code(e)).with_is_fenced(true),
            }
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::CreateTopics => {
            let req: km::CreateTopicsRequest =
                decode(&mut frame, version, "CreateTopics").map_err(|e| e.to_string())?;
            let resp = match node.request(ControllerRequest::CreateTopics(create_topics_request(&req)), &status).await {
                Ok(ControllerReply::CreateTopics(results)) => create_topics_response(&results),
                Ok(other) => return Err(mismatched(&other, "CreateTopics")),
                Err(e) => create_topics_refused(&req, refusal(e)),
            };
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::DeleteTopics => {
            let req: km::DeleteTopicsRequest =
                decode(&mut frame, version, "DeleteTopics").map_err(|e| e.to_string())?;
            let resp = match delete_topics_request(&req) {
                Err(invalid) => delete_topics_refused(&req, (ResponseError::InvalidRequest.code(), invalid.to_owned())),
                Ok(request) => match node.request(ControllerRequest::DeleteTopics(request), &status).await {
                    Ok(ControllerReply::DeleteTopics(results)) => delete_topics_response(&results),
                    Ok(other) => return Err(mismatched(&other, "DeleteTopics")),
                    Err(e) => delete_topics_refused(&req, refusal(e)),
                },
            };
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::CreatePartitions => {
            let req: km::CreatePartitionsRequest =
                decode(&mut frame, version, "CreatePartitions").map_err(|e| e.to_string())?;
            let request = ControllerRequest::CreatePartitions(create_partitions_request(&req));
            let resp = match node.request(request, &status).await {
                Ok(ControllerReply::CreatePartitions(results)) => create_partitions_response(&results),
                Ok(other) => return Err(mismatched(&other, "CreatePartitions")),
                Err(e) => create_partitions_refused(&req, refusal(e)),
            };
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: km::IncrementalAlterConfigsRequest =
                decode(&mut frame, version, "IncrementalAlterConfigs").map_err(|e| e.to_string())?;
            let (request, refused) = incremental_alter_configs_request(&req);
            let resp = match node.request(ControllerRequest::IncrementalAlterConfigs(request), &status).await {
                Ok(ControllerReply::IncrementalAlterConfigs(results)) => {
                    incremental_alter_configs_response(&results, refused)
                }
                Ok(other) => return Err(mismatched(&other, "IncrementalAlterConfigs")),
                Err(e) => incremental_alter_configs_refused(&req, refusal(e)),
            };
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::AlterPartition => {
            let req: km::AlterPartitionRequest =
                decode(&mut frame, version, "AlterPartition").map_err(|e| e.to_string())?;
            let request = alter_partition_request(&req);
            let sender = request.broker_id;
            let resp = match node.request(ControllerRequest::AlterPartition(request), &status).await {
                Ok(ControllerReply::AlterPartition(reply)) => alter_partition_response(sender, &reply),
                Ok(other) => return Err(mismatched(&other, "AlterPartition")),
                Err(e) => km::AlterPartitionResponse::default().with_error_code(not_controller_code(e)),
            };
            encode_response(key, version, correlation_id, &resp)
        }
        ApiKey::ElectLeaders => {
            let req: km::ElectLeadersRequest =
                decode(&mut frame, version, "ElectLeaders").map_err(|e| e.to_string())?;
            // Our forwarder sends only the two types Kafka defines.
            let election = election_type(req.election_type)
                .ok_or_else(|| format!("election type {} is not Kafka's", req.election_type))?;
            let request = ControllerRequest::ElectLeaders(elect_leaders_request(election, req.topic_partitions));
            let resp = match node.request(request, &status).await {
                Ok(ControllerReply::ElectLeaders(results)) => elect_leaders_response(&results),
                Ok(other) => return Err(mismatched(&other, "ElectLeaders")),
                Err(e) => km::ElectLeadersResponse::default().with_error_code(not_controller_code(e)),
            };
            encode_response(key, version, correlation_id, &resp)
        }
        _ => return Err(format!("{key:?} not served on the controller listener")),
    };
    out.map(BytesMut::freeze).map_err(|e| e.to_string())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

/// The message a result carries for `error` (Kafka's schemas have one per
/// topic; `None` on success, as Kafka sends it).
fn error_message(error: &impl std::fmt::Display) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(str_bytes(&error.to_string()))
}

// ---- CreateTopics (key 19) ----

/// The Kafka request as the controller takes it. `timeout_ms` is not
/// used: the forwarder bounds its own wait. A config with a null value is
/// dropped (KRaft reads it as "no value": the default applies); a key given
/// twice keeps its last value, as in Kafka.
pub(super) fn create_topics_request(req: &km::CreateTopicsRequest) -> ctl::CreateTopicsRequest {
    let topics = req
        .topics
        .iter()
        .map(|t| ctl::CreatableTopic {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| ctl::ReplicaAssignment {
                    partition_index: a.partition_index,
                    broker_ids: a.broker_ids.iter().map(|b| b.0).collect(),
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect(),
        })
        .collect();
    ctl::CreateTopicsRequest { topics, validate_only: req.validate_only }
}

/// One result per topic of the reply, in its order. A created topic lists
/// the configs set on it (source DYNAMIC_TOPIC_CONFIG); the broker that
/// answers the client adds the defaults.
pub(super) fn create_topics_response(results: &[ctl::CreateTopicResult]) -> km::CreateTopicsResponse {
    use km::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
    let topics = results
        .iter()
        .map(|r| {
            let topic = CreatableTopicResult::default().with_name(topic_name(&r.name));
            match &r.outcome {
                Ok(created) => {
                    let configs = created
                        .configs
                        .iter()
                        .map(|(name, value)| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(name))
                                .with_value(Some(str_bytes(value)))
                                .with_config_source(CONFIG_SOURCE_DYNAMIC_TOPIC)
                        })
                        .collect();
                    topic
                        .with_topic_id(created.topic_id)
                        .with_error_message(None)
                        .with_num_partitions(created.num_partitions)
                        .with_replication_factor(created.replication_factor)
                        .with_configs(Some(configs))
                }
                Err(e) => topic.with_error_code(e.code().code()).with_error_message(error_message(e)),
            }
        })
        .collect();
    km::CreateTopicsResponse::default().with_topics(topics)
}

pub(super) fn create_topics_refused(
    req: &km::CreateTopicsRequest,
    (code, message): (i16, String),
) -> km::CreateTopicsResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            km::create_topics_response::CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message)))
        })
        .collect();
    km::CreateTopicsResponse::default().with_topics(topics)
}

// ---- DeleteTopics (key 20) ----

/// A topic by name (id left zero) or by id (name null); both is refused
/// for the whole request, as Kafka does.
pub(super) fn delete_topics_request(req: &km::DeleteTopicsRequest) -> Result<ctl::DeleteTopicsRequest, &'static str> {
    let topics = req
        .topics
        .iter()
        .map(|t| match (&t.name, t.topic_id.is_nil()) {
            (Some(name), true) => Ok(ctl::TopicRef::Name(name.0.to_string())),
            (None, _) => Ok(ctl::TopicRef::Id(t.topic_id)),
            (Some(_), false) => Err(BOTH_NAME_AND_ID),
        })
        .collect::<Result<_, _>>()?;
    Ok(ctl::DeleteTopicsRequest { topics })
}

/// One result per topic, with the name (null if unknown) and id (zero if
/// unknown) as far as the controller knows them.
pub(super) fn delete_topics_response(results: &[ctl::DeleteTopicResult]) -> km::DeleteTopicsResponse {
    let responses = results
        .iter()
        .map(|r| {
            let result = km::delete_topics_response::DeletableTopicResult::default()
                .with_name(r.name.as_deref().map(topic_name))
                .with_topic_id(r.topic_id.unwrap_or_else(uuid::Uuid::nil));
            match &r.outcome {
                Ok(()) => result.with_error_message(None),
                Err(e) => result.with_error_code(e.code().code()).with_error_message(error_message(e)),
            }
        })
        .collect();
    km::DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) fn delete_topics_refused(
    req: &km::DeleteTopicsRequest,
    (code, message): (i16, String),
) -> km::DeleteTopicsResponse {
    let responses = req
        .topics
        .iter()
        .map(|t| {
            km::delete_topics_response::DeletableTopicResult::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message)))
        })
        .collect();
    km::DeleteTopicsResponse::default().with_responses(responses)
}

// ---- CreatePartitions (key 37) ----

pub(super) fn create_partitions_request(req: &km::CreatePartitionsRequest) -> ctl::CreatePartitionsRequest {
    let topics = req
        .topics
        .iter()
        .map(|t| ctl::CreatePartitionsTopic {
            name: t.name.0.to_string(),
            count: t.count,
            assignments: t
                .assignments
                .as_ref()
                .map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect()),
        })
        .collect();
    ctl::CreatePartitionsRequest { topics, validate_only: req.validate_only }
}

pub(super) fn create_partitions_response(results: &[ctl::CreatePartitionsResult]) -> km::CreatePartitionsResponse {
    let results = results
        .iter()
        .map(|r| {
            let result =
                km::create_partitions_response::CreatePartitionsTopicResult::default().with_name(topic_name(&r.name));
            match &r.outcome {
                Ok(()) => result.with_error_message(None),
                Err(e) => result.with_error_code(e.code().code()).with_error_message(error_message(e)),
            }
        })
        .collect();
    km::CreatePartitionsResponse::default().with_results(results)
}

pub(super) fn create_partitions_refused(
    req: &km::CreatePartitionsRequest,
    (code, message): (i16, String),
) -> km::CreatePartitionsResponse {
    let results = req
        .topics
        .iter()
        .map(|t| {
            km::create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message)))
        })
        .collect();
    km::CreatePartitionsResponse::default().with_results(results)
}

// ---- ElectLeaders (key 43) ----

/// Kafka's `ElectionType` byte: 0 preferred, 1 unclean.
pub(crate) fn election_type(byte: i8) -> Option<ctl::ElectionType> {
    match byte {
        0 => Some(ctl::ElectionType::Preferred),
        1 => Some(ctl::ElectionType::Unclean),
        _ => None,
    }
}

pub(crate) fn election_type_byte(election: ctl::ElectionType) -> i8 {
    match election {
        ctl::ElectionType::Preferred => 0,
        ctl::ElectionType::Unclean => 1,
    }
}

/// `topics: None` (a null list) asks for every partition.
pub(crate) fn elect_leaders_request(
    election: ctl::ElectionType,
    topics: Option<Vec<km::elect_leaders_request::TopicPartitions>>,
) -> ctl::ElectLeadersRequest {
    let topics = topics.map(|ts| {
        ts.into_iter()
            .map(|t| ctl::ElectLeadersTopic { name: t.topic.0.to_string(), partitions: t.partitions })
            .collect()
    });
    ctl::ElectLeadersRequest { election, topics }
}

/// One result per partition, with Kafka's message on errors and none on
/// success (as Kafka sends it).
pub(crate) fn elect_leaders_response(results: &[ctl::ElectLeadersTopicResult]) -> km::ElectLeadersResponse {
    use km::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
    let results = results
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|(partition, outcome)| {
                    let result = PartitionResult::default().with_partition_id(*partition);
                    match outcome {
                        Ok(()) => result.with_error_message(None),
                        Err(e) => result.with_error_code(e.code().code()).with_error_message(error_message(e)),
                    }
                })
                .collect();
            ReplicaElectionResult::default().with_topic(topic_name(&t.name)).with_partition_result(partitions)
        })
        .collect();
    km::ElectLeadersResponse::default().with_replica_election_results(results)
}

// ---- IncrementalAlterConfigs (key 44) ----

type AlterConfigsResourceResponse = km::incremental_alter_configs_response::AlterConfigsResourceResponse;

/// The topic resources as the controller takes them, and the answers for
/// the resources it cannot take (another resource type, or APPEND /
/// SUBTRACT), refused here with INVALID_REQUEST. A SET with a null value
/// removes the key, as in KRaft.
pub(super) fn incremental_alter_configs_request(
    req: &km::IncrementalAlterConfigsRequest,
) -> (ctl::IncrementalAlterConfigsRequest, Vec<AlterConfigsResourceResponse>) {
    let mut resources = Vec::new();
    let mut refused = Vec::new();
    for r in &req.resources {
        let refuse = |message: String| {
            AlterConfigsResourceResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&message)))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
        };
        if r.resource_type != RESOURCE_TOPIC {
            refused.push(refuse(format!(
                "Unexpected resource type {}: the controller listener serves topic configs only",
                r.resource_type
            )));
            continue;
        }
        let ops = r
            .configs
            .iter()
            .map(|c| {
                let op = match (c.config_operation, &c.value) {
                    (OP_SET, Some(value)) => ctl::ConfigOp::Set(value.to_string()),
                    (OP_SET, None) | (OP_DELETE, _) => ctl::ConfigOp::Delete,
                    (op, _) => {
                        return Err(format!(
                            "Config operation {op} on {} is not served by the controller: the forwarding broker \
                             resolves APPEND and SUBTRACT",
                            c.name
                        ))
                    }
                };
                Ok((c.name.to_string(), op))
            })
            .collect::<Result<Vec<_>, String>>();
        match ops {
            Ok(ops) => resources.push(ctl::AlterTopicConfigs { topic: r.resource_name.to_string(), ops }),
            Err(message) => refused.push(refuse(message)),
        }
    }
    (ctl::IncrementalAlterConfigsRequest { resources, validate_only: req.validate_only }, refused)
}

/// The controller's results in their order, then the resources refused
/// before it (clients match answers by resource type and name).
pub(super) fn incremental_alter_configs_response(
    results: &[ctl::AlterConfigsResult],
    refused: Vec<AlterConfigsResourceResponse>,
) -> km::IncrementalAlterConfigsResponse {
    let responses = results
        .iter()
        .map(|r| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(&r.topic));
            match &r.outcome {
                Ok(()) => response.with_error_message(None),
                Err(e) => response.with_error_code(e.code().code()).with_error_message(error_message(e)),
            }
        })
        .chain(refused)
        .collect();
    km::IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(super) fn incremental_alter_configs_refused(
    req: &km::IncrementalAlterConfigsRequest,
    (code, message): (i16, String),
) -> km::IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .iter()
        .map(|r| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message)))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
        })
        .collect();
    km::IncrementalAlterConfigsResponse::default().with_responses(responses)
}

// ---- AlterPartition (key 56) ----

/// The partitions in request order. `leader_recovery_state` is not read:
/// leaders come from the ISR only, so a partition is never RECOVERING.
pub(super) fn alter_partition_request(req: &km::AlterPartitionRequest) -> ctl::AlterPartitionRequest {
    let partitions = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| ctl::AlterPartitionData {
                tp: TopicIdPartition { topic_id: t.topic_id, partition: p.partition_index },
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: p
                    .new_isr_with_epochs
                    .iter()
                    .map(|m| ctl::IsrMember {
                        broker_id: m.broker_id.0,
                        broker_epoch: Some(m.broker_epoch).filter(|&e| e != NO_BROKER_EPOCH),
                    })
                    .collect(),
            })
        })
        .collect();
    ctl::AlterPartitionRequest { broker_id: req.broker_id.0, broker_epoch: req.broker_epoch, partitions }
}

/// A request-level error is the top-level code. Otherwise the results in
/// their order, consecutive partitions of one topic under one topic entry
/// (so the order survives). An accepted partition carries its registration
/// after the change (leader, leader epoch, ISR, partition epoch), as in
/// Kafka.
///
/// On a partition error Kafka sends the code alone. We also fill what the
/// forwarder cannot learn from its own request, in fields Kafka's brokers
/// ignore on errors: the current leader epoch and partition epoch of a
/// fenced, outdated or too-new request, and the current leader of an
/// INVALID_REQUEST (the sender itself unless it is NotLeader).
pub(super) fn alter_partition_response(
    sender: i32,
    reply: &Result<Vec<ctl::AlterPartitionResult>, ctl::AlterPartitionError>,
) -> km::AlterPartitionResponse {
    use km::alter_partition_response::{PartitionData, TopicData};
    let results = match reply {
        Ok(results) => results,
        Err(e) => return km::AlterPartitionResponse::default().with_error_code(e.code().code()),
    };
    let mut topics: Vec<TopicData> = Vec::new();
    for r in results {
        let data = PartitionData::default().with_partition_index(r.tp.partition).with_leader_id(BrokerId(NO_LEADER));
        let data = match &r.outcome {
            Ok(p) => data
                .with_leader_id(BrokerId(p.leader_or_no_leader()))
                .with_leader_epoch(p.leader_epoch)
                .with_isr(p.isr.iter().map(|&b| BrokerId(b)).collect())
                .with_partition_epoch(p.partition_epoch),
            Err(e) => {
                use ctl::AlterPartitionError as E;
                let data = data.with_error_code(e.code().code());
                match e {
                    E::NotController { current_leader_epoch, current_partition_epoch, .. } => {
                        data.with_leader_epoch(*current_leader_epoch).with_partition_epoch(*current_partition_epoch)
                    }
                    E::FencedLeaderEpoch { current, .. } => data.with_leader_epoch(*current),
                    E::InvalidUpdateVersion { current, .. } => data.with_partition_epoch(*current),
                    E::InvalidRequest(ctl::InvalidAlterPartition::NotLeader { leader, .. }) => {
                        data.with_leader_id(BrokerId(leader.unwrap_or(NO_LEADER)))
                    }
                    E::InvalidRequest(_) => data.with_leader_id(BrokerId(sender)),
                    _ => data,
                }
            }
        };
        match topics.last_mut() {
            Some(topic) if topic.topic_id == r.tp.topic_id => topic.partitions.push(data),
            _ => topics.push(TopicData::default().with_topic_id(r.tp.topic_id).with_partitions(vec![data])),
        }
    }
    km::AlterPartitionResponse::default().with_topics(topics)
}

/// One request/response exchange with a controller listener, given up
/// after `timeout` (the connection must then be dropped: an answer may
/// still come).
pub async fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
    timeout: std::time::Duration,
) -> Result<Resp, String> {
    call_with_limit(stream, key, version, correlation_id, request, timeout, RESPONSE_MAX_BYTES).await
}

/// [`call`] with the largest response it reads (a replica fetch's answer
/// is much larger than a controller's).
pub async fn call_with_limit<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
    timeout: std::time::Duration,
    response_max: usize,
) -> Result<Resp, String> {
    let exchange = exchange(stream, key, version, correlation_id, request, response_max);
    let expired = glommio::timer::sleep(timeout);
    futures::pin_mut!(exchange);
    futures::pin_mut!(expired);
    match futures::future::select(exchange, expired).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
    response_max: usize,
) -> Result<Resp, String> {
    let header = request_header(key, version, correlation_id);
    let hv = key.request_header_version(version);
    let size = request_frame_bytes(key, version, request)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(|e| e.to_string())?;
    request.encode(&mut buf, version).map_err(|e| e.to_string())?;
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len =
        usize::try_from(i32::from_be_bytes(len)).ok().filter(|&l| l <= response_max).ok_or("bad response size")?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    let mut body = Bytes::from(body);
    let rh: ResponseHeader =
        decode(&mut body, key.response_header_version(version), "response header").map_err(|e| e.to_string())?;
    if rh.correlation_id != correlation_id {
        return Err(format!("response for correlation id {}, expected {correlation_id}", rh.correlation_id));
    }
    decode(&mut body, version, "response").map_err(|e| e.to_string())
}

fn request_header(key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(str_bytes("spindle-broker")))
}

/// The size of the frame [`call`] sends for `request`, after the size
/// prefix: what the controller listener holds against
/// `CONTROLLER_REQUEST_MAX_BYTES` (a larger frame closes the connection).
pub fn request_frame_bytes<Req: Encodable>(key: ApiKey, version: i16, request: &Req) -> Result<usize, String> {
    let hv = key.request_header_version(version);
    Ok(request_header(key, version, 0).compute_size(hv).map_err(|e| e.to_string())?
        + request.compute_size(version).map_err(|e| e.to_string())?)
}

pub fn registration_request(
    broker_id: i32,
    incarnation_id: uuid::Uuid,
    host: &str,
    port: u16,
) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest::default()
        .with_broker_id(BrokerId(broker_id))
        .with_incarnation_id(incarnation_id)
        .with_listeners(vec![Listener::default()
            .with_name(str_bytes("PLAINTEXT"))
            .with_host(str_bytes(host))
            .with_port(port)])
}

pub fn heartbeat_request(broker_id: i32, broker_epoch: i64, metadata_offset: u64) -> BrokerHeartbeatRequest {
    BrokerHeartbeatRequest::default()
        .with_broker_id(BrokerId(broker_id))
        .with_broker_epoch(broker_epoch)
        .with_current_metadata_offset(metadata_offset as i64)
}
