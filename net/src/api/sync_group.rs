//! SyncGroup: the leader hands in the assignment; everyone gets theirs.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::group::{on_coordinator, SyncOutcome};
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::SyncGroup, min: 0, max: 5 };

pub async fn handle(shard: &Rc<Shard>, req: SyncGroupRequest, ctx: &RequestContext) -> (SyncGroupResponse, bool) {
    let group = req.group_id.0.to_string();
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let generation = req.generation_id;
    let assignments: Vec<_> = req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let loading = |e: ResponseError| SyncOutcome { error: e.code(), ..Default::default() };
    let g = group.clone();
    let mut out = on_coordinator(shard, &group, loading, move |s| async move {
        crate::group::sync_and_store(&s, &g, generation, (&member, instance.as_deref()), assignments).await
    })
    .await;
    if out.error == 0 && ctx.version >= 5 {
        let mismatch = |asked: &Option<kafka_protocol::protocol::StrBytes>, have: &Option<String>| {
            asked.as_ref().is_some_and(|a| Some(a.as_str()) != have.as_deref())
        };
        if mismatch(&req.protocol_type, &out.protocol_type) || mismatch(&req.protocol_name, &out.protocol) {
            out = SyncOutcome { error: ResponseError::InconsistentGroupProtocol.code(), ..Default::default() };
        }
    }
    let mut resp = SyncGroupResponse::default().with_error_code(out.error).with_assignment(out.assignment);
    if ctx.version >= 5 {
        resp = resp
            .with_protocol_type(out.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(out.protocol.as_deref().map(str_bytes));
    }
    (resp, out.error != 0)
}
