//! `spindle-bench null-sink`: a Kafka endpoint that acknowledges every
//! produce at once and keeps nothing. Pointing the generator at it measures
//! the generator's own ceiling, so a broker result below that ceiling is
//! the broker's, not the generator's.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;

/// Partitions every topic appears to have.
const SINK_PARTITIONS: i32 = 64;

fn respond<R: Encodable>(id: i32, version: i16, key: ApiKey, body: &R) -> BytesMut {
    let hv = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(id);
    let size = header.compute_size(hv).unwrap() + body.compute_size(version).unwrap();
    let mut b = BytesMut::with_capacity(size + 4);
    b.put_i32(size as i32);
    header.encode(&mut b, hv).unwrap();
    body.encode(&mut b, version).unwrap();
    b
}

fn answer(frame: Bytes, addr: SocketAddr) -> Option<BytesMut> {
    let mut f = frame;
    let key = ApiKey::try_from(f.clone().get_i16()).ok()?;
    let version = {
        let mut g = f.clone();
        g.advance(2);
        g.get_i16()
    };
    let header = RequestHeader::decode(&mut f, key.request_header_version(version)).ok()?;
    let id = header.correlation_id;
    Some(match key {
        ApiKey::ApiVersions => {
            let keys = [
                (ApiKey::Produce, 3, 8),
                (ApiKey::Fetch, 4, 11),
                (ApiKey::ListOffsets, 1, 5),
                (ApiKey::Metadata, 0, 8),
                (ApiKey::ApiVersions, 0, 0),
                (ApiKey::CreateTopics, 2, 4),
            ];
            let r = ApiVersionsResponse::default().with_api_keys(
                keys.iter()
                    .map(|(k, a, b)| {
                        ApiVersion::default().with_api_key(*k as i16).with_min_version(*a).with_max_version(*b)
                    })
                    .collect(),
            );
            respond(id, 0, key, &r)
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut f, version).ok()?;
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .map(|n| {
                    MetadataResponseTopic::default().with_name(Some(n)).with_partitions(
                        (0..SINK_PARTITIONS)
                            .map(|p| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_replica_nodes(vec![BrokerId(0)])
                                    .with_isr_nodes(vec![BrokerId(0)])
                            })
                            .collect(),
                    )
                })
                .collect();
            let broker = MetadataResponseBroker::default()
                .with_host(StrBytes::from_string(addr.ip().to_string()))
                .with_port(addr.port() as i32);
            respond(id, version, key, &MetadataResponse::default().with_brokers(vec![broker]).with_topics(topics))
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::decode(&mut f, version).ok()?;
            let topics = req.topics.into_iter().map(|t| CreatableTopicResult::default().with_name(t.name)).collect();
            respond(id, version, key, &CreateTopicsResponse::default().with_topics(topics))
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut f, version).ok()?;
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(
                        t.partitions
                            .into_iter()
                            .map(|p| ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index))
                            .collect(),
                    )
                })
                .collect();
            respond(id, version, key, &ListOffsetsResponse::default().with_topics(topics))
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut f, version).ok()?;
            if req.acks == 0 {
                return Some(BytesMut::new());
            }
            let responses = req
                .topic_data
                .into_iter()
                .map(|t| {
                    TopicProduceResponse::default().with_name(t.name).with_partition_responses(
                        t.partition_data
                            .into_iter()
                            .map(|p| PartitionProduceResponse::default().with_index(p.index))
                            .collect(),
                    )
                })
                .collect();
            respond(id, version, key, &ProduceResponse::default().with_responses(responses))
        }
        ApiKey::Fetch => {
            // Nothing is stored: an empty answer after the client's wait.
            respond(id, version, key, &FetchResponse::default())
        }
        _ => return None,
    })
}

async fn serve_conn(mut s: TcpStream, addr: SocketAddr) {
    let _ = s.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        while buf.len() >= 4 {
            let size = i32::from_be_bytes(buf[..4].try_into().unwrap());
            if size < 0 {
                return;
            }
            if buf.len() < 4 + size as usize {
                break;
            }
            buf.advance(4);
            let frame = buf.split_to(size as usize).freeze();
            match answer(frame, addr) {
                Some(out) if !out.is_empty() => {
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => return,
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Serves until killed, one executor per CPU in `cpus`.
pub fn run(listen: SocketAddr, cpus: Vec<usize>) -> Result<(), String> {
    let cpus = if cpus.is_empty() { vec![0] } else { cpus };
    println!("null sink listening on {listen} ({} cores)", cpus.len());
    let mut handles = Vec::new();
    for cpu in cpus {
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .spawn(move || async move {
                let l = match TcpListener::bind(listen) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("spindle-bench: listen on {listen}: {e}");
                        return;
                    }
                };
                while let Ok(s) = l.accept().await {
                    glommio::spawn_local(serve_conn(s, listen)).detach();
                }
            })
            .map_err(|e| e.to_string())?;
        handles.push(h);
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
