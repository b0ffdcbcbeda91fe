//! IncrementalAlterConfigs: SET and DELETE of single topic configs over the
//! current overrides. APPEND and SUBTRACT apply only to list configs, and
//! the one list config we have (`cleanup.policy`) supports only `delete`.

use super::alter_configs::{alter_in_cluster, apply, read_only_broker};
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, ApiSpec, RequestContext};
use crate::shard::Shard;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::IncrementalAlterConfigs, min: 0, max: 1 };

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
    _ctx: &RequestContext,
) -> (IncrementalAlterConfigsResponse, bool) {
    if shard.config.is_cluster() {
        return handle_in_cluster(shard, req).await;
    }
    let mut any_error = false;
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => match shard.snapshot().topics.get(&name) {
                None => Err((ResponseError::UnknownTopicOrPartition, format!("topic {name} does not exist"))),
                Some(meta) => {
                    let mut configs = meta.configs.clone();
                    let mut bad = None;
                    for c in &r.configs {
                        let key = c.name.to_string();
                        match (c.config_operation, &c.value) {
                            (OP_SET, Some(v)) => {
                                configs.insert(key, v.to_string());
                            }
                            (OP_DELETE, _) => {
                                configs.remove(&key);
                            }
                            (OP_SET, None) => bad = Some(format!("SET of {key} without a value")),
                            (op, _) => bad = Some(format!("operation {op} is not supported for {key}")),
                        }
                    }
                    match bad {
                        Some(msg) => Err((ResponseError::InvalidConfig, msg)),
                        None => apply(shard, &name, configs, req.validate_only).await,
                    }
                }
            },
            RESOURCE_BROKER => Err(read_only_broker()),
            other => Err((ResponseError::InvalidRequest, format!("resource type {other} is not supported"))),
        };
        let mut resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err((e, msg)) = outcome {
            any_error = true;
            resp = resp.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg)));
        }
        responses.push(resp);
    }
    (IncrementalAlterConfigsResponse::default().with_responses(responses), any_error)
}

/// Cluster mode: topic resources go to the controller in one request; the
/// checks that need no metadata (broker resources, unsupported operations)
/// are answered here.
async fn handle_in_cluster(
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
) -> (IncrementalAlterConfigsResponse, bool) {
    use spindle_replication::controller::{AlterTopicConfigs, ConfigOp};
    let mut outcomes: Vec<Option<Result<(), (ResponseError, String)>>> = Vec::new();
    let mut forwarded = Vec::new();
    for r in &req.resources {
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => {
                let mut ops = Vec::new();
                let mut bad = None;
                for c in &r.configs {
                    let key = c.name.to_string();
                    match (c.config_operation, &c.value) {
                        (OP_SET, Some(v)) => ops.push((key, ConfigOp::Set(v.to_string()))),
                        (OP_DELETE, _) => ops.push((key, ConfigOp::Delete)),
                        (OP_SET, None) => bad = Some(format!("SET of {key} without a value")),
                        (op, _) => bad = Some(format!("operation {op} is not supported for {key}")),
                    }
                }
                match bad {
                    Some(msg) => Some(Err((ResponseError::InvalidConfig, msg))),
                    None => {
                        forwarded.push(AlterTopicConfigs { topic: r.resource_name.to_string(), ops });
                        None
                    }
                }
            }
            RESOURCE_BROKER => Some(Err(read_only_broker())),
            other => Some(Err((ResponseError::InvalidRequest, format!("resource type {other} is not supported")))),
        };
        outcomes.push(outcome);
    }
    let mut answered = alter_in_cluster(shard, forwarded, req.validate_only).await.into_iter();
    let mut any_error = false;
    let mut responses = Vec::new();
    for (r, outcome) in req.resources.into_iter().zip(outcomes) {
        let outcome = outcome.or_else(|| answered.next()).unwrap_or(Ok(()));
        let mut resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err((e, msg)) = outcome {
            any_error = true;
            resp = resp.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg)));
        }
        responses.push(resp);
    }
    (IncrementalAlterConfigsResponse::default().with_responses(responses), any_error)
}
