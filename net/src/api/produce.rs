//! Produce: each partition's `records` go, as the request's own bytes, to
//! the core that owns the partition. acks=0 gets no response at all.
//!
//! A connection's produce requests append in request order (Kafka clients
//! pipeline them and expect their batches at increasing offsets): each
//! waits for the one before it to hand every partition's records on
//! (see [`crate::ops::produce`]) before handing its own. Only the hand-off
//! is ordered; the writes, syncs and acknowledgements overlap.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::ops;
use crate::shard::Shard;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use spindle_engine::{Durability, Turn};
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

/// v3 (first with record batch v2) to v11. v12 changes transaction
/// semantics and v13 addresses topics by id; neither is implemented.
pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Produce, min: 3, max: 11 };

/// `None` when acks=0: the client expects no response. `order` is this
/// request's place among its connection's produce requests.
pub async fn handle(
    shard: &Rc<Shard>,
    req: ProduceRequest,
    ctx: &RequestContext,
    order: Option<Turn>,
) -> (Option<ProduceResponse>, bool) {
    if let Some(turn) = &order {
        turn.wait().await;
    }
    let durability = match req.acks {
        // On a single node, acknowledged once in the ack journal, as Kafka
        // acknowledges acks=1 once in the page cache (`crate::journal`).
        0 | 1 if shard.config.is_cluster() => Some(Durability::Written),
        0 | 1 => Some(Durability::Journaled),
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
            jobs.push(Box::pin(async move {
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
            }));
        }
    }
    // One poll of each job, in order, hands its partition's records on: a
    // job's first step (taking its place on the owner core, or in the
    // queue to it) runs before it first waits. Then the next request may
    // go. (Polled here one by one, not by `join_all`, which past 30
    // futures may return before polling them all.)
    let mut results: Vec<_> = std::iter::repeat_with(|| None).take(jobs.len()).collect();
    std::future::poll_fn(|cx| {
        for (job, out) in jobs.iter_mut().zip(results.iter_mut()) {
            if let Poll::Ready(r) = job.as_mut().poll(cx) {
                *out = Some(r);
            }
        }
        Poll::Ready(())
    })
    .await;
    drop(order);
    let waiting = jobs.iter_mut().zip(results.iter_mut()).filter(|(_, out)| out.is_none());
    futures::future::join_all(waiting.map(|(job, out)| async move { *out = Some(job.await) })).await;
    let mut results = results.into_iter().map(|r| r.expect("every job was awaited"));
    if req.acks == 0 {
        return (None, results.any(|r| r.2.error != 0));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::shard::run_with_test_shard;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    use spindle_engine::records::{encode_batch, NewRecord};
    use spindle_engine::Turnstile;

    /// A request with one batch for each of `partitions`.
    fn request(topic: &str, n: u32, partitions: i32) -> ProduceRequest {
        let value = n.to_be_bytes();
        let batch = encode_batch(&[NewRecord { key: None, value: Some(&value[..]) }], 1_000);
        let data = (0..partitions)
            .map(|p| PartitionProduceData::default().with_index(p).with_records(Some(batch.clone())))
            .collect();
        ProduceRequest::default().with_acks(1).with_timeout_ms(5_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partition_data(data)])
    }

    /// Sends 16 requests for every partition of a topic not created yet
    /// (auto-created with `partitions`) as one connection would, pipelined.
    fn pipelined_produces_that_auto_create_their_topic(partitions: i32) {
        let dir = tempfile::tempdir().unwrap();
        let cfg =
            BrokerConfig { data_dir: dir.path().to_path_buf(), num_partitions: partitions, ..BrokerConfig::default() };
        run_with_test_shard(cfg, move |shard| async move {
            let ctx = RequestContext { version: 7, correlation_id: 0, client_id: None, peer: None };
            let connection = Turnstile::new();
            let requests: Vec<_> = (0..16).map(|n| (request("auto", n, partitions), connection.take())).collect();
            let handled = requests.into_iter().map(|(req, turn)| {
                let (shard, ctx) = (&shard, &ctx);
                async move { handle(shard, req, ctx, Some(turn)).await.0.expect("acks=1 answers") }
            });
            let responses = futures::future::join_all(handled).await;
            for p in 0..partitions {
                let bases: Vec<i64> = responses
                    .iter()
                    .map(|r| {
                        let pr = &r.responses[0].partition_responses[p as usize];
                        assert_eq!((pr.index, pr.error_code), (p, 0));
                        pr.base_offset
                    })
                    .collect();
                assert_eq!(bases, (0..16).collect::<Vec<i64>>(), "partition {p}: offsets in request order");
            }
        });
    }

    // Regression: the first of a connection's pipelined produce requests to
    // a topic that did not exist yet created it and then waited for its
    // partition to open, while the next, finding the topic, went ahead and
    // appended first.
    #[test]
    fn pipelined_produces_that_auto_create_their_topic_append_in_request_order() {
        pipelined_produces_that_auto_create_their_topic(1);
    }

    // More partitions than `join_all` polls one by one.
    #[test]
    fn pipelined_produces_for_many_partitions_append_in_request_order_in_each() {
        pipelined_produces_that_auto_create_their_topic(40);
    }
}
