//! The Fetch response, encoded as a list of segments so the stored record
//! bytes go to the socket as slices of the batch cache or the read buffer,
//! never copied into a response buffer.
//!
//! `kafka-protocol` takes each partition's records as one `Bytes` and copies
//! them into its output; for the one response that carries bulk data we
//! encode by hand instead. Only the fields Spindle sends are written; the
//! tests check, for every advertised version, that the bytes equal what
//! `kafka-protocol` encodes for the same response.

use bytes::{BufMut, Bytes, BytesMut};
use spindle_engine::BatchView;

/// Payloads at least this large go out as their own segment; smaller ones
/// are copied into the surrounding buffer, where a copy is cheaper than one
/// more iovec (and, on the fallback path, one more write).
pub const ZERO_COPY_MIN_BYTES: usize = 4096;

pub struct PartitionOut {
    pub partition: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Vec<BatchView>,
    /// v12+: the follower's log diverged (epoch, end offset).
    pub diverging_epoch: Option<(i32, i64)>,
    /// v12+: the partition's leader and epoch, when it differs from the
    /// response-wide default (cluster mode).
    pub current_leader: Option<(i32, i32)>,
}

pub struct TopicOut {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: Vec<PartitionOut>,
}

struct Segments {
    done: Vec<Bytes>,
    cur: BytesMut,
    len: usize,
}

impl Segments {
    fn put(&mut self, b: &[u8]) {
        self.cur.put_slice(b);
        self.len += b.len();
    }
    fn put_shared(&mut self, b: &Bytes) {
        if b.len() < ZERO_COPY_MIN_BYTES {
            return self.put(b);
        }
        if !self.cur.is_empty() {
            self.done.push(self.cur.split().freeze());
        }
        self.done.push(b.clone());
        self.len += b.len();
    }
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put(&[(v as u8) | 0x80]);
            v >>= 7;
        }
        self.put(&[v as u8]);
    }
    fn array_len(&mut self, flexible: bool, n: usize) {
        if flexible {
            self.uvarint(n as u64 + 1);
        } else {
            self.put(&(n as i32).to_be_bytes());
        }
    }
}

/// The whole response frame (size prefix, header, body) as segments.
pub fn encode(version: i16, correlation_id: i32, leader_id: i32, leader_epoch: i32, topics: &[TopicOut]) -> Vec<Bytes> {
    let flexible = version >= 12;
    let mut s = Segments { done: Vec::new(), cur: BytesMut::with_capacity(256), len: 0 };
    s.put(&0i32.to_be_bytes()); // throttle_time_ms
    if version >= 7 {
        s.put(&0i16.to_be_bytes()); // error_code
        s.put(&0i32.to_be_bytes()); // session_id: sessionless
    }
    s.array_len(flexible, topics.len());
    for t in topics {
        if version <= 12 {
            if flexible {
                s.uvarint(t.name.len() as u64 + 1);
            } else {
                s.put(&(t.name.len() as i16).to_be_bytes());
            }
            s.put(t.name.as_bytes());
        }
        if version >= 13 {
            s.put(t.id.as_bytes());
        }
        s.array_len(flexible, t.partitions.len());
        for p in &t.partitions {
            s.put(&p.partition.to_be_bytes());
            s.put(&p.error.to_be_bytes());
            s.put(&p.high_watermark.to_be_bytes());
            s.put(&p.high_watermark.to_be_bytes()); // last_stable_offset
            if version >= 5 {
                s.put(&p.log_start_offset.to_be_bytes());
            }
            s.array_len(flexible, 0); // aborted_transactions: none
            if version >= 11 {
                s.put(&(-1i32).to_be_bytes()); // preferred_read_replica
            }
            let records: usize = p.batches.iter().map(BatchView::kafka_len).sum();
            if flexible {
                s.uvarint(records as u64 + 1);
            } else {
                s.put(&(records as i32).to_be_bytes());
            }
            for b in &p.batches {
                s.put(&b.header.kafka_header());
                s.put_shared(&b.payload);
            }
            if flexible {
                // Tagged fields, by tag: diverging_epoch (0, 13 bytes) when
                // set, current_leader (1, 9 bytes).
                s.uvarint(if p.diverging_epoch.is_some() { 2 } else { 1 });
                if let Some((epoch, end)) = p.diverging_epoch {
                    s.uvarint(0);
                    s.uvarint(13);
                    s.put(&epoch.to_be_bytes());
                    s.put(&end.to_be_bytes());
                    s.uvarint(0);
                }
                let (id, epoch) = p.current_leader.unwrap_or((leader_id, leader_epoch));
                s.uvarint(1);
                s.uvarint(9);
                s.put(&id.to_be_bytes());
                s.put(&epoch.to_be_bytes());
                s.uvarint(0);
            }
        }
        if flexible {
            s.uvarint(0); // topic tagged fields
        }
    }
    if flexible {
        s.uvarint(0); // response tagged fields
    }
    // Response header: v0 (correlation id) or v1 (plus empty tagged fields).
    let header_len = if flexible { 5 } else { 4 };
    let mut head = BytesMut::with_capacity(4 + header_len);
    head.put_i32((header_len + s.len) as i32);
    head.put_i32(correlation_id);
    if flexible {
        head.put_u8(0);
    }
    let mut out = Vec::with_capacity(s.done.len() + 2);
    out.push(head.freeze());
    out.append(&mut s.done);
    if !s.cur.is_empty() {
        out.push(s.cur.freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use spindle_engine::batch::validate_one;
    use spindle_engine::records::{encode_batch, NewRecord};

    fn view(base: i64, value_len: usize) -> BatchView {
        let value = vec![b'v'; value_len];
        let b = encode_batch(
            &[NewRecord { key: Some(b"k"), value: Some(&value) }, NewRecord { key: None, value: None }],
            1000,
        );
        let mut v = validate_one(b).unwrap();
        v.header.assign(base, 0);
        BatchView { header: v.header, payload: v.payload }
    }

    fn reference(version: i16, topics: &[TopicOut]) -> Vec<u8> {
        let responses = topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut recs = BytesMut::new();
                        for b in &p.batches {
                            recs.put_slice(&b.header.kafka_header());
                            recs.put_slice(&b.payload);
                        }
                        let mut pd = PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_error_code(p.error)
                            .with_high_watermark(p.high_watermark)
                            .with_last_stable_offset(p.high_watermark)
                            .with_aborted_transactions(Some(vec![]))
                            .with_records(Some(recs.freeze()));
                        if version >= 5 {
                            pd = pd.with_log_start_offset(p.log_start_offset);
                        }
                        if version >= 12 {
                            let (id, epoch) = p.current_leader.unwrap_or((3, 0));
                            pd = pd.with_current_leader(
                                LeaderIdAndEpoch::default().with_leader_id(BrokerId(id)).with_leader_epoch(epoch),
                            );
                            if let Some((epoch, end)) = p.diverging_epoch {
                                pd = pd.with_diverging_epoch(
                                    EpochEndOffset::default().with_epoch(epoch).with_end_offset(end),
                                );
                            }
                        }
                        pd
                    })
                    .collect();
                let r = FetchableTopicResponse::default().with_partitions(parts);
                if version >= 13 {
                    r.with_topic_id(t.id)
                } else {
                    r.with_topic(TopicName(StrBytes::from_string(t.name.clone())))
                }
            })
            .collect();
        let resp = FetchResponse::default().with_responses(responses);
        super::super::encode_response(ApiKey::Fetch, version, 77, &resp).unwrap().to_vec()
    }

    #[test]
    fn segments_equal_kafka_protocol_encoding_for_every_version() {
        let shapes: Vec<Vec<TopicOut>> = vec![
            vec![],
            vec![TopicOut { name: "t".into(), id: uuid::Uuid::from_u128(1), partitions: vec![] }],
            vec![
                TopicOut {
                    name: "orders".into(),
                    id: uuid::Uuid::from_u128(42),
                    partitions: vec![
                        PartitionOut {
                            partition: 0,
                            error: 0,
                            high_watermark: 9,
                            log_start_offset: 0,
                            batches: vec![view(0, 10), view(2, 20_000)],
                            diverging_epoch: None,
                            current_leader: None,
                        },
                        PartitionOut {
                            partition: 3,
                            error: 1,
                            high_watermark: -1,
                            log_start_offset: -1,
                            batches: vec![],
                            diverging_epoch: None,
                            current_leader: Some((2, 7)),
                        },
                        PartitionOut {
                            partition: 4,
                            error: 0,
                            high_watermark: 12,
                            log_start_offset: 0,
                            batches: vec![],
                            diverging_epoch: Some((5, 1234)),
                            current_leader: Some((1, 9)),
                        },
                    ],
                },
                TopicOut {
                    name: "x".repeat(300),
                    id: uuid::Uuid::from_u128(7),
                    partitions: vec![PartitionOut {
                        partition: 1,
                        error: 0,
                        high_watermark: 5,
                        log_start_offset: 2,
                        batches: vec![view(4, 5000)],
                        diverging_epoch: None,
                        current_leader: None,
                    }],
                },
            ],
        ];
        let spec = super::super::spec(ApiKey::Fetch).unwrap();
        for v in spec.min..=spec.max {
            for topics in &shapes {
                let ours: Vec<u8> = encode(v, 77, 3, 0, topics).iter().flat_map(|b| b.iter().copied()).collect();
                assert_eq!(ours, reference(v, topics), "fetch v{v}, {} topics", topics.len());
            }
        }
    }

    #[test]
    fn large_payloads_are_not_copied() {
        let big = view(0, 20_000);
        let topics = vec![TopicOut {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            partitions: vec![PartitionOut {
                partition: 0,
                error: 0,
                high_watermark: 2,
                log_start_offset: 0,
                batches: vec![big.clone()],
                diverging_epoch: None,
                current_leader: None,
            }],
        }];
        let segs = encode(11, 1, 0, 0, &topics);
        assert!(
            segs.iter().any(|s| s.as_ptr() == big.payload.as_ptr()),
            "the payload segment is the stored slice itself"
        );
    }
}
