//! The metadata quorum's Raft log, kept by the storage engine.
//!
//! `DATA_DIR/raft/` is an engine [`Log`]: Raft entry `i` of term `t` is one
//! Kafka v2 batch at base offset `i - 1` with partition leader epoch `t`,
//! holding one record whose key is `[entry_type] ++ context` and whose value
//! is the entry's data. So the engine's checks carry over: CRC-32C on every
//! batch, torn tails cut at recovery, `truncate_to` for a conflicting
//! suffix, and the epoch history is the term history. Entries are written
//! durably (fdatasync) before raft-rs is told they are persisted.
//!
//! The hard state (term, vote, commit) sits beside it in `raft/hard-state`:
//! `"SPR1"`, term u64, vote u64, commit u64 (little-endian), CRC-32C of the
//! 28 bytes before it, replaced atomically. It is rewritten only when the
//! term or vote changes: a commit index that lags is recomputed by Raft, and
//! the whole log is replayed on start anyway.

use bytes::Bytes;
use spindle_engine::records::{encode_batch_at, iter_records, NewRecord};
use spindle_engine::storage::Storage;
use spindle_engine::{AdminError, AppendError, BatchCache, Durability, Log, LogConfig, ReadError, RecoveryError};
use spindle_replication::quorum::{Entry, EntryType, HardState, Restored};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The Raft log's directory under the data directory. It can never be a
/// partition's (those are `<topic>-<digits>`).
pub const RAFT_DIR: &str = "raft";
pub const HARD_STATE_FILE: &str = "hard-state";
const HARD_STATE_MAGIC: &[u8; 4] = b"SPR1";
const HARD_STATE_BYTES: usize = 4 + 3 * 8 + 4;
/// Segment size of the Raft log: metadata is small, and a small segment
/// keeps the preallocation small too.
const RAFT_SEGMENT_BYTES: u64 = 16 << 20;
/// The Raft log's own batch cache: it is read once, at start.
const RAFT_CACHE_BYTES: usize = 1 << 20;
/// Bytes read per call when the log is read back at start.
const RAFT_READ_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    #[error("opening the raft log: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("reading the raft log: {0}")]
    Read(#[from] ReadError),
    #[error("appending to the raft log: {0}")]
    Append(#[from] AppendError),
    #[error("truncating the raft log: {0}")]
    Truncate(#[from] AdminError),
    #[error("raft hard state: {0}")]
    HardState(String),
    #[error("raft log entry at index {index} is malformed: {why}")]
    Malformed { index: u64, why: &'static str },
}

pub struct RaftLog<S: Storage> {
    log: Log<S>,
    storage: S,
    hard_state_path: PathBuf,
    /// Term and vote last written to `hard-state`.
    written: (u64, u64),
}

impl<S: Storage> RaftLog<S> {
    /// Opens (or creates) the log under `data_dir` and reads back all it
    /// holds: raft-rs is started from it and replays it from index 1.
    pub async fn open(storage: S, data_dir: &Path, now_ms: i64) -> Result<(Self, Restored), RaftLogError> {
        let dir = data_dir.join(RAFT_DIR);
        // Kept forever (snapshots are a follow-up); small segments, the
        // metadata volume is small.
        let config = LogConfig { retention_ms: -1, segment_bytes: RAFT_SEGMENT_BYTES, ..LogConfig::default() };
        let cache = Rc::new(BatchCache::new(RAFT_CACHE_BYTES));
        let log = Log::open(storage.clone(), &dir, config, cache, now_ms).await?;
        let hard_state_path = dir.join(HARD_STATE_FILE);
        let mut hard_state = match storage.read_file(&hard_state_path).await {
            Ok(Some(b)) => decode_hard_state(&b)?,
            Ok(None) => HardState::default(),
            Err(e) => return Err(RaftLogError::HardState(format!("{}: {e}", hard_state_path.display()))),
        };
        let entries = read_entries(&log).await?;
        let last = entries.last().map_or(0, |e| e.index);
        hard_state.commit = hard_state.commit.min(last);
        let written = (hard_state.term, hard_state.vote);
        Ok((RaftLog { log, storage, hard_state_path, written }, Restored { hard_state, entries }))
    }

    /// Index of the last entry on disk (0 if none).
    pub fn last_index(&self) -> u64 {
        self.log.log_end_offset() as u64
    }

    /// Persists a ready's entries (replacing a conflicting suffix) and hard
    /// state, durably, before the caller tells raft-rs.
    pub async fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        now_ms: i64,
    ) -> Result<(), RaftLogError> {
        if let Some(first) = entries.first() {
            assert!(first.index >= 1, "raft indexes start at 1");
            if first.index <= self.last_index() {
                self.log.truncate_to(first.index as i64 - 1).await?;
            }
            let mut batches = Vec::new();
            for e in entries {
                let mut key = Vec::with_capacity(1 + e.context.len());
                key.push(e.entry_type as u8);
                key.extend_from_slice(&e.context);
                let term = i32::try_from(e.term)
                    .map_err(|_| RaftLogError::Malformed { index: e.index, why: "term does not fit a leader epoch" })?;
                let record = NewRecord { key: Some(&key), value: Some(&e.data) };
                batches.extend_from_slice(&encode_batch_at(e.index as i64 - 1, term, &[record], now_ms));
            }
            let opts = spindle_engine::ReplicaAppendOptions { now_ms, durability: Durability::Durable };
            self.log.append_replicated(Bytes::from(batches), opts).await?;
        }
        if let Some(hs) = hard_state {
            if (hs.term, hs.vote) != self.written {
                self.storage
                    .write_file_atomic(&self.hard_state_path, &encode_hard_state(hs))
                    .await
                    .map_err(|e| RaftLogError::HardState(format!("{}: {e}", self.hard_state_path.display())))?;
                self.written = (hs.term, hs.vote);
            }
        }
        Ok(())
    }

    pub async fn close(&self) -> Result<(), RaftLogError> {
        Ok(self.log.close().await?)
    }
}

async fn read_entries<S: Storage>(log: &Log<S>) -> Result<Vec<Entry>, RaftLogError> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let batches = log.read(next, RAFT_READ_BYTES, end).await?;
        if batches.is_empty() {
            break;
        }
        for b in &batches {
            let index = b.header.base_offset() as u64 + 1;
            let malformed = |why| RaftLogError::Malformed { index, why };
            let mut records = iter_records(&b.payload);
            let r = records.next().ok_or_else(|| malformed("no record"))?;
            let key = r.key.ok_or_else(|| malformed("no key"))?;
            let entry_type = match key.first() {
                Some(0) => EntryType::EntryNormal,
                Some(1) => EntryType::EntryConfChange,
                Some(2) => EntryType::EntryConfChangeV2,
                _ => return Err(malformed("unknown entry type")),
            };
            let term = u64::try_from(b.header.leader_epoch.get()).map_err(|_| malformed("negative term"))?;
            out.push(Entry {
                entry_type,
                term,
                index,
                data: r.value.unwrap_or_default(),
                context: key.slice(1..),
                ..Default::default()
            });
            next = b.header.next_offset();
        }
    }
    Ok(out)
}

fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    let mut b = Vec::with_capacity(HARD_STATE_BYTES);
    b.extend_from_slice(HARD_STATE_MAGIC);
    for v in [hs.term, hs.vote, hs.commit] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_hard_state(b: &[u8]) -> Result<HardState, RaftLogError> {
    let bad = |why: &str| RaftLogError::HardState(why.to_string());
    if b.len() != HARD_STATE_BYTES || &b[..4] != HARD_STATE_MAGIC {
        return Err(bad("not a hard-state file"));
    }
    let crc = u32::from_le_bytes(b[28..32].try_into().unwrap());
    if crc != crc32c::crc32c(&b[..28]) {
        return Err(bad("checksum mismatch"));
    }
    let at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    Ok(HardState { term: at(4), vote: at(12), commit: at(20), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use spindle_engine::storage::memory::MemStorage;

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        Entry {
            entry_type: EntryType::EntryNormal,
            term,
            index,
            data: Bytes::copy_from_slice(data.as_bytes()),
            context: Bytes::from_static(b"ctx"),
            ..Default::default()
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState { term, vote, commit, ..Default::default() }
    }

    fn open(s: &MemStorage) -> (RaftLog<MemStorage>, Restored) {
        block_on(RaftLog::open(s.clone(), Path::new("/data"), 1_000)).unwrap()
    }

    #[test]
    fn entries_and_hard_state_read_back_after_a_crash() {
        let s = MemStorage::new();
        let (mut log, restored) = open(&s);
        assert!(restored.entries.is_empty());
        assert_eq!(restored.hard_state, HardState::default());
        let first = vec![entry(1, 1, "a"), entry(2, 1, ""), entry(3, 2, "c")];
        block_on(log.persist(&first, Some(&hs(2, 1, 2)), 1_000)).unwrap();
        // A conflicting suffix from a new leader replaces entry 3 on.
        let second = vec![entry(3, 3, "c'"), entry(4, 3, "d")];
        block_on(log.persist(&second, Some(&hs(3, 2, 3)), 1_000)).unwrap();
        drop(log);
        s.crash_power(1);
        let (log, restored) = open(&s);
        let want = vec![entry(1, 1, "a"), entry(2, 1, ""), entry(3, 3, "c'"), entry(4, 3, "d")];
        assert_eq!(restored.entries, want);
        assert_eq!(restored.hard_state, hs(3, 2, 3));
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn a_commit_index_past_the_log_is_clamped() {
        let s = MemStorage::new();
        let (mut log, _) = open(&s);
        block_on(log.persist(&[entry(1, 1, "a")], Some(&hs(1, 1, 1)), 1_000)).unwrap();
        // Commit-only changes are not written; a later term change writes
        // whatever commit index raft-rs had then, possibly ahead of the
        // entries on disk after truncation.
        block_on(log.persist(&[], Some(&hs(2, 1, 9)), 1_000)).unwrap();
        drop(log);
        let (_, restored) = open(&s);
        assert_eq!(restored.hard_state, hs(2, 1, 1));
    }

    #[test]
    fn a_corrupt_hard_state_is_an_error_not_a_fresh_start() {
        let s = MemStorage::new();
        let (mut log, _) = open(&s);
        block_on(log.persist(&[entry(1, 1, "a")], Some(&hs(5, 2, 1)), 1_000)).unwrap();
        drop(log);
        let path = Path::new("/data").join(RAFT_DIR).join(HARD_STATE_FILE);
        let mut b = block_on(s.read_file(&path)).unwrap().unwrap();
        b[5] ^= 1;
        block_on(s.write_file_atomic(&path, &b)).unwrap();
        // Forgetting a vote could let this node vote twice in one term.
        let e = block_on(RaftLog::open(s.clone(), Path::new("/data"), 1_000)).err().unwrap();
        assert!(matches!(e, RaftLogError::HardState(_)), "{e}");
    }

    #[test]
    fn hard_state_round_trips_and_rejects_every_truncation() {
        let b = encode_hard_state(&hs(7, 3, 42));
        assert_eq!(decode_hard_state(&b).unwrap(), hs(7, 3, 42));
        for n in 0..b.len() {
            assert!(decode_hard_state(&b[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}
