//! DescribeConfigs for topics (effective values, with their source) and the
//! broker (read-only).

use super::{str_bytes, ApiSpec, RequestContext};
use crate::metadata::effective_log_config;
use crate::shard::Shard;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeConfigs, min: 1, max: 4 };

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "max.message.bytes" => TYPE_INT,
        "segment.bytes" => TYPE_INT,
        n if n.ends_with(".ms") || n.ends_with(".bytes") || n.ends_with(".messages") => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

fn entry(name: &str, value: String, source: i8, read_only: bool, version: i16) -> DescribeConfigsResourceResult {
    let e = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(&value)))
        .with_read_only(read_only)
        .with_config_source(source);
    if version >= 3 {
        e.with_config_type(config_type(name))
    } else {
        e
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: DescribeConfigsRequest,
    ctx: &RequestContext,
) -> (DescribeConfigsResponse, bool) {
    let snap = shard.snapshot();
    let mut any_error = false;
    let mut results = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let mut res = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let entries: Result<Vec<_>, (ResponseError, String)> = match r.resource_type {
            RESOURCE_TOPIC => match snap.topics.get(&name) {
                Some(meta) => {
                    let cfg = effective_log_config(&shard.config.log_defaults, &meta.configs).unwrap_or_default();
                    let mut v: Vec<_> = cfg
                        .entries()
                        .into_iter()
                        .map(|(k, val)| {
                            entry(
                                k,
                                val,
                                if meta.configs.contains_key(k) { SOURCE_TOPIC } else { SOURCE_DEFAULT },
                                false,
                                ctx.version,
                            )
                        })
                        .collect();
                    let cleanup = meta.configs.get("cleanup.policy").cloned().unwrap_or_else(|| "delete".into());
                    let src = if meta.configs.contains_key("cleanup.policy") { SOURCE_TOPIC } else { SOURCE_DEFAULT };
                    v.push(entry("cleanup.policy", cleanup, src, false, ctx.version));
                    // Replication settings, read by the leader.
                    let defaults = [
                        ("min.insync.replicas", shard.config.min_insync_replicas.to_string()),
                        ("unclean.leader.election.enable", "false".to_string()),
                    ];
                    for (k, default) in defaults {
                        let (val, src) = match meta.configs.get(k) {
                            Some(v) => (v.clone(), SOURCE_TOPIC),
                            None => (default, SOURCE_DEFAULT),
                        };
                        v.push(entry(k, val, src, false, ctx.version));
                    }
                    Ok(v)
                }
                None => Err((ResponseError::UnknownTopicOrPartition, format!("topic {name} does not exist"))),
            },
            RESOURCE_BROKER => {
                if name.is_empty() || name == shard.config.node_id.to_string() {
                    Ok(shard
                        .config
                        .broker_entries()
                        .into_iter()
                        .map(|(k, v)| entry(k, v, SOURCE_STATIC_BROKER, true, ctx.version))
                        .collect())
                } else {
                    Err((ResponseError::InvalidRequest, format!("broker {name} is not this broker")))
                }
            }
            other => Err((ResponseError::InvalidRequest, format!("resource type {other} is not supported"))),
        };
        match entries {
            Ok(mut v) => {
                if let Some(keys) = &r.configuration_keys {
                    v.retain(|e| keys.iter().any(|k| k.as_str() == e.name.as_str()));
                }
                res = res.with_configs(v);
            }
            Err((e, msg)) => {
                any_error = true;
                res = res.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg)));
            }
        }
        results.push(res);
    }
    (DescribeConfigsResponse::default().with_results(results), any_error)
}
