//! Paced freeing of deleted files: segments that retention, DeleteRecords
//! or a truncation dropped, and whole directories of deleted partitions.
//!
//! Freeing gigabytes at once stalls every writer on the device. ext4 frees
//! the blocks inside a journal commit, which the direct writes of other
//! partitions then wait for (their extent changes join the same journal),
//! and with online discard the device trims all of it meanwhile. Deleting a
//! 4-6 GiB topic under 300 MiB/s of acks=1 produce to another topic held
//! that topic's acks for 2-6 s at worst on the `discard` mount, and 0.7 s
//! without discard (bench/RESULTS.md, session 17).
//!
//! So what is deleted is first renamed out of the way, durably: a segment
//! file to `<name>.<unique>.deleted` by the log ([`DELETED_SUFFIX`]), a
//! partition directory to `<dir>.<unique>-delete` ([`TOMBSTONE_SUFFIX`]),
//! both Kafka's naming. From then on it is gone: nothing opens it again,
//! and a segment or topic of the same name can be created at once. Its
//! files are then shrunk [`CHUNK_BYTES`] at a time, at
//! `log.deletion.max.bytes.per.sec` per core, and removed, one queued item
//! at a time. A restart finds what was left (the log's open finds its
//! `.deleted` files, the broker lists tombstones before any core runs) and
//! frees it the same way.
//!
//! A deleted segment's file waits `log.segment.delete.delay.ms` (60 s, as
//! Kafka) before it is freed, so a fetch that read its position just
//! before the deletion still finds the bytes.
//!
//! The pace gives way only to a filling disk: while the file system holds
//! less than [`LOW_SPACE_FRACTION`] free, the reaper frees at once, as a
//! full disk fails every write. A backlog alone does not speed it up, as
//! lowering a big topic's retention makes one that pacing is meant to
//! spread out. Logs that delete faster than the rate for long (retention
//! without recycling under heavy produce) build a backlog that a warning
//! reports (over [`BACKLOG_WARN_SECS`] at the rate): raise the rate if it
//! persists.

use super::{blocking, dma};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// End of a tombstone's name. A partition directory's name ends in its
/// partition number, so the two never mix.
pub const TOMBSTONE_SUFFIX: &str = "-delete";

/// End of a deleted segment file's name. No name the log opens ends so.
pub const DELETED_SUFFIX: &str = ".deleted";

/// How much of a file one truncation frees: small enough that the journal
/// commit (and trim) it causes stays short; a 1 GiB segment takes 512 of
/// them, 128 a second at the default rate. Under online discard another
/// topic's ack p99 while 7 GiB were freed at 256 MiB/s was 4.4-5.5 ms in
/// 32 MiB steps, 1.9-2.0 ms in 8 MiB steps and 1.1 ms in 2 MiB steps,
/// against 0.8 ms with nothing freed (bench/RESULTS.md, session 19).
pub const CHUNK_BYTES: u64 = 2 << 20;

/// Default `log.deletion.max.bytes.per.sec`, per core.
pub const DEFAULT_DELETION_BYTES_PER_SEC: u64 = 256 << 20;

/// Default `log.segment.delete.delay.ms`, Kafka's.
pub const DEFAULT_FILE_DELETE_DELAY: Duration = Duration::from_secs(60);

/// Below this fraction of its file system free, the reaper frees at once.
pub const LOW_SPACE_FRACTION: f64 = 0.10;

/// A backlog of due files that would take longer than this at the
/// configured rate is reported (at most once a minute).
pub const BACKLOG_WARN_SECS: u64 = 10;

/// Frees queued files and directories in the background, one at a time, at
/// `rate` bytes per second (0: each file at once, unpaced). One per core.
#[derive(Debug)]
pub struct Reaper {
    rate: u64,
    /// How long a discarded file stays before it is freed.
    file_delay: Duration,
    queue: RefCell<VecDeque<Doomed>>,
    running: Cell<bool>,
    /// When the backlog was last reported.
    warned: Cell<Option<Instant>>,
}

#[derive(Debug)]
struct Doomed {
    path: PathBuf,
    /// Not freed before this.
    not_before: Instant,
}

impl Reaper {
    /// A reaper freeing `rate` bytes per second, and files queued by
    /// [`Reaper::discard`] no sooner than `file_delay` after.
    pub fn new(rate: u64, file_delay: Duration) -> Rc<Reaper> {
        Rc::new(Reaper {
            rate,
            file_delay,
            queue: RefCell::new(VecDeque::new()),
            running: Cell::new(false),
            warned: Cell::new(None),
        })
    }

    /// Renames `dir` to a tombstone, durably, and queues its removal. A
    /// missing `dir` is nothing to do.
    pub async fn delete_dir(self: &Rc<Self>, dir: &Path) -> io::Result<()> {
        let tomb = unique_path(dir, TOMBSTONE_SUFFIX);
        // On this thread, as the log renames: a rename cannot be left in
        // flight to land after a topic of the same name was created.
        match std::fs::rename(dir, &tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let parent = parent_of(dir);
        dma::blocking(move || blocking::sync_dir(&parent)).await?;
        self.enqueue(tomb);
        Ok(())
    }

    /// Queues a file a log deleted (renamed out of its namespace), to be
    /// freed no sooner than the file delay from now: a read that opened it
    /// just before finishes first (Kafka's `file.delete.delay.ms`).
    pub fn discard(self: &Rc<Self>, file: PathBuf) {
        self.push(Doomed { path: file, not_before: Instant::now() + self.file_delay });
    }

    /// Queues a tombstone (a directory) for freeing.
    pub fn enqueue(self: &Rc<Self>, tomb: PathBuf) {
        self.push(Doomed { path: tomb, not_before: Instant::now() });
    }

    /// Queues `d`, starting the background task if it is not running. A
    /// path gone by the time its turn comes (a deleted segment of a
    /// partition deleted since) is nothing to do.
    fn push(self: &Rc<Self>, d: Doomed) {
        self.queue.borrow_mut().push_back(d);
        if !self.running.replace(true) {
            let me = self.clone();
            glommio::spawn_local(async move { me.run().await }).detach();
        }
    }

    async fn run(&self) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(Doomed { path, not_before }) = next else { break };
            let wait = not_before.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                glommio::timer::sleep(wait).await;
            }
            match self.free_paced(&path).await {
                Ok(bytes) => tracing::info!(path = %path.display(), bytes, "freed deleted files"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Left for the next start to try again.
                Err(e) => tracing::error!(path = %path.display(), error = %e, "freeing deleted files"),
            }
        }
        self.running.set(false);
    }

    /// Shrinks and removes the file at `path`, or every file in the
    /// directory at `path` and then the directory. Returns the bytes freed.
    async fn free_paced(&self, path: &Path) -> io::Result<u64> {
        let p = path.to_path_buf();
        let (is_dir, files) = dma::blocking(move || {
            let meta = std::fs::metadata(&p)?;
            if meta.is_dir() {
                Ok((true, blocking::list_files_with_sizes(&p)?))
            } else {
                Ok((false, vec![(p, meta.len())]))
            }
        })
        .await?;
        let mut freed = 0;
        // When the next step may start: the pause after each step counts
        // from when the step started, so the time the step itself took is
        // part of it, and the rate holds.
        let mut next = Instant::now();
        for (file, mut size) in files {
            freed += size;
            if self.rate > 0 {
                while size > CHUNK_BYTES {
                    size -= CHUNK_BYTES;
                    let f = file.clone();
                    dma::blocking(move || blocking::truncate_file(&f, size)).await?;
                    next = self.wait_after(next, &file, CHUNK_BYTES).await;
                }
            }
            let f = file.clone();
            dma::blocking(move || blocking::remove_file(&f)).await?;
            if self.rate > 0 {
                next = self.wait_after(next, &file, size).await;
            }
        }
        if is_dir {
            let dir = path.to_path_buf();
            dma::blocking(move || blocking::remove_dir_all(&dir)).await?;
        }
        Ok(freed)
    }

    /// Waits until `started` plus the pause for `bytes` of `file`, and
    /// returns when it stopped waiting: the next step's start.
    async fn wait_after(&self, started: Instant, file: &Path, bytes: u64) -> Instant {
        let until = started + self.pause(file, bytes).await;
        let now = Instant::now();
        if until > now {
            glommio::timer::sleep(until - now).await;
        }
        Instant::now()
    }

    /// How long to wait after freeing `bytes` of `file`: at the configured
    /// rate, or not at all while its file system is nearly full.
    async fn pause(&self, file: &Path, bytes: u64) -> Duration {
        let now = Instant::now();
        // Files only: deleted partitions are user actions, not a log
        // outpacing the rate. Files still in their delay are not due yet.
        let due: Vec<PathBuf> =
            self.queue.borrow().iter().filter(|d| d.not_before <= now).map(|d| d.path.clone()).collect();
        let dir = parent_of(file);
        let (free, backlog) = dma::blocking(move || {
            // A path that vanished counts as empty.
            Ok((blocking::free_fraction(&dir)?, due.iter().map(|p| blocking::file_len(p)).sum::<u64>()))
        })
        .await
        .unwrap_or((1.0, 0));
        if backlog > BACKLOG_WARN_SECS * self.rate
            && self.warned.get().is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            self.warned.set(Some(now));
            tracing::warn!(
                backlog_bytes = backlog,
                rate = self.rate,
                "deleted files due to be freed would take over {BACKLOG_WARN_SECS} s at \
                 log.deletion.max.bytes.per.sec; raise it if this persists"
            );
        }
        pause_for(bytes, self.rate, free)
    }
}

/// The wait after freeing `bytes` at `rate` bytes per second, with the
/// fraction `free` of the file system free.
fn pause_for(bytes: u64, rate: u64, free: f64) -> Duration {
    if rate == 0 || free < LOW_SPACE_FRACTION {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(bytes as f64 / rate as f64)
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// `path` with `.<unique><suffix>` appended to its name: unique within the
/// process and across restarts (the clock moves on).
pub fn unique_path(path: &Path, suffix: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{name}.{nanos:x}{seq:x}{suffix}"))
}

/// Renames `dir` to a tombstone and makes that durable, before the
/// executors run (start-up). Returns the tombstone.
pub fn bury(dir: &Path) -> io::Result<PathBuf> {
    let tomb = unique_path(dir, TOMBSTONE_SUFFIX);
    std::fs::rename(dir, &tomb)?;
    blocking::sync_dir(&parent_of(dir))?;
    Ok(tomb)
}

/// Tombstones in `data_dir` (left by a run that stopped before removing
/// them, or made at start-up), listed before the cores run.
pub fn tombstones(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(blocking::list_subdirs(data_dir)?
        .into_iter()
        .filter(|n| n.ends_with(TOMBSTONE_SUFFIX))
        .map(|n| data_dir.join(n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_keep_the_original_name_in_front_and_the_suffix_at_the_end() {
        let t = unique_path(Path::new("/data/orders-v2-17"), TOMBSTONE_SUFFIX);
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("orders-v2-17.") && name.ends_with(TOMBSTONE_SUFFIX), "{name}");
        let d = unique_path(Path::new("/data/t-0/00000000000000000042.log"), DELETED_SUFFIX);
        assert_eq!(d.parent(), Some(Path::new("/data/t-0")));
        let name = d.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("00000000000000000042.log.") && name.ends_with(DELETED_SUFFIX), "{name}");
        assert_ne!(unique_path(Path::new("/data/t-0"), "x"), unique_path(Path::new("/data/t-0"), "x"));
    }

    #[test]
    fn the_pace_holds_until_the_file_system_is_nearly_full() {
        let mib = 1 << 20;
        assert_eq!(pause_for(32 * mib, 256 * mib, 0.5), Duration::from_millis(125));
        assert_eq!(pause_for(32 * mib, 256 * mib, LOW_SPACE_FRACTION), Duration::from_millis(125));
        assert_eq!(pause_for(32 * mib, 256 * mib, LOW_SPACE_FRACTION - 0.01), Duration::ZERO);
        assert_eq!(pause_for(32 * mib, 0, 0.5), Duration::ZERO, "0: unpaced");
    }
}
