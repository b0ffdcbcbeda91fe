//! JoinGroup: answered when the rebalance's join phase completes.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::group::{on_coordinator, JoinArgs, JoinOutcome};
use crate::shard::Shard;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::JoinGroup, min: 0, max: 9 };

pub async fn handle(shard: &Rc<Shard>, req: JoinGroupRequest, ctx: &RequestContext) -> (JoinGroupResponse, bool) {
    let group = req.group_id.0.to_string();
    let args = JoinArgs {
        group: group.clone(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: ctx.version >= 4,
        supports_skip_assignment: ctx.version >= 9,
        max_size: shard.config.group_max_size as usize,
    };
    let loading = |e: ResponseError| JoinOutcome { error: e.code(), generation: -1, ..Default::default() };
    let out = on_coordinator(shard, &group, loading, move |s| async move {
        let delay = std::time::Duration::from_millis(s.config.group_initial_rebalance_delay_ms);
        crate::group::join_and_store(&s, delay, args).await
    })
    .await;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(out.error)
        .with_generation_id(out.generation)
        .with_protocol_name(out.protocol.as_deref().map(str_bytes))
        .with_leader(str_bytes(&out.leader))
        .with_member_id(str_bytes(&out.member_id))
        .with_members(
            out.members
                .iter()
                .map(|(id, inst, meta)| {
                    let m =
                        JoinGroupResponseMember::default().with_member_id(str_bytes(id)).with_metadata(meta.clone());
                    if ctx.version >= 5 {
                        m.with_group_instance_id(inst.as_deref().map(str_bytes))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    if ctx.version >= 9 {
        resp = resp.with_skip_assignment(out.skip_assignment);
    }
    if ctx.version >= 7 {
        resp = resp.with_protocol_type(out.protocol_type.as_deref().map(str_bytes));
    }
    if ctx.version < 7 && resp.protocol_name.is_none() {
        // Before v7 the protocol name is not nullable.
        resp = resp.with_protocol_name(Some(str_bytes("")));
    }
    (resp, out.error != 0)
}
