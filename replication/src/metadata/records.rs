//! The records the metadata quorum agrees on, and the JSON batch that carries them in one Raft entry.
//!
//! A Raft entry's data is `{"v":1,"records":[...]}`: the records of one controller operation commit
//! atomically, as KRaft's record batches do. JSON rather than a binary format because metadata volume
//! is small, a log dump is readable, and `#[serde(default)]` on optional fields lets an older entry
//! (without a field added later) decode unchanged. A field that changes meaning needs a new `v`;
//! decoding refuses versions it does not know instead of guessing.
//!
//! Each record mirrors a KRaft record (`metadata/src/main/resources/common/metadata/*.json`); the
//! rules for applying them live in [`super::image`].

use serde::{Deserialize, Serialize};

use crate::types::{BrokerId, LeaderEpoch, PartitionEpoch, TopicId};

/// The batch envelope version this code writes and reads.
pub const METADATA_BATCH_VERSION: u64 = 1;

pub use crate::types::BrokerEpoch;

/// One change to the cluster's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's id, set once by the first active controller.
    ClusterId { id: String },
    /// A broker (re)registers; its epoch becomes the index of this record. KRaft:
    /// RegisterBrokerRecord.
    RegisterBroker(RegisterBrokerRecord),
    /// A registered broker is fenced, unfenced, or enters controlled shutdown. KRaft:
    /// BrokerRegistrationChangeRecord.
    BrokerChange {
        broker_id: BrokerId,
        broker_epoch: BrokerEpoch,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fenced: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_controlled_shutdown: Option<bool>,
    },
    /// KRaft: UnregisterBrokerRecord.
    UnregisterBroker { broker_id: BrokerId, broker_epoch: BrokerEpoch },
    /// A topic is created; its partitions follow as `Partition` records. KRaft: TopicRecord.
    Topic { name: String, topic_id: TopicId },
    /// KRaft: PartitionRecord.
    Partition(PartitionRecord),
    /// KRaft: PartitionChangeRecord.
    PartitionChange(PartitionChangeRecord),
    /// KRaft: RemoveTopicRecord. The topic's configs go with it.
    RemoveTopic { topic_id: TopicId },
    /// Sets (`value: Some`) or deletes (`None`) one config key. KRaft: ConfigRecord.
    Config {
        resource: ConfigResource,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
}

/// See [`MetadataRecord::RegisterBroker`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: BrokerId,
    /// Random per process start: a new incarnation is a restart, not a duplicate registration.
    pub incarnation_id: uuid::Uuid,
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Always true when written by the controller: a broker is unfenced only once it has caught up
    /// with the metadata log. Kept as a field, as in KRaft, so the rule can change without a new
    /// record version.
    #[serde(default = "registered_fenced")]
    pub fenced: bool,
}

fn registered_fenced() -> bool {
    true
}

/// See [`MetadataRecord::Partition`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: TopicId,
    pub partition: i32,
    /// In preference order: `replicas[0]` is the preferred leader.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// [`crate::types::NO_LEADER`] (-1) when there is none.
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

/// See [`MetadataRecord::PartitionChange`]. Absent fields keep their value. Applying it bumps the
/// partition epoch always and the leader epoch iff `leader` is not [`LeaderChange::NoChange`]
/// (KRaft's `PartitionRegistration.merge`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub topic_id: TopicId,
    pub partition: i32,
    /// The partition epoch this change was computed against. KRaft has no such field (its
    /// controller is the only writer and replays in order); we carry it so a change computed
    /// against a stale image is refused on apply instead of silently merged.
    pub expected_partition_epoch: PartitionEpoch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<BrokerId>>,
    #[serde(default, skip_serializing_if = "LeaderChange::is_no_change")]
    pub leader: LeaderChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<BrokerId>>,
}

/// The leader field of a partition change: KRaft's -2 (no change), -1 (no leader) or a broker id,
/// as a type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderChange {
    #[default]
    NoChange,
    /// The partition goes offline until an ISR member returns.
    None,
    Broker(BrokerId),
}

impl LeaderChange {
    pub fn is_no_change(&self) -> bool {
        matches!(self, LeaderChange::NoChange)
    }
}

/// What a config record applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigResource {
    Cluster,
    Broker(BrokerId),
    Topic(String),
}

/// Why a Raft entry's data is not a batch this code can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("metadata batch is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("metadata batch version {found} is not supported (this broker reads version {METADATA_BATCH_VERSION})")]
    UnsupportedVersion { found: u64 },
}

#[derive(Serialize)]
struct BatchOut<'a> {
    v: u64,
    records: &'a [MetadataRecord],
}

/// Only the version, read first so a newer batch is refused by version, not by whatever field of
/// its records this code happens to trip on.
#[derive(Deserialize)]
struct BatchVersion {
    v: u64,
}

#[derive(Deserialize)]
struct BatchIn {
    records: Vec<MetadataRecord>,
}

/// The Raft entry data for one controller operation's records.
pub fn encode_batch(records: &[MetadataRecord]) -> Vec<u8> {
    // Serialization can only fail for maps with non-string keys or failing Serialize impls; these
    // types have neither, so a failure is a bug here.
    serde_json::to_vec(&BatchOut { v: METADATA_BATCH_VERSION, records }).expect("metadata records always serialize")
}

/// The records of one Raft entry's data.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    let BatchVersion { v } = serde_json::from_slice(bytes)?;
    if v != METADATA_BATCH_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: v });
    }
    let BatchIn { records } = serde_json::from_slice(bytes)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic_id(n: u128) -> TopicId {
        uuid::Uuid::from_u128(n)
    }

    /// One record of every kind, with every optional field set.
    fn all_records() -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::ClusterId { id: "spindle-test".into() },
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 1,
                incarnation_id: uuid::Uuid::from_u128(0xabc),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: Some("r1".into()),
                fenced: true,
            }),
            MetadataRecord::BrokerChange {
                broker_id: 1,
                broker_epoch: 7,
                fenced: Some(false),
                in_controlled_shutdown: Some(true),
            },
            MetadataRecord::UnregisterBroker { broker_id: 2, broker_epoch: 9 },
            MetadataRecord::Topic { name: "t".into(), topic_id: topic_id(5) },
            MetadataRecord::Partition(PartitionRecord {
                topic_id: topic_id(5),
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 4,
                partition_epoch: 6,
            }),
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: topic_id(5),
                partition: 0,
                expected_partition_epoch: 6,
                isr: Some(vec![1]),
                leader: LeaderChange::Broker(1),
                replicas: Some(vec![1, 2]),
            }),
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: topic_id(5),
                partition: 0,
                expected_partition_epoch: 7,
                isr: None,
                leader: LeaderChange::None,
                replicas: None,
            }),
            MetadataRecord::RemoveTopic { topic_id: topic_id(5) },
            MetadataRecord::Config { resource: ConfigResource::Cluster, name: "a".into(), value: Some("1".into()) },
            MetadataRecord::Config { resource: ConfigResource::Broker(3), name: "b".into(), value: None },
            MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "c".into(),
                value: Some("".into()),
            },
        ]
    }

    #[test]
    fn every_record_round_trips_through_a_batch() {
        let records = all_records();
        let bytes = encode_batch(&records);
        assert_eq!(decode_batch(&bytes).unwrap(), records);
    }

    #[test]
    fn batch_json_has_the_documented_shape() {
        let bytes = encode_batch(&[
            MetadataRecord::RemoveTopic { topic_id: topic_id(1) },
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: topic_id(1),
                partition: 2,
                expected_partition_epoch: 3,
                isr: None,
                leader: LeaderChange::Broker(4),
                replicas: None,
            }),
        ]);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"v":1,"records":["#,
                r#"{"type":"RemoveTopic","topic_id":"00000000-0000-0000-0000-000000000001"},"#,
                r#"{"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000001","#,
                r#""partition":2,"expected_partition_epoch":3,"leader":{"broker":4}}"#,
                r#"]}"#
            )
        );
    }

    #[test]
    fn older_entry_without_optional_fields_decodes_with_defaults() {
        // Written by hand as an entry from before rack, fenced, the BrokerChange flags, the
        // PartitionChange options and config values existed (or with them left out).
        let old = br#"{"v":1,"records":[
            {"type":"RegisterBroker","broker_id":1,"incarnation_id":"00000000-0000-0000-0000-000000000abc",
             "host":"h","port":9092},
            {"type":"BrokerChange","broker_id":1,"broker_epoch":1},
            {"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000005","partition":0,
             "expected_partition_epoch":0},
            {"type":"Config","resource":{"topic":"t"},"name":"retention.ms"}
        ]}"#;
        let records = decode_batch(old).unwrap();
        assert_eq!(
            records,
            vec![
                MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                    broker_id: 1,
                    incarnation_id: uuid::Uuid::from_u128(0xabc),
                    host: "h".into(),
                    port: 9092,
                    rack: None,
                    fenced: true,
                }),
                MetadataRecord::BrokerChange {
                    broker_id: 1,
                    broker_epoch: 1,
                    fenced: None,
                    in_controlled_shutdown: None
                },
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    topic_id: topic_id(5),
                    partition: 0,
                    expected_partition_epoch: 0,
                    isr: None,
                    leader: LeaderChange::NoChange,
                    replicas: None,
                }),
                MetadataRecord::Config {
                    resource: ConfigResource::Topic("t".into()),
                    name: "retention.ms".into(),
                    value: None
                },
            ]
        );
    }

    #[test]
    fn unknown_version_is_refused_before_its_records_are_read() {
        // A v2 batch whose records this code could not parse: the error names the version.
        let err = decode_batch(br#"{"v":2,"records":[{"type":"Future"}]}"#).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion { found: 2 }), "{err:?}");
        assert!(matches!(decode_batch(br#"{"v":0,"records":[]}"#), Err(DecodeError::UnsupportedVersion { found: 0 })));
    }

    #[test]
    fn bad_json_and_unknown_records_are_typed_errors() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"v":"1","records":[]}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"records":[{"type":"Nope"}]}"#,
            br#"{"v":1,"records":[{"type":"Topic","name":"t"}]}"#,
            // Not a UUID.
            br#"{"v":1,"records":[{"type":"RemoveTopic","topic_id":"not-a-uuid"}]}"#,
            // Port beyond u16.
            br#"{"v":1,"records":[{"type":"RegisterBroker","broker_id":1,
                "incarnation_id":"00000000-0000-0000-0000-000000000abc","host":"h","port":70000}]}"#,
        ] {
            let err = decode_batch(bad).unwrap_err();
            assert!(matches!(err, DecodeError::Json(_)), "{}: {err:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn every_truncated_prefix_is_an_error_not_a_panic() {
        let bytes = encode_batch(&all_records());
        for len in 0..bytes.len() {
            assert!(decode_batch(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
        }
    }

    #[test]
    fn empty_batch_round_trips() {
        assert_eq!(encode_batch(&[]), br#"{"v":1,"records":[]}"#);
        assert_eq!(decode_batch(br#"{"v":1,"records":[]}"#).unwrap(), vec![]);
    }
}
