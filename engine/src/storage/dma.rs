//! The real disk: glommio DMA files, O_DIRECT through io_uring.
//!
//! Segment files are glommio [`DmaFile`]s. Small metadata files use `std::fs`
//! on glommio's blocking-thread pool, so an fsync of a checkpoint never stalls
//! the reactor; they are written rarely (segment roll, epoch change, clean
//! shutdown) and whole, which direct I/O would only make slower.
//!
//! # The polled-I/O probe
//! glommio 0.9 decides once per block device whether it supports polled I/O by
//! reading the first sector of the first DMA file opened on it. If that file is
//! empty the read "succeeds" with zero bytes, glommio concludes the device is
//! pollable, and every later DMA read on the device fails with EOPNOTSUPP.
//! [`DmaStorage::new`] therefore opens a probe file it has filled with one
//! sector of data before any other DMA file is opened on the data directory's
//! device. `tests::first_dma_file_opened_can_be_empty` pins this.

use super::blocking::{remove_file, sync_dir};
use super::doorbell::submitted;
use super::reaper::{Reaper, DEFAULT_DELETION_BYTES_PER_SEC, DEFAULT_FILE_DELETE_DELAY};
use super::{IoBuf, Storage, StorageFile};
use crate::constants::SECTOR_BYTES;
use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Name of the probe file in the data directory.
pub const PROBE_FILE: &str = ".dma-probe";

/// `SPINDLE_IO_SPLIT=0` in the environment writes a rewritten sector and
/// the new bytes after it as one request again (see `write_at`), for A/B
/// measurements.
fn split_writes_disabled() -> bool {
    thread_local! {
        static DISABLED: bool = std::env::var_os("SPINDLE_IO_SPLIT").is_some_and(|v| v == "0");
    }
    DISABLED.with(|d| *d)
}

#[derive(Clone, Debug)]
pub struct DmaStorage {
    /// This core's, shared by every clone.
    reaper: Rc<Reaper>,
}

pub struct DmaBuf(DmaBuffer);

impl AsRef<[u8]> for DmaBuf {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
impl AsMut<[u8]> for DmaBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}
impl IoBuf for DmaBuf {
    fn trim(&mut self, len: usize) {
        self.0.trim_to_size(len);
    }
    fn untrim(&mut self, len: usize) -> bool {
        // `DmaBuffer::untrim` is Spindle's patch to glommio 0.9.
        self.0.untrim();
        if self.0.len() < len {
            return false;
        }
        self.0.trim_to_size(len);
        true
    }
}

pub struct DmaStorageFile {
    file: DmaFile,
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    e.into()
}

/// Runs blocking filesystem work off the reactor thread.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    glommio::executor().spawn_blocking(f).await
}

impl DmaStorage {
    /// Prepares direct I/O on the device holding `data_dir`: creates the
    /// directory and defeats glommio's polled-I/O probe (module docs). Call
    /// before opening any DMA file on that device, once per executor.
    pub async fn new(data_dir: &Path) -> io::Result<DmaStorage> {
        // Armed by the time the awaits below return.
        super::doorbell::install();
        let dir = data_dir.to_path_buf();
        let probe: PathBuf = dir.join(PROBE_FILE);
        let probe2 = probe.clone();
        blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&probe2, vec![0x5au8; SECTOR_BYTES])?;
            Ok(())
        })
        .await?;
        let f = OpenOptions::new().read(true).write(true).dma_open(&probe).await.map_err(to_io)?;
        let got = f.read_at_aligned(0, SECTOR_BYTES).await.map_err(to_io)?;
        f.close().await.map_err(to_io)?;
        if got.len() != SECTOR_BYTES {
            return Err(io::Error::other("direct-I/O probe read came back short"));
        }
        Ok(DmaStorage { reaper: Reaper::new(DEFAULT_DELETION_BYTES_PER_SEC, DEFAULT_FILE_DELETE_DELAY) })
    }

    /// Frees deleted files at `bytes_per_sec` (0: each at once), and the
    /// files logs discard `file_delay` after, instead of the defaults
    /// (`log.deletion.max.bytes.per.sec`, `log.segment.delete.delay.ms`).
    /// Call before handing out clones.
    pub fn with_deletion_pace(self, bytes_per_sec: u64, file_delay: Duration) -> DmaStorage {
        DmaStorage { reaper: Reaper::new(bytes_per_sec, file_delay) }
    }

    /// Renames the directory `dir` (a deleted partition's) to a tombstone,
    /// durably, and frees its files in the background, at a pace.
    pub async fn delete_dir(&self, dir: &Path) -> io::Result<()> {
        self.reaper.delete_dir(dir).await
    }

    /// Frees a tombstone an earlier run left (or start-up made) in the
    /// background, at a pace.
    pub fn free_tombstone(&self, tomb: PathBuf) {
        self.reaper.enqueue(tomb);
    }
}

impl DmaStorageFile {
    /// Writes all of `buf` at `pos` as one request.
    async fn write_whole(&self, buf: DmaBuf, pos: u64) -> (io::Result<()>, DmaBuf) {
        let len = buf.0.len();
        // `write_rc_at`, not `write_at`: the latter consumes the buffer, and
        // the log recycles it. glommio drops its clone of the `Rc` when the
        // I/O completes, so the buffer is ours alone again afterwards.
        let shared = Rc::new(buf.0);
        let r = submitted(self.file.write_rc_at(shared.clone(), pos)).await.map_err(to_io);
        let r = r.and_then(|n| {
            if n != len {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("short direct write: {n} of {len} bytes"),
                ));
            }
            Ok(())
        });
        match Rc::try_unwrap(shared) {
            Ok(b) => (r, DmaBuf(b)),
            // Still referenced by the reactor (not expected after completion):
            // give the caller a fresh buffer rather than wait.
            Err(_) => (r, DmaBuf(self.file.alloc_dma_buffer(len))),
        }
    }
}

impl StorageFile for DmaStorageFile {
    type Buf = DmaBuf;

    fn alloc_buf(&self, len: usize) -> DmaBuf {
        debug_assert_eq!(len % SECTOR_BYTES, 0);
        // Not zeroed: the log zeroes the padding it writes, and filling a
        // 1 MiB buffer that is about to be overwritten would cost a pass.
        DmaBuf(self.file.alloc_dma_buffer(len))
    }

    /// With `rewritten` bytes at the start that overwrite written sectors,
    /// and new ones after them, two writes go out together: the rewritten
    /// sectors from a copy, then the rest. On ext4 a direct write of blocks
    /// already written and blocks only reserved (unwritten extents) must
    /// take the inode lock exclusively, so it cannot be issued without
    /// blocking (RWF_NOWAIT gets EAGAIN) and io_uring hands it to an io-wq
    /// worker thread, a context switch each on the same core. Each half
    /// alone goes inline; submitted in one batch, the block layer merges
    /// them into one request again. The log rewrites a partial sector at
    /// the start of most writes, so without the split most of them went to
    /// workers (bench/RESULTS.md, session 12).
    async fn write_at(&self, mut buf: DmaBuf, pos: u64, rewritten: usize) -> (io::Result<()>, DmaBuf) {
        let len = buf.0.len();
        if rewritten == 0 || rewritten >= len || split_writes_disabled() {
            return self.write_whole(buf, pos).await;
        }
        debug_assert_eq!(rewritten % SECTOR_BYTES, 0);
        let mut head = self.file.alloc_dma_buffer(rewritten);
        head.as_bytes_mut().copy_from_slice(&buf.0.as_bytes()[..rewritten]);
        buf.0.trim_front(rewritten);
        let ((head_result, _), (body_result, mut buf)) =
            futures::future::join(self.write_whole(DmaBuf(head), pos), self.write_whole(buf, pos + rewritten as u64))
                .await;
        if !buf.untrim(len) {
            // `write_whole` gave a fresh buffer of the body's size back.
            buf = self.alloc_buf(len);
        }
        (head_result.and(body_result), buf)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let r = submitted(self.file.read_at_aligned(pos, len)).await.map_err(to_io)?;
        // One copy out of the DMA buffer: glommio's ReadResult is !Send
        // (it holds an Rc into the reactor), and the bytes we hand out must be
        // able to cross cores. This is the only copy on the cold read path.
        Ok(Bytes::copy_from_slice(&r))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        submitted(self.file.fdatasync()).await.map_err(to_io)
    }

    async fn allocate(&self, size: u64) -> io::Result<()> {
        // fallocate mode 0, not KEEP_SIZE: with the file size ahead, direct
        // writes do not extend the file, and ext4 accepts them with
        // RWF_NOWAIT, so io_uring issues them inline instead of punting each
        // one to an io-wq worker (about +30% append bandwidth, see
        // bench/RESULTS.md). Recovery stops at the zero header of the
        // reserved space; the log trims sealed segments and closes cleanly.
        submitted(self.file.pre_allocate(size, false)).await.map_err(to_io)
    }

    async fn truncate(&self, size: u64) -> io::Result<()> {
        self.file.truncate(size).await.map_err(to_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(to_io)
    }
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;

    fn nudge(&self) {
        super::doorbell::nudge();
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaStorageFile> {
        // Read+write always: glommio's probe and our tail-page rewrite both read.
        let file = OpenOptions::new().read(true).write(true).create(create).dma_open(path).await.map_err(to_io)?;
        Ok(DmaStorageFile { file })
    }

    async fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let path = path.to_path_buf();
        blocking(move || match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn write_file_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let path = path.to_path_buf();
        let data = data.to_vec();
        blocking(move || {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&data)?;
                f.sync_data()?;
            }
            std::fs::rename(&tmp, &path)?;
            sync_dir(path.parent().unwrap_or(Path::new(".")))
        })
        .await
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || {
            remove_file(&path)?;
            sync_dir(path.parent().unwrap_or(Path::new(".")))
        })
        .await
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        // On this thread, as `rename`: an index file frees a few blocks.
        remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // On this thread: one short metadata operation, done by the time
        // the caller goes on. On the blocking pool, a cancelled roll could
        // leave it queued, to replace the segment a later roll created.
        std::fs::rename(from, to)
    }

    fn discard(&self, path: PathBuf) {
        self.reaper.discard(path);
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = dir.to_path_buf();
        blocking(move || sync_dir(&dir)).await
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        blocking(move || {
            std::fs::create_dir_all(&path)?;
            sync_dir(path.parent().unwrap_or(Path::new(".")))
        })
        .await
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = dir.to_path_buf();
        blocking(move || {
            let mut names = Vec::new();
            for e in std::fs::read_dir(&dir)? {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    fn run<T, F, Fut>(f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        LocalExecutorBuilder::default().io_memory(1 << 20).spawn(f).expect("executor").join().expect("join")
    }

    // Regression: glommio's polled-I/O probe reads the first DMA file opened
    // on a device. If that file was new and empty, the probe "succeeded" and
    // every later DMA read failed with EOPNOTSUPP (os error 95).
    #[test]
    fn first_dma_file_opened_can_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let storage = DmaStorage::new(&path).await.unwrap();
            let f = storage.open(&path.join("fresh.log"), true).await.unwrap();
            let mut buf = f.alloc_buf(SECTOR_BYTES);
            buf.as_mut()[..5].copy_from_slice(b"hello");
            f.write_at(buf, 0, 0).await.0.unwrap();
            f.fdatasync().await.unwrap();
            let back = f.read_at(0, SECTOR_BYTES).await.unwrap();
            assert_eq!(&back[..5], b"hello");
            let beyond = f.read_at(SECTOR_BYTES as u64, SECTOR_BYTES).await.unwrap();
            assert!(beyond.is_empty());
        });
    }

    // Regression: glommio hands queued disk requests to the kernel only when
    // it polls its rings, so a write queued while other tasks kept the core
    // busy waited until they ran dry or the task quota (100 ms by default)
    // ended, and the disk idled meanwhile. With the doorbell the executor
    // polls at the busy task's next yield point. Here the quota is a minute
    // and the busy task runs until another thread reads the written bytes
    // back from the file, so without the doorbell it runs into its deadline.
    #[test]
    fn a_write_reaches_the_disk_while_another_task_keeps_the_core_busy() {
        use std::os::unix::fs::FileExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        const DEADLINE: Duration = Duration::from_secs(5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let landed_while_busy = LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .preempt_timer(Duration::from_secs(60))
            .spawn(move || async move {
                let storage = DmaStorage::new(&path).await.unwrap();
                let file_path = path.join("busy.log");
                let f = storage.open(&file_path, true).await.unwrap();
                f.allocate(SECTOR_BYTES as u64).await.unwrap();
                let landed = Arc::new(AtomicBool::new(false));
                let observer = {
                    let (landed, file_path) = (landed.clone(), file_path.clone());
                    std::thread::spawn(move || {
                        let file = std::fs::File::open(&file_path).unwrap();
                        let start = Instant::now();
                        let mut byte = [0u8; 1];
                        // Outlives the busy task's deadline: a write that
                        // lands only after it must not count.
                        while start.elapsed() < 2 * DEADLINE {
                            file.read_at(&mut byte, 0).unwrap();
                            if byte[0] == 0xab {
                                landed.store(true, Ordering::Release);
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })
                };
                // The fallocate above rang; rings are spaced out.
                glommio::timer::sleep(crate::storage::doorbell::RING_INTERVAL_MIN * 2).await;
                let mut buf = f.alloc_buf(SECTOR_BYTES);
                buf.as_mut().fill(0xab);
                let write = glommio::spawn_local(async move { f.write_at(buf, 0, 0).await.0 });
                let busy = {
                    let landed = landed.clone();
                    glommio::spawn_local(async move {
                        let start = Instant::now();
                        while start.elapsed() < DEADLINE {
                            if landed.load(Ordering::Acquire) {
                                return true;
                            }
                            let spin = Instant::now();
                            while spin.elapsed() < Duration::from_micros(50) {
                                std::hint::spin_loop();
                            }
                            glommio::yield_if_needed().await;
                        }
                        false
                    })
                };
                let landed_while_busy = busy.await;
                write.await.unwrap();
                observer.join().unwrap();
                landed_while_busy
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(landed_while_busy, "the write stayed queued while another task kept the core busy");
    }

    // Regression: glommio notices a completed disk request only when it
    // polls its rings, and a core kept busy by ready tasks polls only at the
    // end of its task quota (100 ms by default); until then the task that
    // waits for the write does not run, and a log neither acknowledges the
    // append nor submits the next write. `Storage::nudge`, which the log
    // calls for every append it stages, makes such a core poll once
    // `doorbell::NUDGE_AFTER` has passed with I/O in flight. Here the quota
    // is a minute and the busy task, which nudges as appends do, runs until
    // the writer task has seen its write complete; without the nudge it runs
    // into its deadline.
    #[test]
    fn a_completed_write_is_noticed_while_another_task_keeps_the_core_busy() {
        use std::cell::Cell;
        use std::rc::Rc;
        use std::time::{Duration, Instant};
        const DEADLINE: Duration = Duration::from_secs(5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (noticed_while_busy, nudges) = LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .preempt_timer(Duration::from_secs(60))
            .spawn(move || async move {
                let storage = DmaStorage::new(&path).await.unwrap();
                let f = storage.open(&path.join("busy.log"), true).await.unwrap();
                f.allocate(SECTOR_BYTES as u64).await.unwrap();
                // The fallocate above rang; rings are spaced out.
                glommio::timer::sleep(crate::storage::doorbell::RING_INTERVAL_MIN * 2).await;
                let nudges_before = crate::storage::doorbell::nudges();
                let done = Rc::new(Cell::new(false));
                let mut buf = f.alloc_buf(SECTOR_BYTES);
                buf.as_mut().fill(0xab);
                let write = {
                    let done = done.clone();
                    glommio::spawn_local(async move {
                        let r = f.write_at(buf, 0, 0).await.0;
                        done.set(true);
                        r
                    })
                };
                let busy = {
                    let (done, storage) = (done.clone(), storage.clone());
                    glommio::spawn_local(async move {
                        let start = Instant::now();
                        while start.elapsed() < DEADLINE {
                            if done.get() {
                                return true;
                            }
                            let spin = Instant::now();
                            while spin.elapsed() < Duration::from_micros(50) {
                                std::hint::spin_loop();
                            }
                            storage.nudge();
                            glommio::yield_if_needed().await;
                        }
                        false
                    })
                };
                let noticed_while_busy = busy.await;
                write.await.unwrap();
                (noticed_while_busy, crate::storage::doorbell::nudges() - nudges_before)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(noticed_while_busy, "the completed write went unnoticed while another task kept the core busy");
        assert!(nudges >= 1, "noticed without a nudge: the test did not keep the core busy");
    }

    #[test]
    fn atomic_file_replacement_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let s = DmaStorage::new(&path).await.unwrap();
            let p = path.join("meta");
            assert_eq!(s.read_file(&p).await.unwrap(), None);
            s.write_file_atomic(&p, b"one").await.unwrap();
            s.write_file_atomic(&p, b"two").await.unwrap();
            assert_eq!(s.read_file(&p).await.unwrap().as_deref(), Some(&b"two"[..]));
            let names = s.list_dir(&path).await.unwrap();
            assert!(names.contains(&"meta".to_string()));
            assert!(!names.iter().any(|n| n.ends_with(".tmp")));
            s.remove(&p).await.unwrap();
            s.remove(&p).await.unwrap();
            assert_eq!(s.read_file(&p).await.unwrap(), None);
        });
    }

    /// (thread id, context switches) of this process's io_uring worker
    /// threads (io-wq), which run the requests io_uring cannot issue
    /// without blocking.
    fn io_workers() -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            if !status.lines().any(|l| l.starts_with("Name:") && l.contains("iou-wrk")) {
                continue;
            }
            let switches: u64 = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            out.push((task.file_name().to_string_lossy().into_owned(), switches));
        }
        out.sort();
        out
    }

    // The log starts most writes by rewriting the partial sector its last
    // write ended in. On ext4 one direct write over blocks already written
    // and blocks only reserved (unwritten extents) cannot be issued without
    // blocking, so io_uring handed it to an io-wq worker thread: at peak
    // produce, most of the broker's writes. Split in two, both halves go
    // inline (no worker wakes) and the bytes land as one write's would.
    #[test]
    fn a_write_that_rewrites_a_written_sector_lands_whole_without_a_worker_thread() {
        const LEN: usize = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let storage = DmaStorage::new(&path).await.unwrap();
            let file_path = path.join("segment.log");
            let f = storage.open(&file_path, true).await.unwrap();
            // Reserved as the log reserves segment space.
            f.allocate(1 << 20).await.unwrap();
            let mut first = f.alloc_buf(SECTOR_BYTES);
            first.as_mut().fill(b'a');
            f.write_at(first, 0, 0).await.0.unwrap();
            let is_ext4 = {
                let c = std::ffi::CString::new(file_path.to_str().unwrap()).unwrap();
                // SAFETY: a zeroed `statfs` is valid, and statfs fills it
                // from a NUL-terminated path.
                let mut st: libc::statfs = unsafe { std::mem::zeroed() };
                let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
                r == 0 && st.f_type == 0xEF53
            };
            let mut buf = f.alloc_buf(1 << 20);
            buf.trim(LEN);
            buf.as_mut()[..SECTOR_BYTES / 2].fill(b'a');
            buf.as_mut()[SECTOR_BYTES / 2..].fill(b'b');
            let workers = io_workers();
            let (r, mut back) = f.write_at(buf, 0, SECTOR_BYTES).await;
            r.unwrap();
            if is_ext4 {
                assert_eq!(io_workers(), workers, "an io-wq worker thread ran (or started) during the write");
            }
            assert_eq!(back.as_ref().len(), LEN, "the buffer comes back as it went");
            assert!(back.untrim(1 << 20), "and can grow back for reuse");
            let got = f.read_at(0, LEN).await.unwrap();
            assert!(got[..SECTOR_BYTES / 2].iter().all(|&b| b == b'a'));
            assert!(got[SECTOR_BYTES / 2..].iter().all(|&b| b == b'b'));
        });
    }

    // A discarded file waits out its delay (so a read that just found it
    // finishes), then shrinks a chunk at a time at the configured rate
    // before it goes. A discarded path already gone holds nothing up.
    #[test]
    fn a_discarded_file_is_freed_after_its_delay_a_chunk_at_a_time() {
        use super::super::reaper::CHUNK_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            // 200 ms between truncations.
            let storage =
                DmaStorage::new(&path).await.unwrap().with_deletion_pace(5 * CHUNK_BYTES, Duration::from_millis(500));
            let doomed = path.join("00000000000000000000.log.1.deleted");
            let full = 3 * CHUNK_BYTES;
            std::fs::File::create(&doomed).unwrap().set_len(full).unwrap();
            let start = std::time::Instant::now();
            storage.discard(path.join("gone.deleted"));
            storage.discard(doomed.clone());
            let mut sizes: Vec<u64> = Vec::new();
            while let Ok(m) = std::fs::metadata(&doomed) {
                if start.elapsed() < Duration::from_millis(400) {
                    assert_eq!(m.len(), full, "shrunk before its delay");
                }
                if sizes.last() != Some(&m.len()) {
                    sizes.push(m.len());
                }
                assert!(start.elapsed() < Duration::from_secs(30), "not freed: {sizes:?}");
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            assert!(start.elapsed() >= Duration::from_millis(500));
            assert!(
                sizes.len() >= 2 && sizes.iter().all(|s| [full, 2 * CHUNK_BYTES, CHUNK_BYTES].contains(s)),
                "{sizes:?}"
            );
        });
    }
}
