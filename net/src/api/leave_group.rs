//! LeaveGroup: one member (v0-v2) or a batch of members (v3+).

use super::{ApiSpec, RequestContext};
use crate::group::on_coordinator;
use crate::shard::Shard;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::LeaveGroup, min: 0, max: 5 };

pub async fn handle(shard: &Rc<Shard>, req: LeaveGroupRequest, ctx: &RequestContext) -> (LeaveGroupResponse, bool) {
    let group = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let g = group.clone();
    let ms = members.clone();
    let loading = |e: ResponseError| (e.code(), vec![]);
    let (top, codes) = on_coordinator(shard, &group, loading, move |s| async move {
        let out = s.groups.leave(&g, &ms);
        // A group left empty is stored now rather than at the group
        // timer's next tick, without holding this answer (in cluster mode
        // a store waits for the ISR).
        let s2 = s.clone();
        glommio::spawn_local(async move { crate::group::store_group(&s2, &g).await }).detach();
        out
    })
    .await;
    if ctx.version >= 3 {
        let resp = LeaveGroupResponse::default().with_error_code(top).with_members(
            members
                .iter()
                .zip(codes.iter().chain(std::iter::repeat(&top)))
                .map(|((id, inst), c)| {
                    MemberResponse::default()
                        .with_member_id(super::str_bytes(id))
                        .with_group_instance_id(inst.as_deref().map(super::str_bytes))
                        .with_error_code(*c)
                })
                .collect(),
        );
        let err = top != 0 || codes.iter().any(|c| *c != 0);
        (resp, err)
    } else {
        let code = if top != 0 { top } else { codes.first().copied().unwrap_or(0) };
        (LeaveGroupResponse::default().with_error_code(code), code != 0)
    }
}
