//! Spindle's cluster rules, without I/O: what the metadata quorum agrees on
//! and how each broker applies it, where replicas are placed, who leads a
//! partition after a change, and how a leader and its followers move the
//! high watermark and the ISR. Drivers in `net` feed these with messages and
//! the clock; the deterministic simulator feeds them with faults.
//!
//! Design: `docs/replication-design.md`.

pub mod controller;
pub mod metadata;
pub mod partition_replica;
pub mod quorum;
pub mod types;

#[cfg(test)]
mod sim;
