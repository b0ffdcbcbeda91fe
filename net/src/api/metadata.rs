//! Metadata: the live brokers, and the topics asked for (all when null),
//! auto-creating missing ones when the client and `auto.create.topics.enable`
//! allow it. In a cluster each partition shows its leader, leader epoch,
//! replicas and ISR from this broker's metadata view; a single node leads
//! every partition at epoch 0.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::metadata::ClusterView;
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
                    Err(ResponseError::TopicAlreadyExists) => None,
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
    let (advertised, controller) = advertised_brokers(shard);
    let brokers = advertised
        .into_iter()
        .map(|b| {
            let mut m = MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port);
            if ctx.version >= 1 {
                m = m.with_rack(b.rack.as_deref().map(str_bytes));
            }
            m
        })
        .collect();
    let controller = BrokerId(controller);
    let mut resp = MetadataResponse::default().with_brokers(brokers).with_controller_id(controller).with_topics(topics);
    if ctx.version >= 2 {
        resp = resp.with_cluster_id(Some(str_bytes(&crate::server::cluster_id(shard))));
    }
    (resp, any_error)
}

/// A broker as Metadata and DescribeCluster advertise it.
pub struct AdvertisedBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The brokers to advertise, and the id to name as the controller.
///
/// In a cluster: the live (unfenced) brokers of this broker's metadata
/// view, always including this one, so a client that reached it can keep
/// talking while the others are down. The controller named is the active
/// controller when it is in that list, else this broker. Every broker
/// forwards controller requests, and a client must be able to connect to
/// the id it is given: librdkafka's admin client waits (until its request
/// times out, without refreshing metadata) for a controller missing from
/// the broker list, which is what an observer whose view has not yet
/// applied the controller's registration would otherwise name. Kafka's
/// brokers in KRaft mode name a random live broker.
pub fn advertised_brokers(shard: &Shard) -> (Vec<AdvertisedBroker>, i32) {
    let (host, port) = shard.config.advertised();
    let this = AdvertisedBroker { id: shard.config.node_id, host, port, rack: None };
    advertise(shard.snapshot().cluster.as_deref(), this)
}

fn advertise(view: Option<&ClusterView>, this: AdvertisedBroker) -> (Vec<AdvertisedBroker>, i32) {
    let Some(view) = view else {
        let id = this.id;
        return (vec![this], id);
    };
    let mut brokers: Vec<AdvertisedBroker> = view
        .brokers
        .values()
        .filter(|b| !b.fenced || b.broker_id == view.local)
        .map(|b| AdvertisedBroker {
            id: b.broker_id,
            host: b.host.clone(),
            port: i32::from(b.port),
            rack: b.rack.clone(),
        })
        .collect();
    if !view.brokers.contains_key(&view.local) {
        brokers.push(this);
    }
    let controller = match view.controller {
        Some(c) if brokers.iter().any(|b| b.id == c) => c,
        _ => view.local,
    };
    (brokers, controller)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_replication::metadata::BrokerRegistration;

    fn registered(id: i32, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            broker_id: id,
            epoch: 10 + i64::from(id),
            incarnation_id: uuid::Uuid::nil(),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            rack: None,
            fenced,
            in_controlled_shutdown: false,
        }
    }

    fn view(local: i32, brokers: &[(i32, bool)], controller: Option<i32>) -> ClusterView {
        ClusterView {
            local,
            applied_index: 1,
            cluster_id: None,
            brokers: brokers.iter().map(|&(id, fenced)| (id, registered(id, fenced))).collect(),
            controller,
        }
    }

    fn this(id: i32) -> AdvertisedBroker {
        AdvertisedBroker { id, host: "127.0.0.1".into(), port: 9000 + id, rack: None }
    }

    fn ids(brokers: &[AdvertisedBroker]) -> Vec<i32> {
        brokers.iter().map(|b| b.id).collect()
    }

    #[test]
    fn a_single_node_is_the_only_broker_and_the_controller() {
        let (brokers, controller) = advertise(None, this(7));
        assert_eq!((ids(&brokers), controller), (vec![7], 7));
    }

    #[test]
    fn the_active_controller_is_named_when_it_is_advertised() {
        let v = view(3, &[(0, false), (1, false), (3, false)], Some(1));
        let (brokers, controller) = advertise(Some(&v), this(3));
        assert_eq!((ids(&brokers), controller), (vec![0, 1, 3], 1));
        assert_eq!(brokers[1].port, 9001);
    }

    #[test]
    fn a_controller_missing_from_the_broker_list_is_replaced_by_this_broker() {
        // An observer whose view has not applied the controller's
        // registration yet: naming broker 1 would leave librdkafka's admin
        // client waiting for a broker it has no address for.
        let v = view(3, &[(0, false), (3, false), (4, false)], Some(1));
        let (brokers, controller) = advertise(Some(&v), this(3));
        assert_eq!((ids(&brokers), controller), (vec![0, 3, 4], 3));
        // A fenced controller is not advertised either.
        let v = view(0, &[(0, false), (1, true), (2, false)], Some(1));
        let (brokers, controller) = advertise(Some(&v), this(0));
        assert_eq!((ids(&brokers), controller), (vec![0, 2], 0));
        // During an election (no quorum leader known).
        let v = view(2, &[(0, false), (2, false)], None);
        assert_eq!(advertise(Some(&v), this(2)).1, 2);
    }

    #[test]
    fn this_broker_is_advertised_before_its_registration_is_applied() {
        let v = view(5, &[(0, false)], Some(0));
        let (brokers, controller) = advertise(Some(&v), this(5));
        assert_eq!((ids(&brokers), controller), (vec![0, 5], 0));
        // A fenced local broker is still advertised: the client reached it.
        let v = view(5, &[(0, false), (5, true)], Some(0));
        assert_eq!(ids(&advertise(Some(&v), this(5)).0), vec![0, 5]);
    }
}
