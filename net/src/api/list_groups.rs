//! ListGroups: every group on every core, filtered by state (v4+).

use super::{str_bytes, ApiSpec, RequestContext};
use crate::shard::Shard;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListGroups, min: 0, max: 4 };

pub async fn all_groups(shard: &Rc<Shard>) -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    for core in 0..shard.nr_shards {
        let list = shard
            .invoke_on(core, |s| async move {
                s.groups.list().into_iter().map(|(g, t, st)| (g, t, st.name())).collect::<Vec<_>>()
            })
            .await;
        out.extend(list);
    }
    out.sort();
    out
}

pub async fn handle(shard: &Rc<Shard>, req: ListGroupsRequest, ctx: &RequestContext) -> (ListGroupsResponse, bool) {
    let groups = all_groups(shard)
        .await
        .into_iter()
        .filter(|(_, _, st)| {
            req.states_filter.is_empty() || req.states_filter.iter().any(|f| f.as_str().eq_ignore_ascii_case(st))
        })
        .map(|(g, t, st)| {
            let l = ListedGroup::default().with_group_id(GroupId(str_bytes(&g))).with_protocol_type(str_bytes(&t));
            if ctx.version >= 4 {
                l.with_group_state(str_bytes(st))
            } else {
                l
            }
        })
        .collect();
    (ListGroupsResponse::default().with_groups(groups), false)
}
