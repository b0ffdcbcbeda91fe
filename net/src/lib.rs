//! Spindle's broker: the Kafka protocol adapter and the thread-per-core
//! runtime around the storage engine.
//!
//! Architecture invariant: net speaks Kafka (framing, API messages, error
//! codes) and schedules work across cores; it never opens a file. All disk
//! I/O goes through `spindle-engine`.

pub mod admin;
pub mod alloc;
pub mod api;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod errors;
pub mod group;
pub mod journal;
pub mod metadata;
pub mod metrics;
pub mod ops;
pub mod server;
pub mod shard;

pub use config::BrokerConfig;
pub use server::{run, ServerError};

#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc::GuardedAlloc = alloc::GuardedAlloc;
