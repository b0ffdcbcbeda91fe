//! Kafka APIs, one module each. Every module declares its key and the
//! version range it implements ([`ApiSpec`]); [`APIS`] lists them, and that
//! list is both the dispatch table and the ApiVersions answer, so what we
//! advertise is exactly what we implement.
//!
//! Decoding and encoding use the `kafka-protocol` crate; produce `records`
//! stay the raw `Bytes` slice of the request frame from here to the engine.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod elect_leaders;
pub mod fetch;
pub mod fetch_encode;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use crate::shard::Shard;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spindle_engine::Turn;
use std::net::SocketAddr;
use std::rc::Rc;

#[derive(Clone, Copy, Debug)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

pub const APIS: &[ApiSpec] = &[
    produce::SPEC,
    fetch::SPEC,
    list_offsets::SPEC,
    metadata::SPEC,
    api_versions::SPEC,
    create_topics::SPEC,
    delete_topics::SPEC,
    delete_records::SPEC,
    elect_leaders::SPEC,
    describe_configs::SPEC,
    alter_configs::SPEC,
    describe_log_dirs::SPEC,
    create_partitions::SPEC,
    incremental_alter_configs::SPEC,
    describe_cluster::SPEC,
    find_coordinator::SPEC,
    join_group::SPEC,
    sync_group::SPEC,
    heartbeat::SPEC,
    leave_group::SPEC,
    offset_commit::SPEC,
    offset_fetch::SPEC,
    list_groups::SPEC,
    describe_groups::SPEC,
    delete_groups::SPEC,
    offset_delete::SPEC,
    offset_for_leader_epoch::SPEC,
    init_producer_id::SPEC,
];

pub fn spec(key: ApiKey) -> Option<&'static ApiSpec> {
    APIS.iter().find(|s| s.key == key)
}

/// Why a frame was not answered: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame too short for a request header ({0} bytes)")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("encoding {api:?} v{version} response: {why}")]
    Encode { api: ApiKey, version: i16, why: String },
}

/// What the handler of one request produced.
pub struct Reply {
    /// The whole response frame, size prefix included, as segments written
    /// in order (one for most APIs; Fetch interleaves stored record slices).
    /// `None` for acks=0.
    pub frame: Option<Vec<Bytes>>,
    pub api: &'static str,
    pub error: bool,
}

pub struct RequestContext {
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: Option<SocketAddr>,
}

impl RequestContext {
    /// The client's host as Kafka reports it in group descriptions ("/1.2.3.4").
    pub fn client_host(&self) -> String {
        self.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default()
    }
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Decodes `T`, turning both errors and panics of the decoder into a
/// [`FrameError`]: bad input closes one connection, never a core.
pub fn decode<T: Decodable>(body: &mut Bytes, version: i16, what: &'static str) -> Result<T, FrameError> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::decode(body, version)));
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FrameError::Malformed { what, why: e.to_string() }),
        Err(_) => Err(FrameError::Malformed { what, why: "decoder panicked".into() }),
    }
}

/// Encodes a response frame: size, header, body. An error here is our bug
/// (a field set that the version lacks); it closes the connection, with a
/// log line, instead of taking the core down.
pub fn encode_response<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<BytesMut, FrameError> {
    let bug = |e: anyhow::Error| FrameError::Encode { api: key, version, why: e.to_string() };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let hv = key.response_header_version(version);
    let size = header.compute_size(hv).map_err(bug)? + body.compute_size(version).map_err(bug)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(bug)?;
    body.encode(&mut buf, version).map_err(bug)?;
    Ok(buf)
}

/// Parses the request header of `frame` and runs its handler. A Produce
/// waits for `order` (its connection's earlier produce requests hand their
/// partitions' records on first; see [`produce::handle`]).
pub async fn dispatch(
    shard: &Rc<Shard>,
    mut frame: Bytes,
    peer: Option<SocketAddr>,
    order: Option<Turn>,
) -> Result<Reply, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApi(raw_key))?;
    let Some(spec) = spec(key) else { return Err(FrameError::UnknownApi(raw_key)) };
    let supported = (spec.min..=spec.max).contains(&version);
    if !supported && key == ApiKey::ApiVersions {
        // Kafka answers an ApiVersions it cannot parse in the v0 format,
        // with UNSUPPORTED_VERSION and its ranges, so the client can retry.
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        return Ok(api_versions::unsupported(correlation_id));
    }
    if !supported {
        return Err(FrameError::UnsupportedVersion { api: key, version });
    }
    let header: RequestHeader = decode(&mut frame, key.request_header_version(version), "request header")?;
    let ctx = RequestContext {
        version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|c| c.to_string()),
        peer,
    };
    let body = &mut frame;
    macro_rules! call {
        ($m:ident, $name:literal) => {{
            let req = decode(body, version, $name)?;
            let (resp, error) = $m::handle(shard, req, &ctx).await;
            Ok(Reply {
                frame: Some(vec![encode_response(key, version, ctx.correlation_id, &resp)?.freeze()]),
                api: $name,
                error,
            })
        }};
    }
    match key {
        ApiKey::Produce => {
            let req = decode(body, version, "Produce")?;
            let (resp, error) = produce::handle(shard, req, &ctx, order).await;
            let frame = match resp {
                Some(r) => Some(vec![encode_response(key, version, ctx.correlation_id, &r)?.freeze()]),
                None => None,
            };
            Ok(Reply { frame, api: "Produce", error })
        }
        ApiKey::Fetch => {
            let req = decode(body, version, "Fetch")?;
            let (segments, error) = fetch::handle(shard, req, &ctx).await;
            Ok(Reply { frame: Some(segments), api: "Fetch", error })
        }
        ApiKey::ListOffsets => call!(list_offsets, "ListOffsets"),
        ApiKey::Metadata => call!(metadata, "Metadata"),
        ApiKey::ApiVersions => call!(api_versions, "ApiVersions"),
        ApiKey::CreateTopics => call!(create_topics, "CreateTopics"),
        ApiKey::DeleteTopics => call!(delete_topics, "DeleteTopics"),
        ApiKey::DeleteRecords => call!(delete_records, "DeleteRecords"),
        ApiKey::DescribeConfigs => call!(describe_configs, "DescribeConfigs"),
        ApiKey::AlterConfigs => call!(alter_configs, "AlterConfigs"),
        ApiKey::DescribeLogDirs => call!(describe_log_dirs, "DescribeLogDirs"),
        ApiKey::CreatePartitions => call!(create_partitions, "CreatePartitions"),
        ApiKey::IncrementalAlterConfigs => call!(incremental_alter_configs, "IncrementalAlterConfigs"),
        ApiKey::DescribeCluster => call!(describe_cluster, "DescribeCluster"),
        ApiKey::ElectLeaders => call!(elect_leaders, "ElectLeaders"),
        ApiKey::FindCoordinator => call!(find_coordinator, "FindCoordinator"),
        ApiKey::JoinGroup => call!(join_group, "JoinGroup"),
        ApiKey::SyncGroup => call!(sync_group, "SyncGroup"),
        ApiKey::Heartbeat => call!(heartbeat, "Heartbeat"),
        ApiKey::LeaveGroup => call!(leave_group, "LeaveGroup"),
        ApiKey::OffsetCommit => call!(offset_commit, "OffsetCommit"),
        ApiKey::OffsetFetch => call!(offset_fetch, "OffsetFetch"),
        ApiKey::ListGroups => call!(list_groups, "ListGroups"),
        ApiKey::DescribeGroups => call!(describe_groups, "DescribeGroups"),
        ApiKey::DeleteGroups => call!(delete_groups, "DeleteGroups"),
        ApiKey::OffsetDelete => call!(offset_delete, "OffsetDelete"),
        ApiKey::InitProducerId => call!(init_producer_id, "InitProducerId"),
        ApiKey::OffsetForLeaderEpoch => call!(offset_for_leader_epoch, "OffsetForLeaderEpoch"),
        _ => Err(FrameError::UnknownApi(raw_key)),
    }
}
