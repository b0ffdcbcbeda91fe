//! Every request we accept, in every version we advertise: a default request
//! round-trips through our decoder, and every truncated prefix of it is an
//! error, never a panic (a panic would take a core down).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use spindle_net::api::{decode, spec, APIS};
use std::fmt::Debug;

#[global_allocator]
static ALLOC: spindle_net::alloc::GuardedAlloc = spindle_net::alloc::GuardedAlloc;

fn check<T: Decodable + Encodable + Default + PartialEq + Debug>(key: ApiKey) -> usize {
    let s = spec(key).expect("advertised");
    let mut checked = 0;
    for v in s.min..=s.max {
        let req = T::default();
        let mut buf = BytesMut::new();
        req.encode(&mut buf, v).unwrap_or_else(|e| panic!("{key:?} v{v} encodes: {e}"));
        let full: Bytes = buf.freeze();
        let back: T = decode(&mut full.clone(), v, "test").unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
        assert_eq!(back, req, "{key:?} v{v} round trip");
        for n in 0..full.len() {
            let r: Result<T, _> = decode(&mut full.slice(..n), v, "test");
            assert!(r.is_err(), "{key:?} v{v}: {n}-byte prefix of {} decoded", full.len());
        }
        checked += 1;
    }
    checked
}

#[test]
fn every_advertised_request_version_round_trips_and_rejects_truncation() {
    let mut versions = 0;
    for s in APIS {
        versions += match s.key {
            ApiKey::Produce => check::<ProduceRequest>(s.key),
            ApiKey::Fetch => check::<FetchRequest>(s.key),
            ApiKey::ListOffsets => check::<ListOffsetsRequest>(s.key),
            ApiKey::Metadata => check::<MetadataRequest>(s.key),
            ApiKey::ApiVersions => check::<ApiVersionsRequest>(s.key),
            ApiKey::CreateTopics => check::<CreateTopicsRequest>(s.key),
            ApiKey::DeleteTopics => check::<DeleteTopicsRequest>(s.key),
            ApiKey::DeleteRecords => check::<DeleteRecordsRequest>(s.key),
            ApiKey::DescribeConfigs => check::<DescribeConfigsRequest>(s.key),
            ApiKey::AlterConfigs => check::<AlterConfigsRequest>(s.key),
            ApiKey::DescribeLogDirs => check::<DescribeLogDirsRequest>(s.key),
            ApiKey::CreatePartitions => check::<CreatePartitionsRequest>(s.key),
            ApiKey::IncrementalAlterConfigs => check::<IncrementalAlterConfigsRequest>(s.key),
            ApiKey::DescribeCluster => check::<DescribeClusterRequest>(s.key),
            ApiKey::ElectLeaders => check::<ElectLeadersRequest>(s.key),
            ApiKey::FindCoordinator => check::<FindCoordinatorRequest>(s.key),
            ApiKey::JoinGroup => check::<JoinGroupRequest>(s.key),
            ApiKey::SyncGroup => check::<SyncGroupRequest>(s.key),
            ApiKey::Heartbeat => check::<HeartbeatRequest>(s.key),
            ApiKey::LeaveGroup => check::<LeaveGroupRequest>(s.key),
            ApiKey::OffsetCommit => check::<OffsetCommitRequest>(s.key),
            ApiKey::OffsetFetch => check::<OffsetFetchRequest>(s.key),
            ApiKey::ListGroups => check::<ListGroupsRequest>(s.key),
            ApiKey::DescribeGroups => check::<DescribeGroupsRequest>(s.key),
            ApiKey::DeleteGroups => check::<DeleteGroupsRequest>(s.key),
            ApiKey::OffsetDelete => check::<OffsetDeleteRequest>(s.key),
            ApiKey::InitProducerId => check::<InitProducerIdRequest>(s.key),
            ApiKey::OffsetForLeaderEpoch => check::<OffsetForLeaderEpochRequest>(s.key),
            other => panic!("{other:?} is advertised but this test does not know its request type"),
        };
    }
    assert!(versions > 50, "checked {versions} versions");
}

#[test]
fn advertised_ranges_are_within_what_the_codec_supports() {
    for s in APIS {
        let codec = s.key.valid_versions();
        assert!(
            s.min >= codec.min && s.max <= codec.max,
            "{:?} {}..={} outside codec {:?}",
            s.key,
            s.min,
            s.max,
            codec
        );
        assert!(s.min <= s.max);
    }
}

// Regression: a frame whose array length claims two billion elements made
// the decoder ask for hundreds of gigabytes up front, and the failed
// allocation aborted the whole broker. It must be a decode error.
#[test]
fn array_length_claiming_billions_of_elements_is_an_error_not_an_abort() {
    for version in [0i16, 9] {
        let mut b = BytesMut::new();
        // Metadata request: topics array length, then nothing.
        if version >= 9 {
            b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact length 2^32-1
        } else {
            b.extend_from_slice(&i32::MAX.to_be_bytes());
        }
        let r: Result<MetadataRequest, _> = decode(&mut b.freeze(), version, "test");
        assert!(r.is_err(), "v{version}");
    }
    let mut b = BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes()); // acks... produce v3: transactional id null
    let mut p = BytesMut::new();
    p.extend_from_slice(&(-1i16).to_be_bytes()); // transactional_id: null
    p.extend_from_slice(&1i16.to_be_bytes()); // acks
    p.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    p.extend_from_slice(&i32::MAX.to_be_bytes()); // topic_data length
    let r: Result<ProduceRequest, _> = decode(&mut p.freeze(), 3, "test");
    assert!(r.is_err());
}
