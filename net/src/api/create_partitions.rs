//! CreatePartitions: grows a topic; new partitions are placed on the least
//! loaded cores.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::errors;
use crate::shard::Shard;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::CreatePartitions, min: 0, max: 3 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
    _ctx: &RequestContext,
) -> (CreatePartitionsResponse, bool) {
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
