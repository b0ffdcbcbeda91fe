//! DescribeGroups: state, protocol and members (with assignments when Stable).

use super::{str_bytes, ApiSpec, RequestContext};
use crate::group::{on_coordinator, GroupInfo};
use crate::shard::Shard;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeGroups, min: 0, max: 5 };

pub async fn describe(shard: &Rc<Shard>, group: &str) -> Result<Option<GroupInfo>, ResponseError> {
    let g = group.to_string();
    on_coordinator(shard, group, Err, move |s| async move { Ok(s.groups.describe(&g)) }).await
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: DescribeGroupsRequest,
    ctx: &RequestContext,
) -> (DescribeGroupsResponse, bool) {
    let mut any_error = false;
    let mut out = Vec::new();
    for gid in req.groups {
        let d = DescribedGroup::default().with_group_id(gid.clone());
        out.push(match describe(shard, gid.0.as_str()).await {
            Ok(Some(info)) => d
                .with_group_state(str_bytes(info.state.name()))
                .with_protocol_type(str_bytes(&info.protocol_type))
                .with_protocol_data(str_bytes(&info.protocol))
                .with_members(
                    info.members
                        .iter()
                        .map(|m| {
                            let dm = DescribedGroupMember::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_member_metadata(m.metadata.clone())
                                .with_member_assignment(m.assignment.clone());
                            if ctx.version >= 4 {
                                dm.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                            } else {
                                dm
                            }
                        })
                        .collect(),
                ),
            // Kafka describes an unknown group as Dead, without an error.
            Ok(None) => d.with_group_state(str_bytes("Dead")),
            Err(e) => {
                any_error = true;
                d.with_error_code(e.code())
            }
        });
    }
    (DescribeGroupsResponse::default().with_groups(out), any_error)
}
