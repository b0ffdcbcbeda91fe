//! Produce: each partition's `records` go, as the request's own bytes, to
//! the core that owns the partition. acks=0 gets no response at all.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::ops;
use crate::shard::Shard;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use spindle_engine::Durability;
use std::rc::Rc;
use std::time::Duration;

/// v3 (first with record batch v2) to v11. v12 changes transaction
/// semantics and v13 addresses topics by id; neither is implemented.
pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Produce, min: 3, max: 11 };

/// `None` when acks=0: the client expects no response.
pub async fn handle(shard: &Rc<Shard>, req: ProduceRequest, ctx: &RequestContext) -> (Option<ProduceResponse>, bool) {
    let durability = match req.acks {
        0 | 1 => Some(Durability::Written),
        -1 => Some(if shard.config.acks_all_fsync { Durability::Durable } else { Durability::Written }),
        _ => None,
    };
    // acks=all waits for the ISR at most the request's timeout.
    let acks_all = (req.acks == -1).then(|| Duration::from_millis(req.timeout_ms.max(0) as u64));
    let mut any_error = false;
    let mut jobs = Vec::new();
    for topic in &req.topic_data {
        let name = topic.name.0.to_string();
        if durability.is_some()
            && shard.config.auto_create_topics_enable
            && !shard.snapshot().topics.contains_key(&name)
        {
            let _ = crate::api::create_topics::create(shard, &name, -1, Default::default()).await;
        }
        let internal = name == crate::group::OFFSETS_TOPIC;
        for p in &topic.partition_data {
            let name = name.clone();
            let records = p.records.clone().unwrap_or_default();
            let index = p.index;
            jobs.push(async move {
                let out = match durability {
                    // Only the coordinator writes its internal topic.
                    Some(_) if internal => ops::ProduceOutcome::failed(
                        ResponseError::InvalidTopicException,
                        Some("cannot produce to an internal topic".into()),
                    ),
                    Some(d) => ops::produce(shard, &name, index, records, d, acks_all).await,
                    None => ops::ProduceOutcome::failed(ResponseError::InvalidRequiredAcks, None),
                };
                (name, index, out)
            });
        }
    }
    let results = futures::future::join_all(jobs).await;
    if req.acks == 0 {
        return (None, results.iter().any(|r| r.2.error != 0));
    }
    let mut responses: Vec<TopicProduceResponse> = Vec::new();
    for (name, index, out) in results {
        any_error |= out.error != 0;
        let mut pr = PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(out.error)
            .with_base_offset(out.base_offset)
            .with_log_append_time_ms(-1);
        if ctx.version >= 5 {
            pr = pr.with_log_start_offset(out.log_start_offset);
        }
        if ctx.version >= 8 {
            pr = pr.with_error_message(out.message.map(|m| str_bytes(&m)));
        }
        match responses.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.partition_responses.push(pr),
            None => responses.push(
                TopicProduceResponse::default().with_name(str_bytes(&name).into()).with_partition_responses(vec![pr]),
            ),
        }
    }
    (Some(ProduceResponse::default().with_responses(responses)), any_error)
}
