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
    create_checked(shard, name, partitions, configs, false).await.map_err(|(e, _)| e)
}

async fn create_checked(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicMeta, (ResponseError, String)> {
    let partitions = if partitions == -1 { shard.config.num_partitions } else { partitions };
    let meta = shard
        .registry
        .create_topic(name, partitions, configs, &shard.config.log_defaults, shard.nr_shards, validate_only)
        .map_err(|e| (errors::registry_error(&e), e.to_string()))?;
    if !validate_only {
        open_partitions(shard, &meta).await;
        tracing::info!(topic = name, partitions, "topic created");
    }
    Ok(meta)
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
        let outcome = if t.replication_factor != -1 && t.replication_factor != 1 {
            Err((
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {} is larger than the 1 available broker", t.replication_factor),
            ))
        } else if !t.assignments.is_empty() {
            Err((ResponseError::InvalidRequest, "manual replica assignment is not supported".to_string()))
        } else {
            create_checked(shard, &name, t.num_partitions, configs.clone(), req.validate_only).await
        };
        match outcome {
            Ok(meta) => {
                if ctx.version >= 7 {
                    result = result.with_topic_id(meta.uuid());
                }
                if ctx.version >= 5 {
                    result = result.with_num_partitions(meta.partitions()).with_replication_factor(1);
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
