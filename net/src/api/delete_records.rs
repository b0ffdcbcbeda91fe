//! DeleteRecords: moves each partition's log start offset forward.

use super::{ApiSpec, RequestContext};
use crate::ops;
use crate::shard::Shard;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteRecords, min: 0, max: 2 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: DeleteRecordsRequest,
    _ctx: &RequestContext,
) -> (DeleteRecordsResponse, bool) {
    let mut any_error = false;
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partitions {
            let (error, low) = ops::delete_records(shard, &name, p.partition_index, p.offset).await;
            any_error |= error != 0;
            parts.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(low)
                    .with_error_code(error),
            );
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(parts));
    }
    (DeleteRecordsResponse::default().with_topics(topics), any_error)
}
