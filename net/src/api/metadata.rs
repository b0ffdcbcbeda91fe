//! Metadata: this broker, and the topics asked for (all when null),
//! auto-creating missing ones when the client and `auto.create.topics.enable`
//! allow it. Every partition is led by this node with epoch 0.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::ops::LEADER_EPOCH;
use crate::shard::Shard;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Metadata, min: 0, max: 12 };

pub async fn handle(shard: &Rc<Shard>, req: MetadataRequest, ctx: &RequestContext) -> (MetadataResponse, bool) {
    let node = BrokerId(shard.config.node_id);
    let (host, port) = shard.config.advertised();
    let wanted: Option<Vec<String>> = req.topics.map(|ts| {
        let snap = shard.snapshot();
        ts.into_iter()
            .filter_map(|t| match t.name {
                Some(n) => Some(n.0.to_string()),
                None => snap.topic_by_id(t.topic_id).map(|m| m.name.clone()),
            })
            .collect()
    });
    // Metadata v0-v3 always auto-create; v4+ only when the client allows it.
    let allow_create = shard.config.auto_create_topics_enable && (ctx.version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    let mut any_error = false;
    let names: Vec<String> = match &wanted {
        Some(w) => w.clone(),
        None => shard.snapshot().topics.keys().cloned().collect(),
    };
    for name in names {
        let mut error = None;
        if !shard.snapshot().topics.contains_key(&name) {
            error = Some(if allow_create {
                match crate::api::create_topics::create(shard, &name, -1, Default::default()).await {
                    Ok(_) => None,
                    Err(e) if e == ResponseError::TopicAlreadyExists => None,
                    Err(e) => Some(e),
                }
            } else {
                Some(ResponseError::UnknownTopicOrPartition)
            })
            .flatten();
        }
        let snap = shard.snapshot();
        let mut t = MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(&name))))
            .with_is_internal(name == crate::group::OFFSETS_TOPIC);
        match (error, snap.topics.get(&name)) {
            (None, Some(meta)) if snap.cluster.is_some() => {
                let view = snap.cluster.as_ref().expect("checked");
                let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
                let partitions = meta
                    .registrations
                    .iter()
                    .enumerate()
                    .map(|(p, reg)| {
                        let offline: Vec<i32> = reg
                            .replicas
                            .iter()
                            .copied()
                            .filter(|b| view.brokers.get(b).is_none_or(|r| r.fenced))
                            .collect();
                        let mut mp = MetadataResponsePartition::default()
                            .with_partition_index(p as i32)
                            .with_leader_id(BrokerId(reg.leader_or_no_leader()))
                            .with_replica_nodes(ids(&reg.replicas))
                            .with_isr_nodes(ids(&reg.isr));
                        if reg.leader.is_none() {
                            any_error = true;
                            mp = mp.with_error_code(ResponseError::LeaderNotAvailable.code());
                        }
                        if ctx.version >= 5 {
                            mp = mp.with_offline_replicas(ids(&offline));
                        }
                        if ctx.version >= 7 {
                            mp = mp.with_leader_epoch(reg.leader_epoch);
                        }
                        mp
                    })
                    .collect();
                if ctx.version >= 10 {
                    t = t.with_topic_id(meta.uuid());
                }
                t = t.with_partitions(partitions);
            }
            (None, Some(_)) if shard.config.is_cluster() => {
                // A cluster member that has not applied the metadata yet
                // (just started): what it has on disk may be stale.
                any_error = true;
                t = t.with_error_code(ResponseError::LeaderNotAvailable.code());
            }
            (None, Some(meta)) => {
                let partitions = (0..meta.partitions())
                    .map(|p| {
                        let mut mp = MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(node)
                            .with_replica_nodes(vec![node])
                            .with_isr_nodes(vec![node]);
                        if ctx.version >= 7 {
                            mp = mp.with_leader_epoch(LEADER_EPOCH);
                        }
                        mp
                    })
                    .collect();
                if ctx.version >= 10 {
                    t = t.with_topic_id(meta.uuid());
                }
                t = t.with_partitions(partitions);
            }
            (e, _) => {
                any_error = true;
                t = t.with_error_code(e.unwrap_or(ResponseError::UnknownTopicOrPartition).code());
            }
        }
        topics.push(t);
    }
    let snap = shard.snapshot();
    let (brokers, controller) = match &snap.cluster {
        Some(view) => {
            // Live (unfenced) brokers; this one at least, so a client that
            // reached it can keep talking while the others are down.
            let mut brokers: Vec<MetadataResponseBroker> = view
                .brokers
                .values()
                .filter(|b| !b.fenced || b.broker_id == view.local)
                .map(|b| {
                    let mut m = MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.broker_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port as i32);
                    if ctx.version >= 1 {
                        m = m.with_rack(b.rack.as_deref().map(str_bytes));
                    }
                    m
                })
                .collect();
            if !view.brokers.contains_key(&view.local) {
                brokers.push(
                    MetadataResponseBroker::default().with_node_id(node).with_host(str_bytes(&host)).with_port(port),
                );
            }
            // While no quorum leader is known (an election), this broker:
            // it forwards controller requests, as every broker does, so an
            // admin client keeps a target instead of waiting for a
            // controller id (Kafka's brokers in KRaft mode name any live
            // broker).
            (brokers, BrokerId(view.controller.unwrap_or(view.local)))
        }
        None => {
            let broker =
                MetadataResponseBroker::default().with_node_id(node).with_host(str_bytes(&host)).with_port(port);
            (vec![broker], node)
        }
    };
    let mut resp = MetadataResponse::default().with_brokers(brokers).with_controller_id(controller).with_topics(topics);
    if ctx.version >= 2 {
        resp = resp.with_cluster_id(Some(str_bytes(&crate::server::cluster_id(shard))));
    }
    (resp, any_error)
}
