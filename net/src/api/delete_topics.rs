//! DeleteTopics: removes the topic from the registry, then each owner core
//! closes and deletes its partitions. In cluster mode the controller removes
//! the topic and the metadata applier deletes the partitions.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
use crate::shard::Shard;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteTopics, min: 1, max: 6 };

pub async fn handle(shard: &Rc<Shard>, req: DeleteTopicsRequest, ctx: &RequestContext) -> (DeleteTopicsResponse, bool) {
    if shard.config.is_cluster() {
        return handle_in_cluster(shard, req, ctx).await;
    }
    let snap = shard.snapshot();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (Some(n.0.to_string()), t.topic_id),
                None => (snap.topic_by_id(t.topic_id).map(|m| m.name.clone()), t.topic_id),
            })
            .collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut any_error = false;
    let mut responses = Vec::new();
    for (name, id) in targets {
        let v6 = ctx.version >= 6;
        let mut r = DeletableTopicResult::default();
        if v6 {
            r = r.with_topic_id(id);
        }
        let Some(name) = name else {
            any_error = true;
            responses.push(r.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        r = r.with_name(Some(TopicName(str_bytes(&name))));
        match shard.registry.delete_topic(&name) {
            Ok(meta) => {
                let jobs = (0..shard.nr_shards).map(|s| {
                    let name = name.clone();
                    let mine: Vec<i32> =
                        meta.placement.iter().enumerate().filter(|(_, &o)| o == s).map(|(p, _)| p as i32).collect();
                    shard.invoke_on(s, move |sh| async move { sh.drop_topic(&name, &mine).await })
                });
                futures::future::join_all(jobs).await;
                shard.registry.finish_delete(&name);
                tracing::info!(topic = %name, "topic deleted");
                if v6 {
                    r = r.with_topic_id(meta.uuid());
                }
            }
            Err(e) => {
                any_error = true;
                r = r.with_error_code(errors::registry_error(&e).code());
                if ctx.version >= 5 {
                    r = r.with_error_message(Some(str_bytes(&e.to_string())));
                }
            }
        }
        responses.push(r);
    }
    (DeleteTopicsResponse::default().with_responses(responses), any_error)
}

/// Cluster mode: the controller removes the topics (it resolves names and
/// ids, and answers a duplicate once); this broker answers once its own
/// metadata no longer has them. Partitions are deleted by the metadata
/// applier, not here.
async fn handle_in_cluster(
    shard: &Rc<Shard>,
    req: DeleteTopicsRequest,
    ctx: &RequestContext,
) -> (DeleteTopicsResponse, bool) {
    use super::alter_configs::{await_metadata, controller_error, METADATA_APPLY_WAIT};
    use spindle_replication::controller::{ControllerReply, ControllerRequest, DeleteTopicResult, TopicRef};
    let v6 = ctx.version >= 6;
    let refs: Vec<TopicRef> = if v6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => TopicRef::Name(n.0.to_string()),
                None => TopicRef::Id(t.topic_id),
            })
            .collect()
    } else {
        req.topic_names.iter().map(|n| TopicRef::Name(n.0.to_string())).collect()
    };
    let failed = |error: ResponseError, msg: &str| -> Vec<(DeleteTopicResult, Option<(ResponseError, String)>)> {
        refs.iter()
            .map(|t| {
                let (name, topic_id) = match t {
                    TopicRef::Name(n) => (Some(n.clone()), None),
                    TopicRef::Id(id) => (None, Some(*id)),
                };
                (DeleteTopicResult { name, topic_id, outcome: Ok(()) }, Some((error, msg.to_string())))
            })
            .collect()
    };
    let request =
        ControllerRequest::DeleteTopics(spindle_replication::controller::DeleteTopicsRequest { topics: refs.clone() });
    let answered = match crate::cluster::forward_request(shard, request, METADATA_APPLY_WAIT).await {
        Ok(ControllerReply::DeleteTopics(results)) => results
            .into_iter()
            .map(|r| {
                let error = r.outcome.as_ref().err().map(|e| (controller_error(e.code().code()), e.to_string()));
                (r, error)
            })
            .collect(),
        Ok(other) => failed(ResponseError::UnknownServerError, &format!("controller answered {other:?}")),
        Err(e) => failed(ResponseError::RequestTimedOut, &e),
    };
    let mut any_error = false;
    let mut responses = Vec::new();
    for (result, mut error) in answered {
        if error.is_none() {
            let gone = await_metadata(shard, |snap| match (&result.topic_id, &result.name) {
                (Some(id), _) => snap.topic_by_id(*id).is_none(),
                (None, Some(name)) => !snap.topics.contains_key(name),
                (None, None) => true,
            })
            .await;
            if gone {
                tracing::info!(topic = ?result.name, "topic deleted");
            } else {
                error =
                    Some((ResponseError::RequestTimedOut, "the deletion did not reach this broker's metadata".into()));
            }
        }
        let mut r = DeletableTopicResult::default();
        if v6 {
            r = r.with_topic_id(result.topic_id.unwrap_or_default());
        }
        r = r.with_name(result.name.as_deref().map(|n| TopicName(str_bytes(n))));
        if let Some((e, msg)) = error {
            any_error = true;
            r = r.with_error_code(e.code());
            if ctx.version >= 5 {
                r = r.with_error_message(Some(str_bytes(&msg)));
            }
        }
        responses.push(r);
    }
    (DeleteTopicsResponse::default().with_responses(responses), any_error)
}
