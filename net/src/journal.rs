//! The broker's ack journals ([`spindle_engine::journal`]): one per core in
//! `ack.journal.dir`, so that a produce is acknowledged once its batches are
//! staged and copied there, before the disk write, and a killed broker still
//! loses nothing it acknowledged.
//!
//! At start-up, [`AckJournals::prepare`] reads the journals an earlier run
//! of this data directory left (a clean stop leaves none), and each core
//! replays a partition's entries as it opens it. Once every core has opened
//! its partitions, the old files go. Empty journals of data directories
//! that no longer exist (a test's, say) are removed on the way.
//!
//! Single node only for now: in a cluster the high watermark and the
//! followers count the leader's written end, so a journaled append would
//! gain nothing there.

use crate::config::BrokerConfig;
use crate::metadata::TopicMeta;
use bytes::Bytes;
use spindle_engine::journal::{self, AckJournal, JOURNAL_PREFIX, JOURNAL_SUFFIX};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// In the data directory: where the last run kept its journals, so that a
/// changed `ack.journal.dir` does not lose them.
const JOURNAL_DIR_FILE: &str = "ack-journal-dir";

/// The journals of one broker run, shared by its cores.
pub struct AckJournals {
    /// Where this run's journals go; `None`: journaling is off.
    dir: Option<PathBuf>,
    ring_bytes: u64,
    /// The data directory, canonical, as journals name it.
    data_dir: PathBuf,
    /// File names of this run's journals start with this.
    stem: String,
    /// Entries an earlier run left, by log key, until their partitions open.
    replay: Mutex<HashMap<String, Vec<Bytes>>>,
    /// That run's journal files.
    old_files: Mutex<Vec<PathBuf>>,
    replay_failed: AtomicBool,
    replayed_records: AtomicU64,
    cores_done: AtomicUsize,
}

/// A partition log's name in the journals: its topic id and index, so a
/// topic deleted and created again under its name is another log.
pub fn log_key(meta: &TopicMeta, partition: i32) -> String {
    format!("{}-{partition}", topic_id_hex(meta))
}

fn topic_id_hex(meta: &TopicMeta) -> String {
    meta.id.iter().map(|b| format!("{b:02x}")).collect()
}

impl AckJournals {
    /// Reads what earlier runs left (blocking; before the cores start).
    pub fn prepare(cfg: &BrokerConfig) -> AckJournals {
        let data_dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
        let hash = crc32c::crc32c(data_dir.as_os_str().as_encoded_bytes());
        let dir = if cfg.is_cluster() { None } else { cfg.ack_journal_dir.clone() };
        // The process id and the start time: a container's broker is
        // process 1 at every start, and a name must never be an earlier
        // run's (created with O_EXCL all the same).
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let journals = AckJournals {
            dir: dir.clone(),
            ring_bytes: cfg.ack_journal_bytes,
            stem: format!("{JOURNAL_PREFIX}{hash:08x}-{}-{started:x}-", std::process::id()),
            data_dir,
            replay: Mutex::new(HashMap::new()),
            old_files: Mutex::new(Vec::new()),
            replay_failed: AtomicBool::new(false),
            replayed_records: AtomicU64::new(0),
            cores_done: AtomicUsize::new(0),
        };
        if cfg.is_cluster() {
            return journals;
        }
        let pointer = cfg.data_dir.join(JOURNAL_DIR_FILE);
        let mut dirs: Vec<PathBuf> = dir.iter().cloned().collect();
        if let Ok(last) = std::fs::read_to_string(&pointer) {
            for d in last.lines().filter(|l| !l.is_empty()).map(PathBuf::from) {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        for d in &dirs {
            journals.recover_dir(d);
        }
        // This run's directory, and those holding the earlier runs' files
        // until they are replayed and removed.
        let mut record: Vec<PathBuf> = dir.iter().cloned().collect();
        for f in journals.old_files.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(parent) = f.parent() {
                if !record.iter().any(|d| d == parent) {
                    record.push(parent.to_path_buf());
                }
            }
        }
        journals.record_dirs(&cfg.data_dir, &record);
        journals
    }

    /// Writes the journal directories to look in at the next start.
    fn record_dirs(&self, data_dir: &Path, dirs: &[PathBuf]) {
        let pointer = data_dir.join(JOURNAL_DIR_FILE);
        let text: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
        // Whole or not at all: a torn list could lose a directory.
        let tmp = data_dir.join(format!("{JOURNAL_DIR_FILE}.tmp"));
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &pointer)) {
            tracing::warn!(path = %pointer.display(), error = %e, "cannot record the ack journal directories");
        }
    }

    /// Takes the entries of this data directory's journals in `dir`, and
    /// removes empty journals whose data directory is gone.
    fn recover_dir(&self, dir: &Path) {
        let Ok(names) = std::fs::read_dir(dir) else { return };
        for entry in names.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with(JOURNAL_PREFIX) || !name.ends_with(JOURNAL_SUFFIX) {
                continue;
            }
            let path = entry.path();
            let recovered = match journal::recover(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable ack journal left alone");
                    continue;
                }
            };
            if recovered.data_dir == self.data_dir {
                let n = recovered.entries.len();
                let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
                for (key, data) in recovered.entries {
                    replay.entry(key).or_default().push(data);
                }
                tracing::info!(path = %path.display(), entries = n, "ack journal of an earlier run");
                self.old_files.lock().unwrap_or_else(|e| e.into_inner()).push(path);
            } else if !recovered.data_dir.exists() {
                // Its broker's data directory may only be unmounted for now:
                // removed only if it holds nothing.
                if recovered.entries.is_empty() {
                    tracing::info!(path = %path.display(), data_dir = %recovered.data_dir.display(),
                        "removing an empty ack journal whose data directory is gone");
                    let _ = std::fs::remove_file(&path);
                } else {
                    tracing::warn!(path = %path.display(), data_dir = %recovered.data_dir.display(),
                        entries = recovered.entries.len(),
                        "ack journal of a data directory that does not exist; remove it if that directory is gone for good");
                }
            }
        }
    }

    /// This run's journal for `core`, or `None` (off, or it cannot be made:
    /// then appends wait for their writes).
    pub fn create(&self, core: usize) -> Option<Rc<AckJournal>> {
        let dir = self.dir.as_ref()?;
        let path = dir.join(format!("{}{core}{JOURNAL_SUFFIX}", self.stem));
        match AckJournal::create(&path, &self.data_dir, self.ring_bytes) {
            Ok(j) => Some(Rc::new(j)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "no ack journal: appends on this core are acknowledged once written");
                None
            }
        }
    }

    /// The entries an earlier run left for log `key`.
    pub fn take_replay(&self, key: &str) -> Vec<Bytes> {
        self.replay.lock().unwrap_or_else(|e| e.into_inner()).remove(key).unwrap_or_default()
    }

    /// A partition's entries that could not be replayed, for its next
    /// open to try again.
    pub fn put_back(&self, key: String, entries: Vec<Bytes>) {
        self.replay.lock().unwrap_or_else(|e| e.into_inner()).insert(key, entries);
    }

    /// A partition's entries went back into its log.
    pub fn replayed(&self, records: u64) {
        self.replayed_records.fetch_add(records, Ordering::Relaxed);
    }

    /// A partition's entries could not be replayed: the old files stay.
    pub fn replay_failed(&self) {
        self.replay_failed.store(true, Ordering::Release);
    }

    /// A core opened every partition it owns (and replayed them). After
    /// the last of `cores`, the old journals go, unless an entry of a
    /// topic that still exists was not replayed (its partition failed to
    /// open, and serves nothing): then they stay, to be replayed at the
    /// next start (entries already in a log are skipped).
    pub fn core_opened(&self, cores: usize, data_dir: &Path, topic_exists: impl Fn(&str) -> bool) {
        if self.cores_done.fetch_add(1, Ordering::AcqRel) + 1 != cores {
            return;
        }
        let old = std::mem::take(&mut *self.old_files.lock().unwrap_or_else(|e| e.into_inner()));
        if old.is_empty() {
            return;
        }
        let left: Vec<String> = self.replay.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let unreplayed = left.iter().filter(|k| topic_exists(k)).count();
        if self.replay_failed.load(Ordering::Acquire) || unreplayed > 0 {
            tracing::error!(
                unreplayed,
                files = old.len(),
                "ack journal entries not replayed; their files are kept for the next start"
            );
            return;
        }
        for path in &old {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "removing a replayed ack journal");
            }
        }
        self.record_dirs(data_dir, &self.dir.iter().cloned().collect::<Vec<_>>());
        tracing::info!(
            records = self.replayed_records.load(Ordering::Relaxed),
            dropped_logs = left.len(),
            "ack journals of the earlier run replayed"
        );
    }
}

/// Whether `key` ([`log_key`]) names a partition of a topic in `topics`.
pub fn key_of_existing_topic<'a>(key: &str, mut topics: impl Iterator<Item = &'a TopicMeta>) -> bool {
    let Some((id, _)) = key.rsplit_once('-') else { return false };
    topics.any(|t| topic_id_hex(t) == id)
}
