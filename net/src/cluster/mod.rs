//! The cluster's drivers: glommio tasks that feed the sans-IO rules of
//! `spindle-replication` with messages, the clock and the disk.
//!
//! Design: `docs/replication-design.md`. Built so far: the Raft log's
//! persistence on the engine ([`raft_log`]).

pub mod raft_driver;
pub mod raft_log;
pub mod transport;
