//! OffsetCommit: validated against the group's generation, appended to
//! `__consumer_offsets` with fdatasync, then acknowledged.

use super::{ApiSpec, RequestContext};
use crate::group::schema::{Key, OffsetValue};
use crate::group::{on_coordinator, write_records};
use crate::shard::{now_ms, Shard};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetCommit, min: 2, max: 9 };

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

pub async fn handle(shard: &Rc<Shard>, req: OffsetCommitRequest, ctx: &RequestContext) -> (OffsetCommitResponse, bool) {
    let group = req.group_id.0.to_string();
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let generation = req.generation_id_or_member_epoch;
    let snap = shard.snapshot();
    // (topic, partition, offset, leader epoch, metadata, pre-check error)
    let mut items = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            let meta = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let known =
                snap.topics.get(&name).is_some_and(|m| p.partition_index >= 0 && p.partition_index < m.partitions());
            let err = if !known {
                ResponseError::UnknownTopicOrPartition.code()
            } else if meta.len() > OFFSET_METADATA_MAX_BYTES {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                0
            };
            let epoch = if ctx.version >= 6 { p.committed_leader_epoch } else { -1 };
            items.push((name.clone(), p.partition_index, p.committed_offset, epoch, meta, err));
        }
    }
    let g = group.clone();
    let work = items.clone();
    let n = items.len();
    let loading = move |e: ResponseError| vec![e.code(); n];
    let codes = on_coordinator(shard, &group, loading, move |s| async move {
        if let Err(e) = s.groups.check_commit(&g, generation, &member, instance.as_deref()) {
            return work.iter().map(|w| if w.5 != 0 { w.5 } else { e.code() }).collect();
        }
        let ts = now_ms();
        let commits: Vec<((String, i32), OffsetValue)> = work
            .iter()
            .filter(|w| w.5 == 0)
            .map(|(t, p, off, epoch, meta, _)| {
                (
                    (t.clone(), *p),
                    OffsetValue { offset: *off, leader_epoch: *epoch, metadata: meta.clone(), commit_timestamp: ts },
                )
            })
            .collect();
        if commits.is_empty() {
            return work.iter().map(|w| w.5).collect::<Vec<i16>>();
        }
        let records = commits
            .iter()
            .map(|((t, p), v)| (Key::Offset { group: g.clone(), topic: t.clone(), partition: *p }, Some(v.encode())))
            .collect();
        match write_records(&s, &g, records).await {
            Ok(()) => {
                s.groups.apply_commits(&g, &commits);
                // Lag history: the log end at commit time, sampled after the
                // commit is acknowledged so it adds no latency.
                let (s2, g2) = (s.clone(), g.clone());
                glommio::spawn_local(async move {
                    let mut samples = Vec::new();
                    for ((t, p), v) in commits {
                        let log_end = crate::ops::high_watermark(&s2, &t, p).await;
                        samples
                            .push(((t, p), crate::group::lag::CommitSample { offset: v.offset, log_end, ts_ms: ts }));
                    }
                    s2.groups.record_samples(&g2, samples);
                })
                .detach();
                work.iter().map(|w| w.5).collect()
            }
            Err(e) => work.iter().map(|w| if w.5 != 0 { w.5 } else { e.code() }).collect(),
        }
    })
    .await;
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for ((name, p, ..), code) in items.iter().zip(codes.iter()) {
        let pr = OffsetCommitResponsePartition::default().with_partition_index(*p).with_error_code(*code);
        match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.partitions.push(pr),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(super::str_bytes(name)))
                    .with_partitions(vec![pr]),
            ),
        }
    }
    let err = codes.iter().any(|c| *c != 0);
    (OffsetCommitResponse::default().with_topics(topics), err)
}
