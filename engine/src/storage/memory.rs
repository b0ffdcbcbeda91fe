//! An in-memory disk for tests: it keeps what was written apart from what was
//! made durable, so a simulated crash can lose exactly what a real one could.
//!
//! * [`MemStorage::crash_process`]: the process dies, the kernel lives. Every
//!   completed write survives (O_DIRECT writes have reached the device queue).
//! * [`MemStorage::crash_power`]: the machine dies. Each file goes back to its
//!   content at the last fdatasync, and each later write is, at random (from a
//!   seed), kept, lost, or torn (a prefix of its 512-byte sectors lands).
//!   Writes can land out of order, as on a real disk without barriers.
//! * [`MemStorage::fail_after`]: the Nth and every later write or fdatasync
//!   (or removal or rename) fails with EIO or ENOSPC, until
//!   [`MemStorage::clear_faults`].
//!
//! Directory operations and [`Storage::write_file_atomic`] are durable at
//! once: the real implementation fsyncs them before returning.
//!
//! Handles opened before a crash fail every operation afterwards, as the file
//! descriptors of a dead process would.

use super::{IoBuf, Storage, StorageFile};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Sector size the simulated disk tears at.
const TEAR_SECTOR_BYTES: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Eio,
    NoSpace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    Writes,
    Syncs,
    WritesAndSyncs,
    /// Changes to directory entries only: removals and renames (the error
    /// stands in for any failed unlink or rename).
    NameChanges,
}

/// An operation counted against the fault plan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Sync,
    NameChange,
}

#[derive(Clone, Copy, Debug)]
struct FaultPlan {
    remaining_ok: u64,
    on: FaultOn,
    kind: FaultKind,
}

enum Unsynced {
    Write { pos: u64, bytes: Vec<u8> },
    Truncate(u64),
}

#[derive(Default)]
struct MemFile {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

#[derive(Default)]
struct MemFs {
    files: BTreeMap<PathBuf, MemFile>,
    dirs: BTreeSet<PathBuf>,
    generation: u64,
    fault: Option<FaultPlan>,
    counters: Counters,
    /// Discarded files are kept until [`MemStorage::free_discarded`]
    /// instead of removed at once, as a reaper behind on its queue would.
    hold_discards: bool,
    /// Discarded files not freed yet; a crash forgets the list, not them.
    discarded: Vec<PathBuf>,
}

/// Operation counts, for tests that check coalescing (many appends, one write).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub writes: u64,
    pub syncs: u64,
    pub bytes_written: u64,
    /// Bytes of I/O buffers handed out (`alloc_buf`), for tests of what an
    /// idle log holds.
    pub buffer_bytes_allocated: u64,
    /// Bytes read from files (`read_at`), for tests of what an open reads.
    pub bytes_read: u64,
}

#[derive(Clone, Default)]
pub struct MemStorage {
    fs: Rc<RefCell<MemFs>>,
}

pub struct MemBuf(Vec<u8>);

impl AsRef<[u8]> for MemBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
impl AsMut<[u8]> for MemBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
impl IoBuf for MemBuf {
    fn trim(&mut self, len: usize) {
        self.0.truncate(len);
    }
    fn untrim(&mut self, len: usize) -> bool {
        self.0.resize(len, 0);
        true
    }
}

pub struct MemFileHandle {
    fs: Rc<RefCell<MemFs>>,
    path: PathBuf,
    generation: u64,
}

fn stale() -> io::Error {
    io::Error::other("file handle from before a simulated crash")
}

fn fault_error(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::Eio => io::Error::from_raw_os_error(5),
        FaultKind::NoSpace => io::Error::from_raw_os_error(28),
    }
}

/// xorshift64*: a tiny deterministic generator, so a crash replays from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn write_into(data: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let end = pos as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos as usize..end].copy_from_slice(bytes);
}

impl MemFs {
    /// Counts an operation against the fault plan; `Err` if it must fail.
    fn check_fault(&mut self, op: Op) -> io::Result<()> {
        let Some(plan) = self.fault.as_mut() else { return Ok(()) };
        let counts = match plan.on {
            FaultOn::Writes => op == Op::Write,
            FaultOn::Syncs => op == Op::Sync,
            FaultOn::WritesAndSyncs => op != Op::NameChange,
            FaultOn::NameChanges => op == Op::NameChange,
        };
        if !counts {
            return Ok(());
        }
        if plan.remaining_ok == 0 {
            return Err(fault_error(plan.kind));
        }
        plan.remaining_ok -= 1;
        Ok(())
    }
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process dies: completed writes survive, open handles go stale.
    pub fn crash_process(&self) {
        let mut fs = self.fs.borrow_mut();
        fs.generation += 1;
        fs.discarded.clear();
    }

    /// The machine loses power. See the module docs for what survives.
    pub fn crash_power(&self, seed: u64) {
        let mut fs = self.fs.borrow_mut();
        fs.generation += 1;
        fs.discarded.clear();
        let mut rng = Rng(seed | 1);
        for file in fs.files.values_mut() {
            let mut data = file.durable.clone();
            for op in file.unsynced.drain(..) {
                match op {
                    Unsynced::Truncate(size) => {
                        if rng.below(2) == 0 {
                            data.resize(size as usize, 0);
                        }
                    }
                    Unsynced::Write { pos, bytes } => match rng.below(3) {
                        0 => write_into(&mut data, pos, &bytes),
                        1 => {}
                        _ => {
                            let sectors = bytes.len().div_ceil(TEAR_SECTOR_BYTES) as u64;
                            let keep = rng.below(sectors) as usize * TEAR_SECTOR_BYTES;
                            write_into(&mut data, pos, &bytes[..keep.min(bytes.len())]);
                        }
                    },
                }
            }
            file.data = data.clone();
            file.durable = data;
        }
    }

    /// From now on, after `ok_ops` more counted operations succeed, every
    /// counted operation fails with `kind`.
    pub fn fail_after(&self, ok_ops: u64, on: FaultOn, kind: FaultKind) {
        self.fs.borrow_mut().fault = Some(FaultPlan { remaining_ok: ok_ops, on, kind });
    }

    pub fn clear_faults(&self) {
        self.fs.borrow_mut().fault = None;
    }

    pub fn counters(&self) -> Counters {
        self.fs.borrow().counters
    }

    /// Overwrites bytes of a file directly (durably), as a bad disk or a
    /// stray process would.
    pub fn corrupt(&self, path: &Path, pos: u64, bytes: &[u8]) {
        let mut fs = self.fs.borrow_mut();
        let f = fs.files.get_mut(path).expect("corrupt: no such file");
        write_into(&mut f.data, pos, bytes);
        write_into(&mut f.durable, pos, bytes);
    }

    /// Current content of a file (what a read would see).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.fs.borrow().files.get(path).map(|f| f.data.clone())
    }

    pub fn file_names(&self) -> Vec<PathBuf> {
        self.fs.borrow().files.keys().cloned().collect()
    }

    /// From now on, keeps discarded files until [`Self::free_discarded`].
    pub fn hold_discards(&self) {
        self.fs.borrow_mut().hold_discards = true;
    }

    /// Files discarded and held, not freed yet, in the order discarded.
    pub fn discarded(&self) -> Vec<PathBuf> {
        self.fs.borrow().discarded.clone()
    }

    /// Frees the held discarded files.
    pub fn free_discarded(&self) {
        let mut fs = self.fs.borrow_mut();
        for p in std::mem::take(&mut fs.discarded) {
            fs.files.remove(&p);
        }
    }
}

impl MemFileHandle {
    fn with<T>(&self, f: impl FnOnce(&mut MemFs, &Path) -> io::Result<T>) -> io::Result<T> {
        let mut fs = self.fs.borrow_mut();
        if fs.generation != self.generation {
            return Err(stale());
        }
        f(&mut fs, &self.path)
    }
}

fn file_mut<'a>(fs: &'a mut MemFs, path: &Path) -> io::Result<&'a mut MemFile> {
    fs.files.get_mut(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

impl StorageFile for MemFileHandle {
    type Buf = MemBuf;

    fn alloc_buf(&self, len: usize) -> MemBuf {
        self.fs.borrow_mut().counters.buffer_bytes_allocated += len as u64;
        MemBuf(vec![0; len])
    }

    async fn write_at(&self, buf: MemBuf, pos: u64, rewritten: usize) -> (io::Result<()>, MemBuf) {
        let r = self.with(|fs, path| {
            fs.check_fault(Op::Write)?;
            fs.counters.writes += 1;
            fs.counters.bytes_written += buf.0.len() as u64;
            let f = file_mut(fs, path)?;
            write_into(&mut f.data, pos, &buf.0);
            // Split as `DmaStorage` splits it: a power loss may keep, lose
            // or tear either part, whichever landed first.
            let split = if rewritten > 0 && rewritten < buf.0.len() { rewritten } else { 0 };
            if split > 0 {
                f.unsynced.push(Unsynced::Write { pos, bytes: buf.0[..split].to_vec() });
            }
            f.unsynced.push(Unsynced::Write { pos: pos + split as u64, bytes: buf.0[split..].to_vec() });
            Ok(())
        });
        (r, buf)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.with(|fs, path| {
            let f = file_mut(fs, path)?;
            let start = (pos as usize).min(f.data.len());
            let end = (pos as usize + len).min(f.data.len());
            let read = Bytes::copy_from_slice(&f.data[start..end]);
            fs.counters.bytes_read += read.len() as u64;
            Ok(read)
        })
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.with(|fs, path| {
            fs.check_fault(Op::Sync)?;
            fs.counters.syncs += 1;
            let f = file_mut(fs, path)?;
            f.durable = f.data.clone();
            f.unsynced.clear();
            Ok(())
        })
    }

    async fn allocate(&self, _size: u64) -> io::Result<()> {
        self.with(|fs, path| file_mut(fs, path).map(|_| ()))
    }

    async fn truncate(&self, size: u64) -> io::Result<()> {
        self.with(|fs, path| {
            let f = file_mut(fs, path)?;
            f.data.resize(size as usize, 0);
            f.unsynced.push(Unsynced::Truncate(size));
            Ok(())
        })
    }

    async fn size(&self) -> io::Result<u64> {
        self.with(|fs, path| Ok(file_mut(fs, path)?.data.len() as u64))
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for MemStorage {
    type File = MemFileHandle;

    async fn open(&self, path: &Path, create: bool) -> io::Result<MemFileHandle> {
        let mut fs = self.fs.borrow_mut();
        if !fs.files.contains_key(path) {
            if !create {
                return Err(io::ErrorKind::NotFound.into());
            }
            fs.files.insert(path.to_path_buf(), MemFile::default());
        }
        Ok(MemFileHandle { fs: self.fs.clone(), path: path.to_path_buf(), generation: fs.generation })
    }

    async fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.fs.borrow().files.get(path).map(|f| f.data.clone()))
    }

    async fn write_file_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.check_fault(Op::Sync)?;
        let f = MemFile { data: data.to_vec(), durable: data.to_vec(), unsynced: Vec::new() };
        fs.files.insert(path.to_path_buf(), f);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        // Directory changes are durable at once here (module docs).
        self.unlink(path)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.check_fault(Op::NameChange)?;
        fs.files.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.check_fault(Op::NameChange)?;
        let f = fs.files.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        fs.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn discard(&self, path: PathBuf) {
        let mut fs = self.fs.borrow_mut();
        if fs.hold_discards {
            fs.discarded.push(path);
        } else {
            fs.files.remove(&path);
        }
    }

    async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.fs.borrow_mut().dirs.insert(path.to_path_buf());
        Ok(())
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.fs.borrow();
        let mut names: Vec<String> = fs
            .files
            .keys()
            .chain(fs.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}
