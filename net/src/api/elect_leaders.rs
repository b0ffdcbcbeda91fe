//! ElectLeaders: on-demand leader elections (Kafka's
//! `kafka-leader-election.sh`, `Admin.electLeaders`), decided by the active
//! controller (`spindle_replication::controller::election::elect_leaders`).
//!
//! PREFERRED moves each partition's leadership to its first replica when
//! that replica is in the ISR and live: what a broker's return needs before
//! the automatic rebalance (every `leader.imbalance.check.interval.seconds`)
//! comes round. UNCLEAN gives a leaderless partition a leader, but only from
//! its ISR: Spindle never elects a replica that may lack acknowledged
//! records, so where Kafka would, the answer is
//! ELIGIBLE_LEADERS_NOT_AVAILABLE.
//!
//! A null partition list asks for every partition; the answer then leaves
//! out those that needed no election, as Kafka's does. A single node leads
//! every partition it has, so every election there is ELECTION_NOT_NEEDED.

use super::alter_configs::{await_metadata, METADATA_APPLY_WAIT};
use super::{ApiSpec, RequestContext};
use crate::cluster::controller_api::{elect_leaders_request, elect_leaders_response, election_type};
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::ResponseError;
use spindle_replication::controller::{
    ControllerReply, ControllerRequest, ElectLeaderError, ElectLeadersRequest as Request, ElectLeadersTopicResult,
    ElectionType,
};
use std::rc::Rc;

/// v0 has no election type (preferred); v1 adds it and a response-level
/// error code; v2 is v1 in the flexible encoding.
pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ElectLeaders, min: 0, max: 2 };

pub async fn handle(shard: &Rc<Shard>, req: ElectLeadersRequest, ctx: &RequestContext) -> (ElectLeadersResponse, bool) {
    // v0 has no type: preferred. A type Kafka does not define (v1+) refuses
    // the request, as Kafka's ElectionType.valueOf does.
    let election = if ctx.version == 0 { Some(ElectionType::Preferred) } else { election_type(req.election_type) };
    let request = elect_leaders_request(election.unwrap_or(ElectionType::Preferred), req.topic_partitions);
    let outcome = match election {
        Some(_) => run(shard, request.clone()).await.map_err(|e| (e, e.to_string())),
        None => Err((ResponseError::InvalidRequest, format!("Unknown election type {}", req.election_type))),
    };
    match outcome {
        Ok(results) => {
            let any_error = results.iter().any(|t| t.partitions.iter().any(|(_, outcome)| outcome.is_err()));
            (elect_leaders_response(&results), any_error)
        }
        Err((error, message)) => {
            // Every partition asked for carries the error (v0 has no
            // response-level code), as Kafka's error response does.
            let mut resp = elect_leaders_response(&asked(&request));
            for topic in &mut resp.replica_election_results {
                for p in &mut topic.partition_result {
                    p.error_code = error.code();
                    p.error_message = Some(super::str_bytes(&message));
                }
            }
            if ctx.version >= 1 {
                resp.error_code = error.code();
            }
            (resp, true)
        }
    }
}

/// Runs the elections `request` asks for (the Kafka API and the admin
/// listener's `POST /v1/cluster/elect-leaders`). `Err` when no controller
/// answered: nothing is known to have been elected.
pub(crate) async fn run(shard: &Rc<Shard>, request: Request) -> Result<Vec<ElectLeadersTopicResult>, ResponseError> {
    if shard.config.is_cluster() {
        in_cluster(shard, request).await
    } else {
        Ok(single_node(shard, &request))
    }
}

/// Every partition asked for, as a result (the outcome is overwritten).
fn asked(request: &Request) -> Vec<ElectLeadersTopicResult> {
    let topics = request.topics.as_deref().unwrap_or_default();
    topics
        .iter()
        .map(|t| ElectLeadersTopicResult {
            name: t.name.clone(),
            partitions: t.partitions.iter().map(|&p| (p, Ok(()))).collect(),
        })
        .collect()
}

/// Cluster mode: the controller elects; the answer waits (at most
/// [`METADATA_APPLY_WAIT`], and succeeds regardless) until this broker's
/// metadata shows each elected partition under a newer leader epoch, so a
/// Metadata request right after names the new leaders.
async fn in_cluster(shard: &Rc<Shard>, request: Request) -> Result<Vec<ElectLeadersTopicResult>, ResponseError> {
    let before = shard.snapshot();
    let results =
        match crate::cluster::forward_request(shard, ControllerRequest::ElectLeaders(request), METADATA_APPLY_WAIT)
            .await
        {
            Ok(ControllerReply::ElectLeaders(results)) => results,
            Ok(other) => {
                tracing::error!(reply = ?other, "controller answered ElectLeaders with another kind of reply");
                return Err(ResponseError::UnknownServerError);
            }
            Err(e) => {
                tracing::warn!(error = %e, "ElectLeaders not served by a controller");
                return Err(ResponseError::RequestTimedOut);
            }
        };
    let elected: Vec<(String, i32)> = results
        .iter()
        .flat_map(|t| t.partitions.iter().filter(|(_, o)| o.is_ok()).map(|(p, _)| (t.name.clone(), *p)))
        .collect();
    let epoch = |snap: &crate::metadata::Snapshot, name: &str, p: i32| {
        snap.topics.get(name).and_then(|t| t.registration(p)).map(|r| r.leader_epoch)
    };
    await_metadata(shard, |snap| {
        elected.iter().all(|(name, p)| match (epoch(&before, name, *p), epoch(snap, name, *p)) {
            (Some(old), Some(new)) => new > old,
            // Not in this broker's metadata before (or any more): nothing to wait for.
            _ => true,
        })
    })
    .await;
    Ok(results)
}

/// A single node leads each of its partitions: nothing to elect.
fn single_node(shard: &Rc<Shard>, request: &Request) -> Vec<ElectLeadersTopicResult> {
    let snap = shard.snapshot();
    match &request.topics {
        // Every topic, with the partitions that needed an election: none.
        None => snap
            .topics
            .keys()
            .map(|name| ElectLeadersTopicResult { name: name.clone(), partitions: Vec::new() })
            .collect(),
        Some(topics) => topics
            .iter()
            .map(|t| ElectLeadersTopicResult {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let outcome = match snap.topics.get(&t.name) {
                            None => ElectLeaderError::UnknownTopic(t.name.clone()),
                            Some(meta) if !(0..meta.partitions()).contains(&partition) => {
                                ElectLeaderError::UnknownPartition { topic: t.name.clone(), partition }
                            }
                            Some(_) => ElectLeaderError::ElectionNotNeeded,
                        };
                        (partition, Err(outcome))
                    })
                    .collect(),
            })
            .collect(),
    }
}
