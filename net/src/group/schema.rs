//! Kafka's binary key/value schemas for records in `__consumer_offsets`, so
//! tools that read that topic to track lag (Burrow, kafka-consumer-groups,
//! ...) keep working. Big-endian, Kafka's classic (non-flexible) encodings:
//!
//! * offset commit key (version 1): `i16 version, string group, string topic, i32 partition`
//! * offset commit value (version 3): `i16 version, i64 offset, i32 leader_epoch, string metadata, i64 commit_timestamp`
//! * group metadata key (version 2): `i16 version, string group`
//! * group metadata value (version 3): `i16 version, string protocol_type, i32 generation,
//!   nullable string protocol, nullable string leader, i64 current_state_timestamp,
//!   array of members [string member_id, nullable string group_instance_id, string client_id,
//!   string client_host, i32 rebalance_timeout, i32 session_timeout, bytes subscription, bytes assignment]`
//!
//! A null value is a tombstone: the key's group or offset was deleted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const OFFSET_KEY_VERSION: i16 = 1;
pub const OFFSET_VALUE_VERSION: i16 = 3;
pub const GROUP_KEY_VERSION: i16 = 2;
pub const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct SchemaError(&'static str);

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}
fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}
fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

struct Reader(Bytes);
impl Reader {
    fn need(&self, n: usize) -> Result<(), SchemaError> {
        if self.0.remaining() < n {
            Err(SchemaError("truncated"))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, SchemaError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, SchemaError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, SchemaError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nullable_str(&mut self) -> Result<Option<String>, SchemaError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        self.need(n as usize)?;
        let s = self.0.split_to(n as usize);
        String::from_utf8(s.to_vec()).map(Some).map_err(|_| SchemaError("string is not UTF-8"))
    }
    fn str(&mut self) -> Result<String, SchemaError> {
        self.nullable_str()?.ok_or(SchemaError("null where a string is required"))
    }
    fn bytes(&mut self) -> Result<Bytes, SchemaError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Bytes::new());
        }
        self.need(n as usize)?;
        Ok(self.0.split_to(n as usize))
    }
}

impl Key {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Key::Offset { group, topic, partition } => {
                b.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            Key::Group { group } => {
                b.put_i16(GROUP_KEY_VERSION);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn decode(b: Bytes) -> Result<Key, SchemaError> {
        let mut r = Reader(b);
        match r.i16()? {
            0 | 1 => Ok(Key::Offset { group: r.str()?, topic: r.str()?, partition: r.i32()? }),
            2 => Ok(Key::Group { group: r.str()? }),
            _ => Err(SchemaError("unknown key version")),
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(OFFSET_VALUE_VERSION);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    /// Reads versions 0 to 3 (what Kafka has written over the years).
    pub fn decode(b: Bytes) -> Result<OffsetValue, SchemaError> {
        let mut r = Reader(b);
        let v = r.i16()?;
        let offset = r.i64()?;
        let leader_epoch = if v >= 3 { r.i32()? } else { -1 };
        let metadata = r.str()?;
        let commit_timestamp = r.i64()?;
        match v {
            0..=3 => Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp }),
            _ => Err(SchemaError("unknown offset value version")),
        }
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_nullable_str(&mut b, self.protocol.as_deref());
        put_nullable_str(&mut b, self.leader.as_deref());
        b.put_i64(self.current_state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_nullable_str(&mut b, m.group_instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout);
            b.put_i32(m.session_timeout);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(b: Bytes) -> Result<GroupValue, SchemaError> {
        let mut r = Reader(b);
        let v = r.i16()?;
        if !(0..=3).contains(&v) {
            return Err(SchemaError("unknown group value version"));
        }
        let protocol_type = r.str()?;
        let generation = r.i32()?;
        let protocol = r.nullable_str()?;
        let leader = r.nullable_str()?;
        let current_state_timestamp = if v >= 2 { r.i64()? } else { -1 };
        let n = r.i32()?;
        let mut members = Vec::new();
        for _ in 0..n.max(0) {
            let member_id = r.str()?;
            let group_instance_id = if v >= 3 { r.nullable_str()? } else { None };
            let client_id = r.str()?;
            let client_host = r.str()?;
            let rebalance_timeout = if v >= 1 { r.i32()? } else { -1 };
            let session_timeout = r.i32()?;
            let subscription = r.bytes()?;
            let assignment = r.bytes()?;
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                subscription,
                assignment,
            });
        }
        Ok(GroupValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
    }
}

/// Java's `String.hashCode` (over UTF-16 code units), which Kafka uses to
/// place a group on a `__consumer_offsets` partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`.
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_and_value_match_kafkas_bytes() {
        let k = Key::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        assert_eq!(&k.encode()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        assert_eq!(Key::decode(k.encode()).unwrap(), k);
        let v = OffsetValue { offset: 42, leader_epoch: 0, metadata: "".into(), commit_timestamp: 7 };
        assert_eq!(&v.encode()[..], &[0, 3, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(OffsetValue::decode(v.encode()).unwrap(), v);
    }

    #[test]
    fn group_value_round_trips_and_truncation_is_an_error() {
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 99,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: 300000,
                session_timeout: 45000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let b = g.encode();
        assert_eq!(GroupValue::decode(b.clone()).unwrap(), g);
        for n in 0..b.len() {
            assert!(GroupValue::decode(b.slice(..n)).is_err(), "prefix {n}");
        }
        let key = Key::Group { group: "g".into() };
        assert_eq!(Key::decode(key.encode()).unwrap(), key);
    }

    #[test]
    fn group_placement_follows_java_hash_code() {
        // Values computed with Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99162322);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for_group("hello", 50), 22);
        assert_eq!(partition_for_group("my-group", 50), 12);
        assert_eq!(partition_for_group("test-group-42", 50), 31);
        for g in ["a", "group-1", "consumer-group-with-a-long-name", "ünïcode"] {
            let p = partition_for_group(g, 50);
            assert!((0..50).contains(&p));
        }
    }
}
