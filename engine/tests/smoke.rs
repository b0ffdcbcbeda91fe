mod common;
use common::*;
use futures_lite::future::block_on;
use spindle_engine::storage::memory::MemStorage;
use spindle_engine::{Durability, LogConfig};

#[test]
fn smoke_append_read_reopen() {
    let s = MemStorage::new();
    let log = open(&s, small_segments());
    let mut sent = Vec::new();
    block_on(async {
        for i in 0..200u64 {
            let b = tagged_batch(i, 3, 100, 1000 + i as i64);
            let info = log.append(b.clone(), opts(Durability::Written)).await.unwrap();
            assert_eq!(info.base_offset, i as i64 * 3);
            sent.push(b);
        }
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 200);
        for (i, v) in all.iter().enumerate() {
            assert_eq!(wire(v), expected_wire(&sent[i], i as i64 * 3, 0));
        }
    });
    assert!(log.segment_count() > 1);
    drop(log);
    s.crash_process();
    let log = open(&s, LogConfig { segment_bytes: 64 * 1024, ..LogConfig::default() });
    block_on(async {
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 200);
        for (i, v) in all.iter().enumerate() {
            assert_eq!(wire(v), expected_wire(&sent[i], i as i64 * 3, 0));
        }
    });
}
