//! Kafka v2 record batches as a producer builds them, of an exact size, with
//! pseudo-random values so that nothing on the path (or under it: a virtual
//! disk, a compressing filesystem) gets an easy ride from repetitive bytes.

use bytes::Bytes;
use spindle_engine::records::{frame_v2_batch, put_varlong};

/// Kafka's record batch header (magic v2), up to the records.
const KAFKA_HEADER_BYTES: usize = 61;

/// Smallest batch [`batch_of_size`] builds: header plus one record with a
/// one-byte value.
pub const MIN_BATCH_BYTES: usize = KAFKA_HEADER_BYTES + 16;

/// xorshift64*: fast, seedable, good enough to defeat compression.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// A valid uncompressed Kafka v2 batch (same layout as the engine tests'
/// `kafka_batch`): record i has timestamp `base_ts + i`, a null key and the
/// given value.
pub fn kafka_batch(values: &[&[u8]], base_ts: i64) -> Bytes {
    let mut records = Vec::with_capacity(values.iter().map(|v| v.len() + 16).sum());
    let mut r = Vec::new();
    for (i, v) in values.iter().enumerate() {
        r.clear();
        r.push(0u8); // attributes
        put_varlong(&mut r, i as i64); // timestamp delta
        put_varlong(&mut r, i as i64); // offset delta
        put_varlong(&mut r, -1); // key: null
        put_varlong(&mut r, v.len() as i64);
        r.extend_from_slice(v);
        put_varlong(&mut r, 0); // headers
        put_varlong(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let n = values.len() as i32;
    frame_v2_batch(&records, n, base_ts, base_ts + n as i64 - 1)
}

/// A batch of exactly `batch_bytes` Kafka wire bytes, records of about
/// `record_bytes` each, values from `rng`. `None` if `batch_bytes` is below
/// [`MIN_BATCH_BYTES`].
pub fn batch_of_size(batch_bytes: usize, record_bytes: usize, base_ts: i64, rng: &mut Rng) -> Option<Bytes> {
    if batch_bytes < MIN_BATCH_BYTES {
        return None;
    }
    let body = batch_bytes - KAFKA_HEADER_BYTES;
    let n = (body / record_bytes.max(16)).max(1);
    // Per-record framing is at most ~16 bytes; start from an estimate and
    // correct the last value until the total is exact (varint widths move by
    // a byte or two, so this converges in a few rounds).
    let mut sizes = vec![(body / n).saturating_sub(12).max(1); n];
    let mut pool = vec![0u8; body];
    rng.fill(&mut pool);
    for _ in 0..16 {
        let mut at = 0;
        let values: Vec<&[u8]> = sizes
            .iter()
            .map(|&s| {
                let v = &pool[at..at + s];
                at += s;
                v
            })
            .collect();
        let b = kafka_batch(&values, base_ts);
        if b.len() == batch_bytes {
            return Some(b);
        }
        let last = sizes.last_mut().unwrap();
        let want = *last as i64 + batch_bytes as i64 - b.len() as i64;
        if want < 1 {
            return None;
        }
        *last = want as usize;
        let total: usize = sizes.iter().sum();
        if total > pool.len() {
            pool.resize(total, 0);
            rng.fill(&mut pool);
        }
    }
    None
}

/// `count` distinct batches of `batch_bytes`, cycled through by the append
/// benchmarks so that building batches is not part of what is timed.
pub fn batch_pool(count: usize, batch_bytes: usize, record_bytes: usize, seed: u64) -> Option<Vec<Bytes>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|i| batch_of_size(batch_bytes, record_bytes, 1_700_000_000_000 + i as i64, &mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_the_exact_requested_size_and_validate() {
        let mut rng = Rng::new(7);
        for size in [MIN_BATCH_BYTES, 100, 1000, 4096, 16384, 16385, 65536, 1 << 20] {
            for rec in [16, 100, 1024] {
                let b = batch_of_size(size, rec, 0, &mut rng).unwrap_or_else(|| panic!("size {size} rec {rec}"));
                assert_eq!(b.len(), size);
                let v = spindle_engine::batch::validate_batches(&b, u32::MAX).expect("valid batch");
                assert_eq!(v.len(), 1);
            }
        }
    }

    #[test]
    fn too_small_a_batch_is_refused_not_built_wrong() {
        assert!(batch_of_size(MIN_BATCH_BYTES - 1, 16, 0, &mut Rng::new(1)).is_none());
    }
}
