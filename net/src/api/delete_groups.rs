//! DeleteGroups: an empty group's metadata and offsets are tombstoned.
//!
//! A tombstone write that fails puts the group back in the coordinator's
//! memory, which agrees with the log again, and is answered with the code
//! group clients handle for a failed `__consumer_offsets` write
//! (COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR, both retried by admin
//! clients): Kafka's newer coordinator rolls back and answers the same way.
//! (Its classic one answered NONE and only logged the failure, so the group
//! came back at the next load.)

use super::{ApiSpec, RequestContext};
use crate::group::{coordinator_error, on_coordinator, write_records_with};
use crate::shard::Shard;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteGroups, min: 0, max: 2 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: DeleteGroupsRequest,
    _ctx: &RequestContext,
) -> (DeleteGroupsResponse, bool) {
    let mut any_error = false;
    let mut results = Vec::new();
    for gid in req.groups_names {
        let g = gid.0.to_string();
        let code = on_coordinator(
            shard,
            &g.clone(),
            |e: ResponseError| e.code(),
            move |s| async move {
                // Deleted where the tombstones join the log's line: no
                // record of the group can land after them.
                let refused = std::cell::Cell::new(0);
                let deleted = std::cell::RefCell::new(None);
                let tombstones = || match s.groups.delete(&g) {
                    Ok((keys, group)) => {
                        *deleted.borrow_mut() = Some(group);
                        keys.into_iter().map(|k| (k, None)).collect()
                    }
                    Err(e) => {
                        refused.set(e.code());
                        Vec::new()
                    }
                };
                match write_records_with(&s, &g, tombstones).await {
                    Ok(()) => refused.get(),
                    Err(e) => {
                        tracing::warn!(group = %g, error = ?e, "writing a deleted group's tombstones failed; group kept");
                        if let Some(group) = deleted.take() {
                            s.groups.undelete(group);
                        }
                        coordinator_error(e, ResponseError::UnknownServerError).code()
                    }
                }
            },
        )
        .await;
        any_error |= code != 0;
        results.push(DeletableGroupResult::default().with_group_id(gid).with_error_code(code));
    }
    (DeleteGroupsResponse::default().with_results(results), any_error)
}
