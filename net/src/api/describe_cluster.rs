//! DescribeCluster: this one broker, which is also the controller.

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
    let (host, port) = shard.config.advertised();
    let node = BrokerId(shard.config.node_id);
    let broker = DescribeClusterBroker::default().with_broker_id(node).with_host(str_bytes(&host)).with_port(port);
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&crate::server::cluster_id(shard)))
        .with_controller_id(node)
        .with_brokers(vec![broker]);
    if ctx.version >= 1 {
        resp = resp.with_endpoint_type(1);
    }
    (resp, false)
}
