//! OffsetFetch: committed offsets of one group (v1-v7) or several (v8+).
//! A group or partition with no commit answers offset -1 with no error, as
//! Kafka does (clients rely on it).

use super::{str_bytes, ApiSpec, RequestContext};
use crate::group::on_coordinator;
use crate::shard::Shard;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetFetch, min: 1, max: 9 };

/// `(topic, partition, offset, leader epoch, metadata)`.
type Row = (String, i32, i64, i32, String);

/// Offsets of `group` for `wanted` topics/partitions (`None`: everything
/// committed).
async fn fetch(shard: &Rc<Shard>, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> Result<Vec<Row>, i16> {
    let g = group.to_string();
    on_coordinator(
        shard,
        group,
        |e: ResponseError| Err(e.code()),
        move |s| async move {
            let offsets = s.groups.offsets(&g);
            Ok(match wanted {
                None => offsets.into_iter().map(|((t, p), v)| (t, p, v.offset, v.leader_epoch, v.metadata)).collect(),
                Some(w) => w
                    .into_iter()
                    .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                    .map(|(t, p)| match offsets.get(&(t.clone(), p)) {
                        Some(v) => (t, p, v.offset, v.leader_epoch, v.metadata.clone()),
                        None => (t, p, -1, -1, String::new()),
                    })
                    .collect(),
            })
        },
    )
    .await
}

fn by_topic(rows: Vec<Row>) -> BTreeMap<String, Vec<Row>> {
    let mut m: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        m.entry(r.0.clone()).or_default().push(r);
    }
    m
}

pub async fn handle(shard: &Rc<Shard>, req: OffsetFetchRequest, ctx: &RequestContext) -> (OffsetFetchResponse, bool) {
    if ctx.version >= 8 {
        let mut groups = Vec::new();
        let mut any_error = false;
        for g in req.groups {
            let wanted =
                g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let r = fetch(shard, g.group_id.0.as_str(), wanted).await;
            let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match r {
                Ok(rows) => {
                    out = out.with_topics(
                        by_topic(rows)
                            .into_iter()
                            .map(|(t, rows)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(&t)))
                                    .with_partitions(
                                        rows.into_iter()
                                            .map(|(_, p, o, e, m)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(str_bytes(&m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
                }
                Err(code) => {
                    any_error = true;
                    out = out.with_error_code(code);
                }
            }
            groups.push(out);
        }
        return (OffsetFetchResponse::default().with_groups(groups), any_error);
    }
    let group: GroupId = req.group_id.clone();
    let wanted = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    match fetch(shard, group.0.as_str(), wanted).await {
        Ok(rows) => {
            let topics = by_topic(rows)
                .into_iter()
                .map(|(t, rows)| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(&t))).with_partitions(
                        rows.into_iter()
                            .map(|(_, p, o, e, m)| {
                                let r = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_metadata(Some(str_bytes(&m)));
                                if ctx.version >= 5 {
                                    r.with_committed_leader_epoch(e)
                                } else {
                                    r
                                }
                            })
                            .collect(),
                    )
                })
                .collect();
            (OffsetFetchResponse::default().with_topics(topics), false)
        }
        Err(code) => {
            let r = OffsetFetchResponse::default();
            (if ctx.version >= 2 { r.with_error_code(code) } else { r }, true)
        }
    }
}
