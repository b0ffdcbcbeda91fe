//! Wire codec of one Raft message between voters.
//!
//! Hand-written instead of protobuf: the protobuf 2 parser that raft-rs
//! carries has a known stack overflow on crafted input (RUSTSEC-2024-0437),
//! so network bytes never reach it. Layout, all integers little-endian:
//!
//! ```text
//! version u8 (1) | msg_type u8 | to, from, term, log_term, index, commit,
//! commit_term, request_snapshot u64 | reject u8 | reject_hint u64 |
//! priority i64 | context bytes | entry count u32, entries | snapshot flag u8
//! [, snapshot]
//! entry:    entry_type u8 | term u64 | index u64 | data bytes | context bytes
//! snapshot: data bytes | index u64 | term u64 | voters, learners,
//!           voters_outgoing, learners_next: count u32 + u64 each | auto_leave u8
//! bytes:    length u32 + the bytes
//! ```

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata};

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("raft message truncated at byte {0}")]
    Truncated(usize),
    #[error("raft message version {0} unknown")]
    Version(u8),
    #[error("raft message type {0} unknown")]
    MessageType(u8),
    #[error("raft entry type {0} unknown")]
    EntryType(u8),
    #[error("{0} bytes after the raft message")]
    Trailing(usize),
}

pub fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + m.entries.iter().map(|e| 32 + e.data.len() + e.context.len()).sum::<usize>());
    out.push(VERSION);
    out.push(m.msg_type as u8);
    for v in [m.to, m.from, m.term, m.log_term, m.index, m.commit, m.commit_term, m.request_snapshot] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(m.reject as u8);
    out.extend_from_slice(&m.reject_hint.to_le_bytes());
    out.extend_from_slice(&m.priority.to_le_bytes());
    put_bytes(&mut out, &m.context);
    out.extend_from_slice(&(m.entries.len() as u32).to_le_bytes());
    for e in m.entries.iter() {
        out.push(e.entry_type as u8);
        out.extend_from_slice(&e.term.to_le_bytes());
        out.extend_from_slice(&e.index.to_le_bytes());
        put_bytes(&mut out, &e.data);
        put_bytes(&mut out, &e.context);
    }
    match m.snapshot.as_ref() {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_bytes(&mut out, &s.data);
            let meta = s.metadata.as_ref().cloned().unwrap_or_default();
            out.extend_from_slice(&meta.index.to_le_bytes());
            out.extend_from_slice(&meta.term.to_le_bytes());
            let cs = meta.conf_state.as_ref().cloned().unwrap_or_default();
            for ids in [&cs.voters, &cs.learners, &cs.voters_outgoing, &cs.learners_next] {
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
            out.push(cs.auto_leave as u8);
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(CodecError::Truncated(self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// A length-prefixed byte string, as a slice of the input (no copy).
    fn bytes(&mut self) -> Result<Bytes, CodecError> {
        let n = self.u32()? as usize;
        let start = self.at;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }
    /// A count of items at least `min_item` bytes each: refused if the rest
    /// of the input cannot hold that many (no allocation from a lie).
    fn count(&mut self, min_item: usize) -> Result<usize, CodecError> {
        let at = self.at;
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() - self.at {
            return Err(CodecError::Truncated(at));
        }
        Ok(n)
    }
    fn ids(&mut self) -> Result<Vec<u64>, CodecError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
}

pub fn decode(buf: &Bytes) -> Result<Message, CodecError> {
    let mut r = Reader { buf, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let t = r.u8()?;
    let mut m = Message { msg_type: message_type(t).ok_or(CodecError::MessageType(t))?, ..Default::default() };
    m.to = r.u64()?;
    m.from = r.u64()?;
    m.term = r.u64()?;
    m.log_term = r.u64()?;
    m.index = r.u64()?;
    m.commit = r.u64()?;
    m.commit_term = r.u64()?;
    m.request_snapshot = r.u64()?;
    m.reject = r.u8()? != 0;
    m.reject_hint = r.u64()?;
    m.priority = r.u64()? as i64;
    m.context = r.bytes()?;
    let n = r.count(1 + 8 + 8 + 4 + 4)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let t = r.u8()?;
        let entry_type = entry_type(t).ok_or(CodecError::EntryType(t))?;
        let term = r.u64()?;
        let index = r.u64()?;
        let data = r.bytes()?;
        let context = r.bytes()?;
        entries.push(Entry { entry_type, term, index, data, context, ..Default::default() });
    }
    m.entries = entries.into();
    if r.u8()? != 0 {
        let data = r.bytes()?;
        let index = r.u64()?;
        let term = r.u64()?;
        let conf_state = ConfState {
            voters: r.ids()?,
            learners: r.ids()?,
            voters_outgoing: r.ids()?,
            learners_next: r.ids()?,
            auto_leave: r.u8()? != 0,
            ..Default::default()
        };
        let metadata = SnapshotMetadata { conf_state: Some(conf_state).into(), index, term, ..Default::default() };
        m.snapshot = Some(Snapshot { data, metadata: Some(metadata).into(), ..Default::default() }).into();
    }
    if r.at != buf.len() {
        return Err(CodecError::Trailing(buf.len() - r.at));
    }
    Ok(m)
}

fn message_type(t: u8) -> Option<MessageType> {
    use MessageType::*;
    const ALL: [MessageType; 19] = [
        MsgHup,
        MsgBeat,
        MsgPropose,
        MsgAppend,
        MsgAppendResponse,
        MsgRequestVote,
        MsgRequestVoteResponse,
        MsgSnapshot,
        MsgHeartbeat,
        MsgHeartbeatResponse,
        MsgUnreachable,
        MsgSnapStatus,
        MsgCheckQuorum,
        MsgTransferLeader,
        MsgTimeoutNow,
        MsgReadIndex,
        MsgReadIndexResp,
        MsgRequestPreVote,
        MsgRequestPreVoteResponse,
    ];
    ALL.into_iter().find(|m| *m as u8 == t)
}

fn entry_type(t: u8) -> Option<EntryType> {
    [EntryType::EntryNormal, EntryType::EntryConfChange, EntryType::EntryConfChangeV2]
        .into_iter()
        .find(|e| *e as u8 == t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let entries = vec![
            Entry {
                entry_type: EntryType::EntryNormal,
                term: 7,
                index: 41,
                data: Bytes::from_static(b"{\"v\":1}"),
                context: Bytes::from_static(b"ctx"),
                ..Default::default()
            },
            Entry { entry_type: EntryType::EntryConfChangeV2, term: 7, index: 42, ..Default::default() },
        ];
        let cs = ConfState { voters: vec![1, 2, 3], learners: vec![4], auto_leave: true, ..Default::default() };
        let meta = SnapshotMetadata { conf_state: Some(cs).into(), index: 40, term: 6, ..Default::default() };
        Message {
            msg_type: MessageType::MsgAppend,
            to: 2,
            from: 1,
            term: 7,
            log_term: 6,
            index: 40,
            entries: entries.into(),
            commit: 39,
            commit_term: 6,
            snapshot: Some(Snapshot {
                data: Bytes::from_static(b"snap"),
                metadata: Some(meta).into(),
                ..Default::default()
            })
            .into(),
            request_snapshot: 3,
            reject: true,
            reject_hint: 12,
            context: Bytes::from_static(b"c"),
            priority: -5,
            ..Default::default()
        }
    }

    #[test]
    fn messages_round_trip() {
        let m = sample();
        assert_eq!(decode(&Bytes::from(encode(&m))).unwrap(), m);
        let plain = Message { msg_type: MessageType::MsgHeartbeat, to: 3, from: 1, term: 2, ..Default::default() };
        assert_eq!(decode(&Bytes::from(encode(&plain))).unwrap(), plain);
    }

    #[test]
    fn every_type_round_trips() {
        for t in 0..=18u8 {
            let m = Message { msg_type: message_type(t).unwrap(), to: 1, from: 2, ..Default::default() };
            assert_eq!(decode(&Bytes::from(encode(&m))).unwrap().msg_type as u8, t);
        }
        assert_eq!(message_type(19), None);
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        let full = encode(&sample());
        for n in 0..full.len() {
            let got = decode(&Bytes::copy_from_slice(&full[..n]));
            assert!(matches!(got, Err(CodecError::Truncated(_))), "prefix of {n} bytes: {got:?}");
        }
    }

    #[test]
    fn bad_input_is_refused_not_trusted() {
        let mut v = encode(&sample());
        v.push(0);
        assert_eq!(decode(&Bytes::from(v)), Err(CodecError::Trailing(1)));
        let mut v = encode(&sample());
        v[0] = 2;
        assert_eq!(decode(&Bytes::from(v)), Err(CodecError::Version(2)));
        let mut v = encode(&sample());
        v[1] = 200;
        assert_eq!(decode(&Bytes::from(v)), Err(CodecError::MessageType(200)));
        // A count of four billion entries in a short message: refused
        // before anything is allocated for them.
        let m = Message { msg_type: MessageType::MsgAppend, ..Default::default() };
        let mut v = encode(&m);
        let count_at = v.len() - 5;
        v[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&Bytes::from(v)), Err(CodecError::Truncated(_))));
    }
}
