//! Heartbeat: keeps a member's session alive; tells it when to rejoin.

use super::{ApiSpec, RequestContext};
use crate::group::on_coordinator;
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Heartbeat, min: 0, max: 4 };

pub async fn handle(shard: &Rc<Shard>, req: HeartbeatRequest, _ctx: &RequestContext) -> (HeartbeatResponse, bool) {
    let group = req.group_id.0.to_string();
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let g = group.clone();
    let code = on_coordinator(
        shard,
        &group,
        |e: ResponseError| e.code(),
        move |s| async move { s.groups.heartbeat(&g, req.generation_id, &member, instance.as_deref()) },
    )
    .await;
    (HeartbeatResponse::default().with_error_code(code), code != 0)
}
