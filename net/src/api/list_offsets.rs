//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the
//! first offset at or after a timestamp; -1/-1 when none qualifies.

use super::{ApiSpec, RequestContext};
use crate::ops::{self, LEADER_EPOCH};
use crate::shard::Shard;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListOffsets, min: 1, max: 8 };

pub async fn handle(shard: &Rc<Shard>, req: ListOffsetsRequest, ctx: &RequestContext) -> (ListOffsetsResponse, bool) {
    let mut any_error = false;
    let mut topics = Vec::new();
    let replica = req.replica_id.0 >= 0;
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partitions {
            let current = if ctx.version >= 4 { p.current_leader_epoch } else { -1 };
            let (error, ts, offset) =
                ops::list_offset(shard, &name, p.partition_index, p.timestamp, current, replica).await;
            // The leader epoch now (cluster mode; 0 on a single node).
            let epoch = shard
                .snapshot()
                .topics
                .get(&name)
                .and_then(|m| m.registration(p.partition_index).map(|r| r.leader_epoch))
                .unwrap_or(LEADER_EPOCH);
            any_error |= error != 0;
            let mut r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(error)
                .with_timestamp(ts)
                .with_offset(offset);
            if ctx.version >= 4 {
                r = r.with_leader_epoch(if error == 0 { epoch } else { -1 });
            }
            parts.push(r);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(parts));
    }
    (ListOffsetsResponse::default().with_topics(topics), any_error)
}
