//! DescribeLogDirs: the one data directory and each partition's size.

use super::{str_bytes, ApiSpec, RequestContext};
use crate::ops;
use crate::shard::Shard;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use std::collections::BTreeMap;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeLogDirs, min: 1, max: 4 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: DescribeLogDirsRequest,
    ctx: &RequestContext,
) -> (DescribeLogDirsResponse, bool) {
    let mut all = Vec::new();
    for s in 0..shard.nr_shards {
        all.extend(ops::figures(shard, s).await);
    }
    let wanted = |topic: &str, p: i32| match &req.topics {
        None => true,
        Some(ts) => ts.iter().any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&p)),
    };
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut total = 0i64;
    for f in all {
        total += f.size_bytes as i64;
        if wanted(&f.topic, f.partition) {
            by_topic.entry(f.topic.clone()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(f.partition)
                    .with_partition_size(f.size_bytes as i64),
            );
        }
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut parts)| {
            parts.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default().with_name(TopicName(str_bytes(&name))).with_partitions(parts)
        })
        .collect();
    let dir = std::path::absolute(&shard.config.data_dir).unwrap_or_else(|_| shard.config.data_dir.clone());
    let mut result =
        DescribeLogDirsResult::default().with_log_dir(str_bytes(&dir.display().to_string())).with_topics(topics);
    if ctx.version >= 4 {
        result = result.with_total_bytes(total).with_usable_bytes(-1);
    }
    (DescribeLogDirsResponse::default().with_results(vec![result]), false)
}
