//! OffsetForLeaderEpoch: where a leader epoch ends in the leader's log
//! (the largest epoch not above the one asked, and its end offset). A
//! follower asks it after a leadership change to find where its log
//! diverged (design 7.4); clients ask it to validate their position after
//! a leader change (KIP-320).

use super::{ApiSpec, RequestContext};
use crate::ops;
use crate::shard::Shard;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use std::rc::Rc;

/// v2 brings `current_leader_epoch` (the fencing check), v3 `replica_id`,
/// v4 the flexible format.
pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetForLeaderEpoch, min: 2, max: 4 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
    _ctx: &RequestContext,
) -> (OffsetForLeaderEpochResponse, bool) {
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.topic.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let (error, epoch, end) =
                ops::epoch_end_offset(shard, &name, p.partition, p.current_leader_epoch, p.leader_epoch).await;
            any_error |= error != 0;
            partitions.push(
                EpochEndOffset::default()
                    .with_error_code(error)
                    .with_partition(p.partition)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    (OffsetForLeaderEpochResponse::default().with_topics(topics), any_error)
}
