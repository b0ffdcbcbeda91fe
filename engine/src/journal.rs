//! The ack journal: a copy of a leader's newest batches in host memory
//! outside the broker process, so that an append can be acknowledged before
//! its direct write completes and still survive a crash of the process.
//!
//! Kafka acknowledges acks=1 once a batch is in the OS page cache: a killed
//! broker loses nothing, a crashed host loses what writeback had not
//! written. Spindle bypasses the page cache (O_DIRECT), so without this its
//! acknowledgement waits for the device, and the device's tail becomes the
//! client's. With it, an append is acknowledged once its batches are both
//! staged and copied here; the copy is released when the write completes.
//!
//! One journal per core, a ring in a file mapped shared (on tmpfs, so it
//! costs no disk bandwidth). After a crash, [`recover`] reads the entries
//! not yet released and the broker appends those its logs lack
//! ([`crate::Log::replay_journal`]). What it guarantees: a killed process
//! (kill -9, OOM, a panic) loses nothing acknowledged; a host crash or power
//! loss may lose what was acknowledged in the last moments before it (at
//! most the writes in flight), as Kafka's acks=1 may lose what was in its
//! page cache.
//!
//! Layout: a 4 KiB header, then the ring. The header holds the data
//! directory the journal belongs to and one word, `head`, updated with a
//! single aligned store: the ring position of the oldest entry not released
//! and its sequence number. An entry is a 24-byte header (magic, sequence,
//! key and data lengths, a CRC-32C of those and the key), the key (which
//! log), and the data (Kafka record batches with their offsets assigned),
//! padded to 8 bytes. An entry's data is copied before its header, so a
//! header that checks out has its data whole: the process dies between
//! instructions, and the stores it made stay in the shared pages.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File header: magic, version, ring bytes, data directory.
const FILE_HEADER_BYTES: usize = 4096;
const FILE_MAGIC: &[u8; 8] = b"SPNDLAJ1";
const HEAD_AT: usize = 16;
const RING_BYTES_AT: usize = 24;
const DATA_DIR_LEN_AT: usize = 32;
const DATA_DIR_AT: usize = 64;

const ENTRY_HEADER_BYTES: usize = 24;
const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"SPAE");
const PAD_MAGIC: u32 = u32::from_le_bytes(*b"SPAP");

/// Smallest and largest ring: the head word keeps a ring position in 32
/// bits.
pub const JOURNAL_BYTES_MIN: u64 = 1024 * 1024;
pub const JOURNAL_BYTES_MAX: u64 = 1 << 31;

/// File names of journals: `spindle-ack-<anything>.journal`.
pub const JOURNAL_PREFIX: &str = "spindle-ack-";
pub const JOURNAL_SUFFIX: &str = ".journal";

/// A core's ack journal. See the module docs.
pub struct AckJournal {
    path: PathBuf,
    map: Mapping,
    ring_bytes: u64,
    inner: RefCell<Inner>,
}

struct Inner {
    /// Ring position (monotonic) of the oldest entry not released.
    head: u64,
    head_seq: u64,
    /// Ring position (monotonic) where the next entry goes.
    tail: u64,
    /// From `head_seq` on: each entry's end position, and whether released.
    entries: VecDeque<(u64, bool)>,
    /// Entries held and bytes copied since creation (metrics).
    held: u64,
    refused: u64,
    /// Closed at a stop: nothing more is held.
    closed: bool,
}

/// What a journal held when its process died.
pub struct Recovered {
    /// The data directory of the broker that wrote it.
    pub data_dir: PathBuf,
    /// Entries not released, oldest first: log key and batches.
    pub entries: Vec<(String, Bytes)>,
}

impl AckJournal {
    /// Creates the journal file at `path` (which must not exist: it may be
    /// another run's), `ring_bytes` of ring, for the broker whose data
    /// directory is `data_dir`. The pages are allocated now, not at the
    /// first append.
    pub fn create(path: &Path, data_dir: &Path, ring_bytes: u64) -> io::Result<AckJournal> {
        if !(JOURNAL_BYTES_MIN..=JOURNAL_BYTES_MAX).contains(&ring_bytes) || !ring_bytes.is_multiple_of(4096) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "ack journal size {ring_bytes} is not a multiple of 4096 in {JOURNAL_BYTES_MIN}..={JOURNAL_BYTES_MAX}"
                ),
            ));
        }
        let dir_bytes = data_dir.as_os_str().as_encoded_bytes();
        if dir_bytes.len() > FILE_HEADER_BYTES - DATA_DIR_AT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data directory path too long for the ack journal",
            ));
        }
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        let len = FILE_HEADER_BYTES as u64 + ring_bytes;
        // Allocated now: a tmpfs too small for it (a container's 64 MiB
        // /dev/shm) fails here, not with SIGBUS at a later store.
        if let Err(e) = allocate(&file, len) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let map = Mapping::new(&file, len as usize)?;
        let h = map.slice_mut(0, FILE_HEADER_BYTES);
        h[..8].copy_from_slice(FILE_MAGIC);
        h[RING_BYTES_AT..RING_BYTES_AT + 8].copy_from_slice(&ring_bytes.to_le_bytes());
        h[DATA_DIR_LEN_AT..DATA_DIR_LEN_AT + 4].copy_from_slice(&(dir_bytes.len() as u32).to_le_bytes());
        h[DATA_DIR_AT..DATA_DIR_AT + dir_bytes.len()].copy_from_slice(dir_bytes);
        let journal = AckJournal {
            path: path.to_path_buf(),
            map,
            ring_bytes,
            inner: RefCell::new(Inner {
                head: 0,
                head_seq: 0,
                tail: 0,
                entries: VecDeque::new(),
                held: 0,
                refused: 0,
                closed: false,
            }),
        };
        journal.store_head(0, 0);
        Ok(journal)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies one append's batches (`pieces`, concatenated) for log `key`.
    /// Returns the entry's sequence number, or `None` when the ring has no
    /// room (the append then waits for its write instead).
    pub fn hold(&self, key: &str, pieces: &[&[u8]]) -> Option<u64> {
        let data_len: usize = pieces.iter().map(|p| p.len()).sum();
        let total = entry_bytes(key.len(), data_len) as u64;
        let mut inner = self.inner.borrow_mut();
        let phys = inner.tail % self.ring_bytes;
        let pad = if self.ring_bytes - phys < total { self.ring_bytes - phys } else { 0 };
        if inner.closed || total > self.ring_bytes || inner.tail + pad + total - inner.head > self.ring_bytes {
            inner.refused += 1;
            return None;
        }
        let seq = inner.head_seq + inner.entries.len() as u64;
        if pad > 0 {
            if pad as usize >= ENTRY_HEADER_BYTES {
                let header = entry_header(PAD_MAGIC, seq, "", pad as usize - ENTRY_HEADER_BYTES);
                self.ring_mut(phys, ENTRY_HEADER_BYTES).copy_from_slice(&header);
            }
            inner.tail += pad;
        }
        let at = inner.tail % self.ring_bytes;
        let body = self.ring_mut(at + ENTRY_HEADER_BYTES as u64, key.len() + data_len);
        body[..key.len()].copy_from_slice(key.as_bytes());
        let mut pos = key.len();
        for p in pieces {
            body[pos..pos + p.len()].copy_from_slice(p);
            pos += p.len();
        }
        // The header last: once it checks out, the data before it is whole.
        // The fence keeps the compiler from moving the header's stores
        // before the body's (the CPU retires them in order, and a process
        // that dies loses none it retired).
        std::sync::atomic::compiler_fence(Ordering::Release);
        let header = entry_header(ENTRY_MAGIC, seq, key, data_len);
        self.ring_mut(at, ENTRY_HEADER_BYTES).copy_from_slice(&header);
        inner.tail += total;
        let end = inner.tail;
        inner.entries.push_back((end, false));
        inner.held += 1;
        Some(seq)
    }

    /// Releases entry `seq`: its batches are written. The head moves past
    /// every released entry at the front.
    pub fn release(&self, seq: u64) {
        let mut inner = self.inner.borrow_mut();
        let Some(i) = seq.checked_sub(inner.head_seq) else { return };
        match inner.entries.get_mut(i as usize) {
            Some(e) => e.1 = true,
            None => return,
        }
        let mut moved = false;
        while let Some(&(end, true)) = inner.entries.front() {
            inner.entries.pop_front();
            inner.head = end;
            inner.head_seq += 1;
            moved = true;
        }
        if moved {
            self.store_head(inner.head % self.ring_bytes, inner.head_seq);
        }
    }

    /// Entries held and not released.
    pub fn pending(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    /// Bytes of ring in use (held, or padding before held entries).
    pub fn used_bytes(&self) -> u64 {
        let inner = self.inner.borrow();
        inner.tail - inner.head
    }

    pub fn ring_bytes(&self) -> u64 {
        self.ring_bytes
    }

    /// Appends held since creation, and appends refused for want of room.
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.inner.borrow();
        (inner.held, inner.refused)
    }

    /// At a stop: refuses every later entry, and removes the file if
    /// every entry was released (a clean stop; otherwise the file stays for
    /// the next start's recovery). Returns whether it was removed.
    pub fn close(&self) -> io::Result<bool> {
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Ok(false);
        }
        inner.closed = true;
        if inner.entries.is_empty() {
            std::fs::remove_file(&self.path)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn store_head(&self, phys: u64, seq: u64) {
        let word = (phys & 0xffff_ffff) | ((seq & 0xffff_ffff) << 32);
        self.map.head().store(word, Ordering::Release);
    }

    fn ring_mut(&self, phys: u64, len: usize) -> &mut [u8] {
        debug_assert!(phys as usize + len <= self.ring_bytes as usize);
        self.map.slice_mut(FILE_HEADER_BYTES + phys as usize, len)
    }
}

/// Reads a journal a dead process left: the entries from its head on, in
/// order, up to the first that is missing, torn or out of sequence.
pub fn recover(path: &Path) -> io::Result<Recovered> {
    let file = std::fs::read(path)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
    if file.len() < FILE_HEADER_BYTES || &file[..8] != FILE_MAGIC {
        return Err(bad("not an ack journal"));
    }
    let word = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().expect("8 bytes"));
    let ring_bytes = word(RING_BYTES_AT);
    if ring_bytes > JOURNAL_BYTES_MAX || file.len() as u64 != FILE_HEADER_BYTES as u64 + ring_bytes {
        return Err(bad("size does not match its header"));
    }
    let dir_len = u32::from_le_bytes(file[DATA_DIR_LEN_AT..DATA_DIR_LEN_AT + 4].try_into().expect("4 bytes")) as usize;
    if dir_len > FILE_HEADER_BYTES - DATA_DIR_AT {
        return Err(bad("data directory length out of range"));
    }
    let dir_bytes = file[DATA_DIR_AT..DATA_DIR_AT + dir_len].to_vec();
    // SAFETY: written by `create` from `as_encoded_bytes` on this platform.
    let data_dir = PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(dir_bytes) });
    let head = word(HEAD_AT);
    let ring = &file[FILE_HEADER_BYTES..];
    let mut pos = head & 0xffff_ffff;
    let mut seq = head >> 32;
    let mut scanned = 0u64;
    let mut entries = Vec::new();
    while scanned < ring_bytes {
        let phys = pos % ring_bytes;
        let room = ring_bytes - phys;
        if room < ENTRY_HEADER_BYTES as u64 {
            pos += room;
            scanned += room;
            continue;
        }
        let h = &ring[phys as usize..phys as usize + ENTRY_HEADER_BYTES];
        let field = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        let (magic, entry_seq, key_len, data_len) = (field(0), field(4), field(8) as usize, field(12) as usize);
        if entry_seq != seq as u32 || (magic != ENTRY_MAGIC && magic != PAD_MAGIC) {
            break;
        }
        let total = entry_bytes(key_len, data_len) as u64;
        if total > room {
            break;
        }
        let body = &ring[phys as usize + ENTRY_HEADER_BYTES..phys as usize + ENTRY_HEADER_BYTES + key_len + data_len];
        if field(16) != header_crc(&h[..16], &body[..key_len]) {
            break;
        }
        if magic == ENTRY_MAGIC {
            let Ok(key) = std::str::from_utf8(&body[..key_len]) else { break };
            entries.push((key.to_string(), Bytes::copy_from_slice(&body[key_len..])));
            seq += 1;
            pos += total;
            scanned += total;
        } else {
            // Padding to the ring's end; the entry after it is at 0.
            pos += room;
            scanned += room;
        }
    }
    Ok(Recovered { data_dir, entries })
}

fn entry_bytes(key_len: usize, data_len: usize) -> usize {
    (ENTRY_HEADER_BYTES + key_len + data_len).div_ceil(8) * 8
}

fn entry_header(magic: u32, seq: u64, key: &str, data_len: usize) -> [u8; ENTRY_HEADER_BYTES] {
    let mut h = [0u8; ENTRY_HEADER_BYTES];
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..8].copy_from_slice(&(seq as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(key.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(data_len as u32).to_le_bytes());
    let crc = header_crc(&h[..16], key.as_bytes());
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn header_crc(fields: &[u8], key: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(fields), key)
}

/// Gives `file` `len` bytes of storage (fallocate; `set_len` where the file
/// system has no fallocate).
fn allocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on an open descriptor; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return file.set_len(len);
    }
    Err(e)
}

/// A shared, writable mapping of a whole file.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(file: &std::fs::File, len: usize) -> io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh mapping of `len` bytes of an open file; the
        // kernel checks the arguments.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }

    /// The bytes at `at..at + len`. Callers never hold two overlapping
    /// slices: the journal is used from one thread, and each caller writes
    /// its slice and drops it before the next.
    #[allow(clippy::mut_from_ref)]
    fn slice_mut(&self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "ack journal access out of bounds");
        // SAFETY: in bounds (checked), mapped for the mapping's life, and
        // not aliased (see above).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned, so `HEAD_AT` is 8-aligned,
        // and the word lives as long as the mapping.
        unsafe { &*self.ptr.add(HEAD_AT).cast::<AtomicU64>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spindle-journal-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn recovers_what_was_not_released_in_order() {
        let dir = tmp("order");
        let path = dir.join("j.journal");
        let j = AckJournal::create(&path, Path::new("/data/x"), JOURNAL_BYTES_MIN).unwrap();
        let a = j.hold("t-0", &[b"aaaa", b"AA"]).unwrap();
        let b = j.hold("t-1", &[b"bbbbbbbb"]).unwrap();
        let c = j.hold("t-0", &[b"cc"]).unwrap();
        // Out of order: `b` released first keeps the head at `a`.
        j.release(b);
        let r = recover(&path).unwrap();
        assert_eq!(r.data_dir, Path::new("/data/x"));
        let got: Vec<(String, Vec<u8>)> = r.entries.into_iter().map(|(k, d)| (k, d.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                ("t-0".to_string(), b"aaaaAA".to_vec()),
                ("t-1".to_string(), b"bbbbbbbb".to_vec()),
                ("t-0".to_string(), b"cc".to_vec())
            ]
        );
        j.release(a);
        let r = recover(&path).unwrap();
        assert_eq!(r.entries.len(), 1, "only `c` is left");
        assert_eq!(&r.entries[0].1[..], b"cc");
        j.release(c);
        assert!(recover(&path).unwrap().entries.is_empty());
        assert!(j.close().unwrap(), "an empty journal removes its file");
        assert!(!path.exists());
    }

    #[test]
    fn wraps_around_and_refuses_when_full() {
        let dir = tmp("wrap");
        let path = dir.join("j.journal");
        let j = AckJournal::create(&path, Path::new("/d"), JOURNAL_BYTES_MIN).unwrap();
        let chunk = vec![7u8; 300 * 1024];
        // Three fit (900 KiB of 1 MiB), a fourth does not.
        let seqs: Vec<u64> = (0..3).map(|_| j.hold("k", &[&chunk]).unwrap()).collect();
        assert!(j.hold("k", &[&chunk]).is_none());
        assert_eq!(j.counts(), (3, 1));
        // Release the first two: the fourth goes after padding, at the start.
        j.release(seqs[0]);
        j.release(seqs[1]);
        let mut tagged = chunk.clone();
        tagged[0] = 9;
        let d = j.hold("k", &[&tagged]).unwrap();
        assert!(j.used_bytes() > 2 * chunk.len() as u64, "the padding to the end counts");
        let r = recover(&path).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].1[0], 7);
        assert_eq!(r.entries[1].1[0], 9, "the wrapped entry is read after the padding");
        j.release(seqs[2]);
        j.release(d);
        assert_eq!(j.used_bytes(), 0);
        assert!(recover(&path).unwrap().entries.is_empty());
        drop(j);
        assert!(path.exists(), "dropped without close: kept");
    }

    #[test]
    fn a_torn_or_stale_entry_ends_recovery() {
        let dir = tmp("torn");
        let path = dir.join("j.journal");
        let j = AckJournal::create(&path, Path::new("/d"), JOURNAL_BYTES_MIN).unwrap();
        j.hold("k", &[b"one"]).unwrap();
        j.hold("k", &[b"two"]).unwrap();
        // A torn second header (its CRC no longer matches): only the first.
        let second = FILE_HEADER_BYTES + entry_bytes(1, 3);
        j.map.slice_mut(second + 12, 1)[0] ^= 1;
        let r = recover(&path).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(&r.entries[0].1[..], b"one");
        // Released entries left in the ring are not read again.
        j.map.slice_mut(second + 12, 1)[0] ^= 1;
        j.release(0);
        j.release(1);
        assert!(recover(&path).unwrap().entries.is_empty());
        j.hold("k", &[b"three"]).unwrap();
        let r = recover(&path).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(&r.entries[0].1[..], b"three");
    }
}
