//! Arbitrary bytes as a segment file: opening the log must never panic or
//! fail, what it recovers must read back, and appends must work and survive
//! a power loss. The first input byte picks the segment's base offset.
//!
//! Run with `cargo +nightly fuzz run recover_segment` from `fuzz/`. The
//! checks live in `engine/tests/common/recover.rs`, shared with the stable
//! test `engine/tests/recover_arbitrary_segments.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../engine/tests/common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

fuzz_target!(|data: &[u8]| {
    let (base, segment) = common::recover::split_input(data);
    common::recover::recover_segment_bytes(segment, base);
});
