//! AlterConfigs: replaces a topic's whole set of overrides (Kafka's
//! semantics for this legacy API). Broker configs are read-only.

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
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

pub fn read_only_broker() -> (ResponseError, String) {
    (ResponseError::InvalidRequest, "broker configs are read-only; set them in the config file or flags".into())
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
    _ctx: &RequestContext,
) -> (AlterConfigsResponse, bool) {
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
