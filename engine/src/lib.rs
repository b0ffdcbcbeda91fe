//! Spindle's storage engine: durable, append-only partition logs of Kafka
//! record batches on io_uring direct I/O.
//!
//! Start at [`Log`]. A log is owned by one core; nothing here is `Send`.
//! The engine reaches the disk only through [`storage::Storage`], so every
//! path runs in tests against an in-memory disk that tears writes and loses
//! unsynced data ([`storage::memory::MemStorage`]).
//!
//! Architecture invariant: the engine knows the record-batch v2 layout (it is
//! the storage unit) and nothing else of Kafka: no requests, no error codes,
//! no sockets. It is the only crate that touches files.

pub mod batch;
pub mod cache;
pub mod config;
pub mod constants;
pub mod dma_alloc;
pub mod epoch;
pub mod error;
pub mod index;
pub mod journal;
mod log;
pub mod producers;
pub mod records;
pub mod stats;
pub mod storage;
pub mod turnstile;

pub use batch::{BatchError, BatchErrorKind, BatchView, StoredBatchHeader};
pub use cache::{BatchCache, CacheStats};
pub use config::{ConfigError, LogConfig};
pub use error::{AdminError, AppendError, ReadError, RecoveryError};
pub use journal::AckJournal;
pub use log::{
    AppendInfo, AppendOptions, Durability, Log, LogOffsets, ReplicaAppendOptions, CLEAN_SHUTDOWN_FILE,
    EPOCH_CHECKPOINT_FILE, LOG_START_FILE,
};
pub use turnstile::{Turn, Turnstile};
