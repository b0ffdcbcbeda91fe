//! DescribeCluster: the cluster id, the brokers Metadata advertises and the
//! controller it names (a single node is its own controller).

use super::metadata::advertised_brokers;
use super::{str_bytes, ApiSpec, RequestContext};
use crate::shard::Shard;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeCluster, min: 0, max: 1 };

pub async fn handle(
    shard: &Rc<Shard>,
    _req: DescribeClusterRequest,
    ctx: &RequestContext,
) -> (DescribeClusterResponse, bool) {
    let (advertised, controller) = advertised_brokers(shard);
    let brokers = advertised
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&crate::server::cluster_id(shard)))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers);
    if ctx.version >= 1 {
        resp = resp.with_endpoint_type(1);
    }
    (resp, false)
}
