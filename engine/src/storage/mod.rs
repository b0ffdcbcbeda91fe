//! The engine's only door to the disk.
//!
//! The log is written against these two traits, not against glommio, so the
//! same code runs on io_uring direct I/O ([`dma::DmaStorage`]) and on an
//! in-memory disk that tears writes, forgets what was never synced and fails
//! on demand ([`memory::MemStorage`]). Futures are `!Send`: every file belongs
//! to one core.
//!
//! Two kinds of file go through here. Segment files take large aligned writes
//! into buffers the file allocates ([`StorageFile::alloc_buf`]), so the bytes
//! are copied once, from the client's request into the DMA buffer, and never
//! again. Small metadata files (indexes, checkpoints, the epoch history) are
//! written whole and atomically ([`Storage::write_file_atomic`]): they are
//! rare, and atomic replacement is simpler to reason about than updates in
//! place.

pub mod blocking;
pub mod dma;
pub mod doorbell;
pub mod memory;
pub mod reaper;

use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};

/// A writable buffer suitable for the file that allocated it (aligned for
/// O_DIRECT where that matters).
pub trait IoBuf: AsRef<[u8]> + AsMut<[u8]> {
    /// Shortens the buffer to `len` bytes (a multiple of the sector size).
    fn trim(&mut self, len: usize);

    /// Grows a trimmed buffer back to `len` bytes (at most its allocated
    /// size), content unspecified, so it can be reused. Returns false if the
    /// buffer cannot grow back (a glommio `DmaBuffer`'s trim is final); the
    /// caller then drops it.
    fn untrim(&mut self, len: usize) -> bool;
}

#[allow(async_fn_in_trait)]
pub trait StorageFile {
    type Buf: IoBuf;

    /// A buffer of `len` bytes, content unspecified; `len` is a multiple of
    /// [`crate::constants::SECTOR_BYTES`]. A buffer allocated by one file may
    /// be written to any file of the same storage (the log recycles write
    /// buffers across segments).
    fn alloc_buf(&self, len: usize) -> Self::Buf;

    /// Writes all of `buf` at `pos` (both sector-aligned) and hands the buffer
    /// back once the write completed or failed, so the caller can reuse it
    /// instead of allocating (and page-faulting) a fresh one. A short write is
    /// an error: for direct I/O it only happens when the disk is full.
    ///
    /// The first `rewritten` bytes of `buf` (0 or a multiple of the sector
    /// size) go over sectors an earlier write wrote. A storage may write
    /// them apart from the rest, as two writes in flight together that can
    /// land in either order (`DmaStorage` does, see its `write_at`).
    async fn write_at(&self, buf: Self::Buf, pos: u64, rewritten: usize) -> (io::Result<()>, Self::Buf);

    /// Reads up to `len` bytes at `pos` (sector-aligned); fewer at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;

    async fn fdatasync(&self) -> io::Result<()>;

    /// Reserves disk blocks up to `size`. May move the file size ahead to
    /// `size` (`DmaStorage` does, so direct writes do not extend the file);
    /// the reserved space reads as zeros.
    async fn allocate(&self, size: u64) -> io::Result<()>;

    async fn truncate(&self, size: u64) -> io::Result<()>;

    async fn size(&self) -> io::Result<u64>;

    async fn close(self) -> io::Result<()>;
}

#[allow(async_fn_in_trait)]
pub trait Storage: Clone + 'static {
    type File: StorageFile + 'static;

    /// Opens `path` for reading and writing, creating it if `create`.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;

    /// The whole content of a small file, or `None` if it does not exist.
    async fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;

    /// Replaces `path` with `data` atomically and durably: after this
    /// returns, a crash leaves the new content; before, the old or the new.
    async fn write_file_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// Removes a file durably. Removing a missing file is not an error.
    async fn remove(&self, path: &Path) -> io::Result<()>;

    /// Removes a small file (an index) before returning, durable once
    /// [`Storage::sync_dir`] of the directory returns, so that many removals
    /// share one sync. Removing a missing file is not an error. Freeing a
    /// large file holds the calling thread: those go to [`Storage::discard`].
    fn unlink(&self, path: &Path) -> io::Result<()>;

    /// Renames a file, replacing `to` if it exists, before returning: not
    /// a request that could still land after a cancelled caller moved on
    /// (and after it created `to` anew). Durable once [`Storage::sync_dir`]
    /// of the directory returns.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Frees the file at `path`, which the log has renamed out of its
    /// namespace (to a name ending in [`reaper::DELETED_SUFFIX`]) and never
    /// touches again. The freeing may come later: `DmaStorage` queues it for
    /// its [`reaper::Reaper`], which frees files at a pace so that other
    /// writers on the device do not stall. A crash before it is freed
    /// leaves the file, and the log's next open discards it again.
    fn discard(&self, path: PathBuf);

    /// Makes the directory's entries durable (renames, creations).
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// File names (not paths) in `dir`.
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Called by the log for every append it stages, that is, on a core that
    /// is busy: a storage whose completions are only noticed when the
    /// executor polls can make it poll now (`DmaStorage`, through
    /// [`doorbell::nudge`]). Nothing by default.
    fn nudge(&self) {}
}

/// An I/O error with the operation and path that failed, so a log line says
/// which file on which disk.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    pub op: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl IoError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        IoError { op, path: path.display().to_string(), source }
    }

    /// The disk is full (ENOSPC or EDQUOT).
    pub fn is_no_space(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc_enospc) if libc_enospc == ENOSPC || libc_enospc == EDQUOT)
            || self.source.kind() == io::ErrorKind::StorageFull
    }
}

const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Adds operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(op, path, e))
    }
}
