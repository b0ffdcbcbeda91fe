//! OffsetDelete: removes a group's committed offsets for some partitions.
//! Refused with GROUP_SUBSCRIBED_TO_TOPIC while the group has members.

use super::{ApiSpec, RequestContext};
use crate::group::schema::Key;
use crate::group::{on_coordinator, write_records};
use crate::shard::Shard;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetDelete, min: 0, max: 0 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: OffsetDeleteRequest,
    _ctx: &RequestContext,
) -> (OffsetDeleteResponse, bool) {
    let group = req.group_id.0.to_string();
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index)))
        .collect();
    let g = group.clone();
    let ps = parts.clone();
    let (top, per) = on_coordinator(
        shard,
        &group,
        |e: ResponseError| (e.code(), 0),
        move |s| async move {
            if !s.groups.group_exists(&g) {
                return (ResponseError::GroupIdNotFound.code(), 0);
            }
            if s.groups.has_members(&g) {
                return (0, ResponseError::GroupSubscribedToTopic.code());
            }
            let keys = ps
                .iter()
                .map(|(t, p)| (Key::Offset { group: g.clone(), topic: t.clone(), partition: *p }, None))
                .collect();
            match write_records(&s, &g, keys).await {
                Ok(()) => {
                    s.groups.forget_offsets(&g, &ps);
                    (0, 0)
                }
                Err(e) => (e.code(), 0),
            }
        },
    )
    .await;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(per)
                    })
                    .collect(),
            )
        })
        .collect();
    (OffsetDeleteResponse::default().with_error_code(top).with_topics(topics), top != 0 || per != 0)
}
