//! Paced removal of deleted partitions' files.
//!
//! Freeing gigabytes at once stalls every writer on the device. ext4 frees
//! the blocks inside a journal commit, which the direct writes of other
//! partitions then wait for (their extent changes join the same journal),
//! and with online discard the device trims all of it meanwhile. Deleting a
//! 4-6 GiB topic under 300 MiB/s of acks=1 produce to another topic held
//! that topic's acks for 2-6 s at worst on the `discard` mount, and 0.7 s
//! without discard (bench/RESULTS.md, session 17).
//!
//! So a deleted partition's directory is first renamed out of the way,
//! durably, to `<dir>.<unique>-delete` (a "tombstone", Kafka's naming):
//! the partition is gone from then on, and a topic of the same name can be
//! created at once. Its files are then shrunk [`CHUNK_BYTES`] at a time, at
//! `log.deletion.max.bytes.per.sec` per core, and removed, one tombstone at
//! a time. A restart finds the tombstones left (listed before any core
//! runs) and removes them the same way, from core 0.

use spindle_engine::storage::blocking;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// End of a tombstone's name. A partition directory's name ends in its
/// partition number, so the two never mix (`partition_dir_name`).
pub const TOMBSTONE_SUFFIX: &str = "-delete";

/// How much of a file one truncation frees: small enough that the journal
/// commit (and trim) it causes stays short, large enough that a 1 GiB
/// segment takes 32 of them. Truncating a 4 GiB topic from outside the
/// broker in 32 MiB steps every 100 ms left a producer's ack p99 at 12 ms
/// where removing it at once took it past 1 s (session 17).
pub const CHUNK_BYTES: u64 = 32 << 20;

/// Default `log.deletion.max.bytes.per.sec`, per core.
pub const DEFAULT_DELETION_BYTES_PER_SEC: u64 = 256 << 20;

/// Removes tombstones in the background, one at a time, at `rate` bytes per
/// second (0: each file at once, unpaced).
pub struct Reaper {
    rate: u64,
    queue: RefCell<VecDeque<PathBuf>>,
    running: Cell<bool>,
}

impl Reaper {
    pub fn new(rate: u64) -> Rc<Reaper> {
        Rc::new(Reaper { rate, queue: RefCell::new(VecDeque::new()), running: Cell::new(false) })
    }

    /// Renames `dir` to a tombstone, durably, and queues its removal. A
    /// missing `dir` is nothing to do.
    pub async fn delete_dir(self: &Rc<Self>, dir: &Path) -> io::Result<()> {
        let tomb = tombstone_path(dir);
        // On this thread, as the engine renames: a rename cannot be left
        // in flight to land after a topic of the same name was created.
        match std::fs::rename(dir, &tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let parent = parent_of(dir);
        glommio::executor().spawn_blocking(move || blocking::sync_dir(&parent)).await?;
        self.enqueue(tomb);
        Ok(())
    }

    /// Queues a tombstone for removal, starting the background task if it
    /// is not running.
    pub fn enqueue(self: &Rc<Self>, tomb: PathBuf) {
        self.queue.borrow_mut().push_back(tomb);
        if !self.running.replace(true) {
            let me = self.clone();
            glommio::spawn_local(async move { me.run().await }).detach();
        }
    }

    async fn run(&self) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(tomb) = next else { break };
            match self.remove_paced(&tomb).await {
                Ok(bytes) => tracing::info!(dir = %tomb.display(), bytes, "removed deleted partition"),
                // Left for the next start to try again.
                Err(e) => tracing::error!(dir = %tomb.display(), error = %e, "removing deleted partition"),
            }
        }
        self.running.set(false);
    }

    /// Shrinks and removes every file in `tomb`, then `tomb` itself.
    /// Returns the bytes freed.
    async fn remove_paced(&self, tomb: &Path) -> io::Result<u64> {
        let dir = tomb.to_path_buf();
        let files = glommio::executor().spawn_blocking(move || blocking::list_files_with_sizes(&dir)).await?;
        let mut freed = 0;
        for (path, mut size) in files {
            freed += size;
            if self.rate > 0 {
                while size > CHUNK_BYTES {
                    size -= CHUNK_BYTES;
                    let p = path.clone();
                    glommio::executor().spawn_blocking(move || blocking::truncate_file(&p, size)).await?;
                    glommio::timer::sleep(self.pause(CHUNK_BYTES)).await;
                }
            }
            glommio::executor().spawn_blocking(move || blocking::remove_file(&path)).await?;
            if self.rate > 0 {
                glommio::timer::sleep(self.pause(size)).await;
            }
        }
        let dir = tomb.to_path_buf();
        glommio::executor().spawn_blocking(move || blocking::remove_dir_all(&dir)).await?;
        Ok(freed)
    }

    fn pause(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.rate as f64)
    }
}

fn parent_of(dir: &Path) -> PathBuf {
    dir.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// A tombstone name for `dir`, unique within this data directory.
pub fn tombstone_path(dir: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.{nanos:x}{seq:x}{TOMBSTONE_SUFFIX}"))
}

/// Renames `dir` to a tombstone and makes that durable, before the
/// executors run (start-up). Returns the tombstone.
pub fn bury(dir: &Path) -> io::Result<PathBuf> {
    let tomb = tombstone_path(dir);
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
    fn a_tombstone_is_never_taken_for_a_partition_directory() {
        let t = tombstone_path(Path::new("/data/orders-v2-17"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("orders-v2-17.") && name.ends_with(TOMBSTONE_SUFFIX), "{name}");
        assert_eq!(crate::server::partition_dir_name(name), None);
        assert_ne!(tombstone_path(Path::new("/data/t-0")), tombstone_path(Path::new("/data/t-0")));
    }
}
