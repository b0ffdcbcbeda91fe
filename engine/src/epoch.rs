//! Leader-epoch history: for each leader epoch, the first offset written in
//! it. The equivalent of Kafka's `leader-epoch-checkpoint`; replication uses
//! it to answer OffsetForLeaderEpoch and to find where a follower diverged.

const EPOCH_MAGIC: u32 = u32::from_le_bytes(*b"SPE1");
const ENTRY_BYTES: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<EpochEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leader-epoch checkpoint invalid: {0}")]
pub struct EpochCorrupt(pub &'static str);

impl EpochHistory {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Returns false (and
    /// changes nothing) if the history already has this or a later epoch.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if let Some(last) = self.entries.last() {
            if epoch <= last.epoch {
                return false;
            }
            assert!(start_offset >= last.start_offset, "epoch {epoch} would start before epoch {}", last.epoch);
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Forgets epochs that start at or after `end_offset` (log truncated).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Forgets epochs wholly before `start_offset` (log start advanced),
    /// keeping the one that covers it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if covering <= 1 {
            return false;
        }
        self.entries.drain(..covering - 1);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = first.start_offset.max(start_offset);
        }
        true
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch not above `epoch` and
    /// the offset where it ended (the next epoch's start, or `log_end` if it
    /// is the latest). `None` if every known epoch is above `epoch`.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1];
        let end = self.entries.get(i).map_or(log_end, |next| next.start_offset);
        Some((found.epoch, end))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.entries.len() * ENTRY_BYTES);
        out.extend_from_slice(&EPOCH_MAGIC.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.epoch.to_le_bytes());
            out.extend_from_slice(&e.start_offset.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<EpochHistory, EpochCorrupt> {
        if b.len() < 12 {
            return Err(EpochCorrupt("too short"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(EpochCorrupt("checksum mismatch"));
        }
        if u32::from_le_bytes(body[0..4].try_into().unwrap()) != EPOCH_MAGIC {
            return Err(EpochCorrupt("bad magic"));
        }
        let n = u32::from_le_bytes(body[4..8].try_into().unwrap()) as usize;
        if body.len() != 8 + n * ENTRY_BYTES {
            return Err(EpochCorrupt("length does not match count"));
        }
        let mut h = EpochHistory::default();
        for c in body[8..].chunks_exact(ENTRY_BYTES) {
            let epoch = i32::from_le_bytes(c[0..4].try_into().unwrap());
            let start_offset = i64::from_le_bytes(c[4..12].try_into().unwrap());
            if let Some(last) = h.entries.last() {
                if epoch <= last.epoch || start_offset < last.start_offset {
                    return Err(EpochCorrupt("entries not increasing"));
                }
            }
            h.entries.push(EpochEntry { epoch, start_offset });
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist() -> EpochHistory {
        let mut h = EpochHistory::default();
        assert!(h.assign(0, 0));
        assert!(h.assign(2, 100));
        assert!(h.assign(5, 250));
        h
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let h = hist();
        assert_eq!(h.end_offset_for(0, 300), Some((0, 100)));
        assert_eq!(h.end_offset_for(1, 300), Some((0, 100)));
        assert_eq!(h.end_offset_for(2, 300), Some((2, 250)));
        assert_eq!(h.end_offset_for(5, 300), Some((5, 300)));
        assert_eq!(h.end_offset_for(9, 300), Some((5, 300)));
        let mut late = EpochHistory::default();
        late.assign(3, 10);
        assert_eq!(late.end_offset_for(2, 300), None);
    }

    #[test]
    fn stale_epoch_is_not_assigned() {
        let mut h = hist();
        assert!(!h.assign(5, 400));
        assert!(!h.assign(1, 400));
        assert_eq!(h.entries().len(), 3);
    }

    #[test]
    fn truncation_drops_epochs_past_the_end() {
        let mut h = hist();
        assert!(h.truncate_from_end(250));
        assert_eq!(h.latest(), Some(EpochEntry { epoch: 2, start_offset: 100 }));
        assert!(!h.truncate_from_end(250));
    }

    #[test]
    fn start_truncation_keeps_the_covering_epoch() {
        let mut h = hist();
        assert!(h.truncate_from_start(120));
        assert_eq!(h.entries()[0], EpochEntry { epoch: 2, start_offset: 120 });
    }

    #[test]
    fn checkpoint_round_trips_and_detects_damage() {
        let h = hist();
        let b = h.encode();
        assert_eq!(EpochHistory::decode(&b).unwrap(), h);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(EpochHistory::decode(&bad).is_err());
        }
    }
}
