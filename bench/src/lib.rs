//! End-to-end benchmarks of Spindle on this machine, and the machine's own
//! limits measured in the same run, so every engine number can be read as a
//! fraction of what the hardware allows.
//!
//! The binary (`spindle-bench`, `src/main.rs`) is a thin CLI over these
//! modules:
//!
//! * [`limits`]: direct-I/O write/read bandwidth, fdatasync latency, loopback
//!   TCP and memory bandwidth. Uses `fio` when installed (its JSON output is
//!   parsed), built-in loops otherwise.
//! * [`engine`]: the `spindle-engine` log on `DmaStorage` in a pinned glommio
//!   executor: append throughput, cached and cold reads, unclean recovery.
//! * [`report`]: the markdown tables of `bench/RESULTS.md`, from the JSON the
//!   other two write.
//!
//! Micro-benchmarks of single functions live beside the code, in
//! `engine/benches/`.

pub mod batch;
pub mod engine;
pub mod limits;
pub mod report;
pub mod sys;

/// Bytes in a MiB, for the conversions every report does.
pub const MIB: f64 = 1024.0 * 1024.0;
/// Bytes in a (decimal) GB: read bandwidths are quoted in GB/s.
pub const GB: f64 = 1e9;
pub mod load;
