//! FindCoordinator: a group's coordinator is the leader of its
//! `__consumer_offsets` partition (this node, on a single broker).
//! Transaction coordinators do not exist here.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::group::{coordinator_core, OFFSETS_TOPIC};
use crate::shard::Shard;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::FindCoordinator, min: 0, max: 6 };

const KEY_TYPE_GROUP: i8 = 0;

/// The coordinator's node id, host and port.
fn lookup(shard: &Shard, key: &str, key_type: i8) -> Result<(i32, String, i32), (ResponseError, &'static str)> {
    if key_type != KEY_TYPE_GROUP {
        return Err((ResponseError::CoordinatorNotAvailable, "only group coordinators exist here"));
    }
    let snap = shard.snapshot();
    let Some(offsets) = snap.topics.get(OFFSETS_TOPIC) else {
        return Err((ResponseError::CoordinatorNotAvailable, "__consumer_offsets is not available"));
    };
    coordinator_core(shard, key).map_err(|e| (e, "no coordinator"))?;
    let Some(view) = &snap.cluster else {
        let (host, port) = shard.config.advertised();
        return Ok((shard.config.node_id, host, port));
    };
    let p = crate::group::schema::partition_for_group(key, crate::group::OFFSETS_TOPIC_PARTITIONS);
    let leader = offsets.registration(p).and_then(|r| r.leader);
    match leader.and_then(|l| view.brokers.get(&l)).filter(|b| !b.fenced) {
        Some(b) => Ok((b.broker_id, b.host.clone(), b.port as i32)),
        None => Err((ResponseError::CoordinatorNotAvailable, "the group's __consumer_offsets partition has no leader")),
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    req: FindCoordinatorRequest,
    ctx: &RequestContext,
) -> (FindCoordinatorResponse, bool) {
    if ctx.version >= 4 {
        let mut any_error = false;
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = Coordinator::default().with_key(k.clone());
                match lookup(shard, k.as_str(), req.key_type) {
                    Ok((node, host, port)) => {
                        c.with_node_id(BrokerId(node)).with_host(str_bytes(&host)).with_port(port)
                    }
                    Err((e, msg)) => {
                        any_error = true;
                        c.with_node_id(BrokerId(-1)).with_error_code(e.code()).with_error_message(Some(str_bytes(msg)))
                    }
                }
            })
            .collect();
        return (FindCoordinatorResponse::default().with_coordinators(coordinators), any_error);
    }
    let key_type = if ctx.version >= 1 { req.key_type } else { KEY_TYPE_GROUP };
    let resp = FindCoordinatorResponse::default();
    match lookup(shard, req.key.as_str(), key_type) {
        Ok((node, host, port)) => {
            (resp.with_node_id(BrokerId(node)).with_host(str_bytes(&host)).with_port(port), false)
        }
        Err((e, msg)) => {
            let r = resp.with_error_code(e.code()).with_node_id(BrokerId(-1));
            (if ctx.version >= 1 { r.with_error_message(Some(str_bytes(msg))) } else { r }, true)
        }
    }
}
