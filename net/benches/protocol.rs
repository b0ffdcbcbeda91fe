//! Request decode and response encode on the hot paths: Produce decode (the
//! records stay a slice), Fetch response encode as segments (zero-copy) and,
//! for comparison, through `kafka-protocol` (one copy), Metadata encode.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use spindle_engine::batch::validate_one;
use spindle_engine::records::{encode_batch, NewRecord};
use spindle_engine::BatchView;
use spindle_net::api::fetch_encode::{self, PartitionOut, TopicOut};
use spindle_net::api::{decode, encode_response};
use std::time::Duration;

fn batch(records: usize, value: usize) -> Bytes {
    let v = vec![7u8; value];
    let recs: Vec<NewRecord> = (0..records).map(|_| NewRecord { key: None, value: Some(&v) }).collect();
    encode_batch(&recs, 1)
}

fn views(n: usize) -> Vec<BatchView> {
    (0..n)
        .map(|i| {
            let mut v = validate_one(batch(64, 1024)).unwrap();
            v.header.assign(i as i64 * 64, 0);
            BatchView { header: v.header, payload: v.payload }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("protocol");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);

    // Produce v9 request with one 64 KiB batch for 8 partitions.
    let req =
        ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..8)
                    .map(|p| PartitionProduceData::default().with_index(p).with_records(Some(batch(64, 1024))))
                    .collect(),
            )]);
    for v in [7i16, 9] {
        let mut buf = BytesMut::new();
        req.encode(&mut buf, v).unwrap();
        let body = buf.freeze();
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("produce_decode", v), &body, |b, body| {
            b.iter(|| {
                let r: ProduceRequest = decode(&mut body.clone(), v, "bench").unwrap();
                r
            })
        });
    }

    // Fetch response of 16 batches of 64 KiB.
    let vs = views(16);
    let bytes: usize = vs.iter().map(|v| v.kafka_len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    for v in [11i16, 16] {
        g.bench_function(BenchmarkId::new("fetch_encode_segments", v), |b| {
            b.iter(|| {
                let topics = vec![TopicOut {
                    name: "bench".into(),
                    id: uuid::Uuid::nil(),
                    partitions: vec![PartitionOut {
                        partition: 0,
                        error: 0,
                        high_watermark: 1,
                        log_start_offset: 0,
                        batches: vs.clone(),
                        diverging_epoch: None,
                        current_leader: None,
                    }],
                }];
                fetch_encode::encode(v, 1, 0, 0, &topics)
            })
        });
        g.bench_function(BenchmarkId::new("fetch_encode_kafka_protocol_copy", v), |b| {
            b.iter(|| {
                let mut recs = BytesMut::with_capacity(bytes);
                for b in &vs {
                    recs.put_slice(&b.header.kafka_header());
                    recs.put_slice(&b.payload);
                }
                let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("bench")))
                    .with_partitions(vec![PartitionData::default().with_records(Some(recs.freeze()))])]);
                encode_response(ApiKey::Fetch, v, 1, &resp).unwrap()
            })
        });
    }

    // Metadata response for 100 topics of 8 partitions.
    use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};
    let md = MetadataResponse::default().with_topics(
        (0..100)
            .map(|t| {
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(format!("topic-{t}")))))
                    .with_partitions(
                        (0..8).map(|p| MetadataResponsePartition::default().with_partition_index(p)).collect(),
                    )
            })
            .collect(),
    );
    g.throughput(Throughput::Elements(1));
    g.bench_function("metadata_encode_v12_100_topics", |b| {
        b.iter(|| encode_response(ApiKey::Metadata, 12, 1, &md).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
