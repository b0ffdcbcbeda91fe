//! Pre-allocation on `DmaStorage` moves the file size ahead of the data
//! (fallocate without KEEP_SIZE, so direct writes land inside the file and
//! need no io-wq punt). The zero-filled space past the last write must never
//! be read as data: not after a crash (recovery's scan stops at the zero
//! header and cuts the file), and not after a clean close or a roll, which
//! give the space back.

mod common;
use common::*;
use glommio::LocalExecutorBuilder;
use spindle_engine::storage::dma::DmaStorage;
use spindle_engine::{BatchCache, Durability, Log, LogConfig};
use std::path::{Path, PathBuf};
use std::rc::Rc;

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::default().io_memory(4 << 20).spawn(f).expect("executor").join().expect("join")
}

async fn open_dma(storage: &DmaStorage, dir: &Path, config: LogConfig) -> Log<DmaStorage> {
    Log::open(storage.clone(), dir, config, Rc::new(BatchCache::new(0)), 1_000).await.expect("open log")
}

fn segment_sizes(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    v.sort();
    v
}

async fn append(log: &Log<DmaStorage>, sent: &mut Vec<Sent>, tag: u64, d: Durability) {
    let bytes = tagged_batch(tag, 1 + tag as usize % 3, 700 + tag as usize * 37 % 900, 1_000 + tag as i64);
    let info = log.append(bytes.clone(), opts(d)).await.expect("append");
    sent.push(Sent { base: info.base_offset, epoch: 0, bytes });
}

async fn assert_holds(log: &Log<DmaStorage>, sent: &[Sent]) {
    let got = read_all(log, 0).await;
    assert_eq!(got.len(), sent.len(), "recovered a different number of batches");
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(wire(g), s.wire(), "batch at {} differs", s.base);
    }
    assert_eq!(log.log_end_offset(), sent.last().map_or(0, Sent::next));
}

#[test]
fn preallocated_tail_is_not_read_as_data_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().to_path_buf();
    run(move || async move {
        let storage = DmaStorage::new(&root).await.unwrap();
        let dir = root.join("t-0");
        let mut sent = Vec::new();
        for round in 0..3u64 {
            let log = open_dma(&storage, &dir, LogConfig::default()).await;
            assert_holds(&log, &sent).await;
            for i in 0..20 {
                append(&log, &mut sent, round * 100 + i, Durability::Written).await;
            }
            append(&log, &mut sent, round * 100 + 99, Durability::Durable).await;
            let sizes = segment_sizes(&dir);
            assert_eq!(sizes.len(), 1);
            // The file size is past the data: zeros the scan must stop at.
            assert!(sizes[0].1 >= 1024 * 1024, "pre-allocation did not move the file size: {sizes:?}");
            // A crash: no close, no clean-shutdown marker, no index.
            drop(log);
        }
        let log = open_dma(&storage, &dir, LogConfig::default()).await;
        assert_holds(&log, &sent).await;
        // Recovery cut the zero tail.
        let sizes = segment_sizes(&dir);
        assert!(sizes[0].1 < 1024 * 1024, "{sizes:?}");
        log.close().await.unwrap();
    });
}

#[test]
fn close_and_roll_give_back_preallocated_space() {
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().to_path_buf();
    run(move || async move {
        let storage = DmaStorage::new(&root).await.unwrap();
        let dir = root.join("t-0");
        let cfg = LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() };
        let mut sent = Vec::new();
        let log = open_dma(&storage, &dir, cfg.clone()).await;
        for i in 0..200 {
            append(&log, &mut sent, i, if i % 10 == 9 { Durability::Durable } else { Durability::Written }).await;
        }
        log.close().await.unwrap();
        drop(log);
        let sizes = segment_sizes(&dir);
        assert!(sizes.len() > 2, "{sizes:?}");
        for (name, size) in &sizes {
            assert!(*size < 256 * 1024 && size % 4096 == 0, "{name}: {size} bytes after close");
        }
        // Clean reopen trusts the indexes; appends continue at the end.
        let log = open_dma(&storage, &dir, cfg.clone()).await;
        assert_holds(&log, &sent).await;
        for i in 200..220 {
            append(&log, &mut sent, i, Durability::Durable).await;
        }
        drop(log);
        let log = open_dma(&storage, &dir, cfg).await;
        assert_holds(&log, &sent).await;
        log.close().await.unwrap();
    });
}

/// Recycling on a real file system: retention's deleted segment file is
/// renamed aside, the next roll renames it into place and overwrites it,
/// and after a crash (no close) recovery stops at the old batches past the
/// new data and cuts them off.
#[test]
fn a_recycled_segment_file_is_renamed_into_place_and_recovers_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().to_path_buf();
    run(move || async move {
        let storage = DmaStorage::new(&root).await.unwrap();
        let dir = root.join("t-0");
        let config = LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() };
        let log = open_dma(&storage, &dir, config.clone()).await;
        let mut sent = Vec::new();
        for tag in 0..200 {
            append(&log, &mut sent, tag, Durability::Durable).await;
        }
        let base_of = |name: &str| name.trim_end_matches(".log").parse::<i64>().unwrap();
        let bases: Vec<i64> = segment_sizes(&dir).iter().map(|(n, _)| base_of(n)).collect();
        let first_kept = bases[2];
        log.delete_records(first_kept).await.unwrap();
        let names = |dir: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // The log rolled more than twice since it opened: both kept.
        let kept: Vec<String> = names(&dir).into_iter().filter(|n| n.ends_with(".recycled")).collect();
        assert_eq!(kept, vec![format!("{:020}.recycled", bases[1]), format!("{:020}.recycled", bases[2])]);
        let kept_size = kept.iter().map(|k| std::fs::metadata(dir.join(k)).unwrap().len()).min().unwrap();
        let sent_kept = sent.iter().position(|x| x.base == first_kept).unwrap();
        let mut sent: Vec<Sent> = sent.split_off(sent_kept);

        let before = spindle_engine::stats::snapshot().segments_recycled;
        let segments = segment_sizes(&dir).len();
        let mut tag = 1_000;
        while segment_sizes(&dir).len() == segments {
            append(&log, &mut sent, tag, Durability::Written).await;
            tag += 1;
        }
        assert_eq!(spindle_engine::stats::snapshot().segments_recycled, before + 1);
        assert_eq!(names(&dir).iter().filter(|n| n.ends_with(".recycled")).count(), 1, "{:?}", names(&dir));
        let active = segment_sizes(&dir).pop().unwrap();
        assert!(active.1 >= kept_size, "the active segment is the kept file, old bytes and all: {active:?}");
        append(&log, &mut sent, tag, Durability::Durable).await;
        drop(log);

        let log = open_dma(&storage, &dir, config).await;
        let got = read_all(&log, first_kept).await;
        assert_eq!(got.len(), sent.len(), "recovered a different number of batches");
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(wire(g), s.wire(), "batch at {} differs", s.base);
        }
        assert_eq!(log.log_end_offset(), sent.last().unwrap().next());
        let active = segment_sizes(&dir).pop().unwrap();
        assert!(active.1 < kept_size, "recovery cut the old batches off: {active:?}");
    });
}
