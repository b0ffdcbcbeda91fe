//! CreateTopics (and auto-creation from Metadata and Produce).

use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
use crate::metadata::{effective_log_config, TopicMeta};
use crate::shard::Shard;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::CreateTopics, min: 2, max: 7 };

/// Creates a topic (`partitions` -1: `num.partitions`) and opens its
/// partitions on their owner cores before returning.
pub async fn create(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<TopicMeta, ResponseError> {
    create_checked(shard, name, partitions, -1, Vec::new(), configs, false).await.map(|(m, _)| m).map_err(|(e, _)| e)
}

/// How long a broker waits for a topic the controller created to reach its
/// own metadata (Kafka: the request's timeout; ours is fixed).
const METADATA_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Cluster mode: the active controller creates the topic (placement,
/// replication factor, configs); this broker answers once its own metadata
/// has the topic, so a Metadata request right after sees it.
async fn create_in_cluster(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    assignments: Vec<spindle_replication::controller::ReplicaAssignment>,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(TopicMeta, i16), (ResponseError, String)> {
    use spindle_replication::controller::{ControllerReply, ControllerRequest, CreatableTopic, CreateTopicsRequest};
    let request = ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.to_string(),
            num_partitions: partitions,
            replication_factor,
            assignments,
            configs,
        }],
        validate_only,
    });
    let reply = crate::cluster::forward_request(shard, request, METADATA_APPLY_WAIT)
        .await
        .map_err(|e| (ResponseError::RequestTimedOut, e))?;
    let ControllerReply::CreateTopics(results) = reply else {
        return Err((ResponseError::UnknownServerError, format!("controller answered {reply:?}")));
    };
    let created = match results.into_iter().find(|r| r.name == name).map(|r| r.outcome) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            let code = ResponseError::try_from_code(e.code().code()).unwrap_or(ResponseError::UnknownServerError);
            return Err((code, e.to_string()));
        }
        None => return Err((ResponseError::UnknownServerError, "the controller did not answer for the topic".into())),
    };
    let meta = TopicMeta {
        name: name.to_string(),
        id: *created.topic_id.as_bytes(),
        placement: vec![0; created.num_partitions.max(0) as usize],
        configs: created.configs.clone(),
        registrations: Vec::new(),
    };
    if !validate_only {
        let deadline = std::time::Instant::now() + METADATA_APPLY_WAIT;
        while shard.snapshot().topics.get(name).is_none_or(|t| t.id != meta.id) {
            if std::time::Instant::now() >= deadline {
                return Err((
                    ResponseError::RequestTimedOut,
                    "the new topic did not reach this broker's metadata".into(),
                ));
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    Ok((meta, created.replication_factor))
}

async fn create_checked(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    assignments: Vec<spindle_replication::controller::ReplicaAssignment>,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(TopicMeta, i16), (ResponseError, String)> {
    if shard.config.is_cluster() {
        return create_in_cluster(shard, name, partitions, replication_factor, assignments, configs, validate_only)
            .await;
    }
    if !assignments.is_empty() {
        return Err((ResponseError::InvalidRequest, "manual replica assignment needs a cluster".to_string()));
    }
    if replication_factor != -1 && replication_factor != 1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {replication_factor} is larger than the 1 available broker"),
        ));
    }
    let partitions = if partitions == -1 { shard.config.num_partitions } else { partitions };
    let meta = shard
        .registry
        .create_topic(name, partitions, configs, &shard.config.log_defaults, shard.nr_shards, validate_only)
        .map_err(|e| (errors::registry_error(&e), e.to_string()))?;
    if !validate_only {
        open_partitions(shard, &meta).await;
        tracing::info!(topic = name, partitions, "topic created");
    }
    Ok((meta, 1))
}

/// Opens (creates) every partition of `meta` on its owner core.
pub async fn open_partitions(shard: &Rc<Shard>, meta: &TopicMeta) {
    let mut owners: Vec<usize> = meta.placement.clone();
    owners.sort_unstable();
    owners.dedup();
    let jobs = owners.into_iter().map(|owner| {
        let name = meta.name.clone();
        let mine: Vec<i32> =
            meta.placement.iter().enumerate().filter(|(_, &s)| s == owner).map(|(p, _)| p as i32).collect();
        shard.invoke_on(owner, move |s| async move {
            for p in mine {
                if let Err(e) = s.partition(&name, p).await {
                    tracing::error!(topic = %name, partition = p, error = ?e, "cannot open new partition");
                }
            }
        })
    });
    futures::future::join_all(jobs).await;
}

pub async fn handle(shard: &Rc<Shard>, req: CreateTopicsRequest, ctx: &RequestContext) -> (CreateTopicsResponse, bool) {
    let mut results = Vec::new();
    let mut any_error = false;
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        let configs: BTreeMap<String, String> =
            t.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
        // Manual placement (cluster mode): the first broker of each
        // partition is its preferred leader.
        let assignments = t
            .assignments
            .iter()
            .map(|a| spindle_replication::controller::ReplicaAssignment {
                partition_index: a.partition_index,
                broker_ids: a.broker_ids.iter().map(|b| b.0).collect(),
            })
            .collect();
        let outcome = create_checked(
            shard,
            &name,
            t.num_partitions,
            t.replication_factor,
            assignments,
            configs.clone(),
            req.validate_only,
        )
        .await;
        match outcome {
            Ok((meta, replication_factor)) => {
                if ctx.version >= 7 {
                    result = result.with_topic_id(meta.uuid());
                }
                if ctx.version >= 5 {
                    result = result.with_num_partitions(meta.partitions()).with_replication_factor(replication_factor);
                    let effective = effective_log_config(&shard.config.log_defaults, &meta.configs).unwrap_or_default();
                    let mut entries: Vec<CreatableTopicConfigs> = effective
                        .entries()
                        .into_iter()
                        .map(|(k, v)| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(&v)))
                                .with_config_source(if meta.configs.contains_key(k) { 1 } else { 5 })
                        })
                        .collect();
                    entries.push(
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes("cleanup.policy"))
                            .with_value(Some(str_bytes("delete")))
                            .with_config_source(5),
                    );
                    result = result.with_configs(Some(entries));
                }
            }
            Err((e, msg)) => {
                any_error = true;
                result = result.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg)));
                if ctx.version >= 5 {
                    result = result.with_num_partitions(-1).with_replication_factor(-1);
                }
            }
        }
        results.push(result);
    }
    (CreateTopicsResponse::default().with_topics(results), any_error)
}
