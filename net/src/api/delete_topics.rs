//! DeleteTopics: removes the topic from the registry, then each owner core
//! closes and deletes its partitions.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
use crate::shard::Shard;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteTopics, min: 1, max: 6 };

pub async fn handle(shard: &Rc<Shard>, req: DeleteTopicsRequest, ctx: &RequestContext) -> (DeleteTopicsResponse, bool) {
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
