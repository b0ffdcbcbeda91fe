//! AlterConfigs: replaces a topic's whole set of overrides (Kafka's
//! semantics for this legacy API). Broker configs are read-only.

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
use crate::metadata::Snapshot;
use crate::shard::Shard;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::AlterConfigs, min: 0, max: 2 };

/// Stores new overrides for `topic` and pushes them to its open logs.
pub async fn apply(
    shard: &Rc<Shard>,
    topic: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    shard
        .registry
        .set_configs(topic, configs, &shard.config.log_defaults, validate_only)
        .map_err(|e| (errors::registry_error(&e), e.to_string()))?;
    if !validate_only {
        let jobs = (0..shard.nr_shards).map(|s| {
            let t = topic.to_string();
            shard.invoke_on(s, move |sh| async move { sh.reconfigure_topic(&t) })
        });
        futures::future::join_all(jobs).await;
    }
    Ok(())
}

/// Cluster mode: how long a broker waits for a change the controller made
/// (deleted topic, new partitions, configs) to reach its own metadata before
/// answering, so the client's next request to this broker sees it. Matches
/// CreateTopics' wait; Kafka uses the request's timeout, ours is fixed.
pub(super) const METADATA_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often that wait looks at the metadata snapshot again.
const METADATA_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Cluster mode: waits until this broker's metadata satisfies `applied`, or
/// [`METADATA_APPLY_WAIT`] passes; false on timeout.
pub(super) async fn await_metadata(shard: &Rc<Shard>, applied: impl Fn(&Snapshot) -> bool) -> bool {
    let deadline = std::time::Instant::now() + METADATA_APPLY_WAIT;
    while !applied(&shard.snapshot()) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(METADATA_POLL).await;
    }
    true
}

/// A controller error code as the Kafka error to answer with.
pub(super) fn controller_error(code: i16) -> ResponseError {
    ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError)
}

/// Cluster mode: forwards topic config changes to the controller and waits
/// until this broker's metadata has them. Returns one outcome per resource
/// of `resources`, in order (a topic named twice gets the controller's
/// duplicate error for each).
pub(super) async fn alter_in_cluster(
    shard: &Rc<Shard>,
    resources: Vec<spindle_replication::controller::AlterTopicConfigs>,
    validate_only: bool,
) -> Vec<Result<(), (ResponseError, String)>> {
    use spindle_replication::controller::{
        ConfigOp, ControllerReply, ControllerRequest, IncrementalAlterConfigsRequest,
    };
    if resources.is_empty() {
        return Vec::new();
    }
    let request = ControllerRequest::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: resources.clone(),
        validate_only,
    });
    let results = match crate::cluster::forward_request(shard, request, METADATA_APPLY_WAIT).await {
        Ok(ControllerReply::IncrementalAlterConfigs(results)) => results,
        Ok(other) => {
            let msg = format!("controller answered {other:?}");
            return resources.iter().map(|_| Err((ResponseError::UnknownServerError, msg.clone()))).collect();
        }
        Err(e) => return resources.iter().map(|_| Err((ResponseError::RequestTimedOut, e.clone()))).collect(),
    };
    let mut outcomes = Vec::with_capacity(resources.len());
    for resource in &resources {
        let outcome = match results.iter().find(|r| r.topic == resource.topic).map(|r| &r.outcome) {
            None => Err((ResponseError::UnknownServerError, "the controller did not answer for the topic".into())),
            Some(Err(e)) => Err((controller_error(e.code().code()), e.to_string())),
            Some(Ok(())) if validate_only => Ok(()),
            Some(Ok(())) => {
                let applied = await_metadata(shard, |snap| {
                    snap.topics.get(&resource.topic).is_some_and(|t| {
                        resource.ops.iter().all(|(key, op)| match op {
                            ConfigOp::Set(v) => t.configs.get(key) == Some(v),
                            ConfigOp::Delete => !t.configs.contains_key(key),
                        })
                    })
                })
                .await;
                if applied {
                    Ok(())
                } else {
                    Err((ResponseError::RequestTimedOut, "the new configs did not reach this broker's metadata".into()))
                }
            }
        };
        outcomes.push(outcome);
    }
    outcomes
}

pub fn read_only_broker() -> (ResponseError, String) {
    (ResponseError::InvalidRequest, "broker configs are read-only; set them in the config file or flags".into())
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
    _ctx: &RequestContext,
) -> (AlterConfigsResponse, bool) {
    if shard.config.is_cluster() {
        return handle_in_cluster(shard, req).await;
    }
    let mut any_error = false;
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => {
                let configs = r
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                apply(shard, &name, configs, req.validate_only).await
            }
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
    (AlterConfigsResponse::default().with_responses(responses), any_error)
}

/// Cluster mode: AlterConfigs replaces a topic's overrides, so it becomes an
/// IncrementalAlterConfigs with SET for every given key and DELETE for every
/// current override not given.
async fn handle_in_cluster(shard: &Rc<Shard>, req: AlterConfigsRequest) -> (AlterConfigsResponse, bool) {
    use spindle_replication::controller::{AlterTopicConfigs, ConfigOp};
    let snap = shard.snapshot();
    let mut outcomes: Vec<Option<Result<(), (ResponseError, String)>>> = Vec::new();
    let mut forwarded = Vec::new();
    for r in &req.resources {
        match r.resource_type {
            RESOURCE_TOPIC => {
                let name = r.resource_name.to_string();
                let given: BTreeMap<String, String> = r
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                let mut ops: Vec<(String, ConfigOp)> =
                    given.iter().map(|(k, v)| (k.clone(), ConfigOp::Set(v.clone()))).collect();
                if let Some(meta) = snap.topics.get(&name) {
                    ops.extend(
                        meta.configs.keys().filter(|k| !given.contains_key(*k)).map(|k| (k.clone(), ConfigOp::Delete)),
                    );
                }
                forwarded.push(AlterTopicConfigs { topic: name, ops });
                outcomes.push(None);
            }
            RESOURCE_BROKER => outcomes.push(Some(Err(read_only_broker()))),
            other => outcomes
                .push(Some(Err((ResponseError::InvalidRequest, format!("resource type {other} is not supported"))))),
        }
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
    (AlterConfigsResponse::default().with_responses(responses), any_error)
}
