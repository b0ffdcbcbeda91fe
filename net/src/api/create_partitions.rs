//! CreatePartitions: grows a topic; new partitions are placed on the least
//! loaded cores.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
use crate::shard::Shard;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::CreatePartitions, min: 0, max: 3 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
    _ctx: &RequestContext,
) -> (CreatePartitionsResponse, bool) {
    if shard.config.is_cluster() {
        return handle_in_cluster(shard, req).await;
    }
    let mut any_error = false;
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            any_error = true;
            r = r
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes("manual replica assignment is not supported")));
        } else {
            match shard.registry.add_partitions(&name, t.count, shard.nr_shards, req.validate_only) {
                Ok(meta) => {
                    if !req.validate_only {
                        crate::api::create_topics::open_partitions(shard, &meta).await;
                    }
                }
                Err(e) => {
                    any_error = true;
                    r = r
                        .with_error_code(errors::registry_error(&e).code())
                        .with_error_message(Some(str_bytes(&e.to_string())));
                }
            }
        }
        results.push(r);
    }
    (CreatePartitionsResponse::default().with_results(results), any_error)
}

/// Cluster mode: the controller places the new partitions (manual
/// assignments included); this broker answers once its own metadata has
/// them. The controller answers a duplicated topic once, so the results
/// follow its answer rather than the request.
async fn handle_in_cluster(shard: &Rc<Shard>, req: CreatePartitionsRequest) -> (CreatePartitionsResponse, bool) {
    use super::alter_configs::{await_metadata, controller_error, METADATA_APPLY_WAIT};
    use spindle_replication::controller::{ControllerReply, ControllerRequest, CreatePartitionsTopic};
    let validate_only = req.validate_only;
    let topics: Vec<CreatePartitionsTopic> = req
        .topics
        .iter()
        .map(|t| CreatePartitionsTopic {
            name: t.name.0.to_string(),
            count: t.count,
            assignments: t
                .assignments
                .as_ref()
                .map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect()),
        })
        .collect();
    let counts: Vec<(String, i32)> = topics.iter().map(|t| (t.name.clone(), t.count)).collect();
    let request = ControllerRequest::CreatePartitions(spindle_replication::controller::CreatePartitionsRequest {
        topics,
        validate_only,
    });
    let answered = match crate::cluster::forward_request(shard, request, METADATA_APPLY_WAIT).await {
        Ok(ControllerReply::CreatePartitions(results)) => results
            .into_iter()
            .map(|r| (r.name, r.outcome.map_err(|e| (controller_error(e.code().code()), e.to_string()))))
            .collect(),
        Ok(other) => {
            let msg = format!("controller answered {other:?}");
            counts.iter().map(|(n, _)| (n.clone(), Err((ResponseError::UnknownServerError, msg.clone())))).collect()
        }
        Err(e) => counts.iter().map(|(n, _)| (n.clone(), Err((ResponseError::RequestTimedOut, e.clone())))).collect(),
    };
    let answered: Vec<(String, Result<(), (ResponseError, String)>)> = answered;
    let mut any_error = false;
    let mut results = Vec::new();
    for (name, mut outcome) in answered {
        if outcome.is_ok() && !validate_only {
            let count = counts.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c);
            let grown =
                await_metadata(shard, |snap| snap.topics.get(&name).is_some_and(|t| t.partitions() >= count)).await;
            if !grown {
                outcome = Err((
                    ResponseError::RequestTimedOut,
                    "the new partitions did not reach this broker's metadata".into(),
                ));
            }
        }
        let mut r = CreatePartitionsTopicResult::default().with_name(TopicName(str_bytes(&name)));
        if let Err((e, msg)) = outcome {
            any_error = true;
            r = r.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg)));
        }
        results.push(r);
    }
    (CreatePartitionsResponse::default().with_results(results), any_error)
}
