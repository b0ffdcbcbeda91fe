//! One error enum per operation. The Kafka adapter maps each to an error
//! code in one place (`net`); the engine knows no error codes.

use crate::batch::BatchError;
use crate::producers::SequenceError;
use crate::storage::IoError;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The client's batch is invalid; nothing was written.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The write or fdatasync for this append failed. The log now refuses
    /// writes until it is reopened (and recovered).
    #[error("append failed: {0}")]
    Storage(Rc<IoError>),
    /// An earlier write or fdatasync failed; the log refuses writes until it
    /// is reopened, because the state of unsynced pages cannot be trusted.
    #[error("log refuses writes after an earlier I/O failure: {0}")]
    Fenced(Rc<IoError>),
    /// The log was closed (shutdown in progress).
    #[error("log is closed")]
    Closed,
    /// A leader append in an epoch older than the log's latest: leadership
    /// moved on while the append was on its way. Nothing was written.
    #[error("append in leader epoch {epoch}, but the log is at epoch {latest}")]
    StaleEpoch { epoch: i32, latest: i32 },
    /// A replicated batch does not start where the log ends (or where the
    /// batch before it ended). Nothing from that batch on was written.
    #[error("replicated batch starts at offset {found}, expected {expected}")]
    NotContiguous { expected: i64, found: i64 },
    /// A replicated batch carries an epoch below the log's latest.
    #[error("replicated batch in leader epoch {epoch}, but the log is at epoch {latest}")]
    EpochRegression { epoch: i32, latest: i32 },
    /// An idempotent producer's batch does not continue its sequence, or
    /// comes from a fenced producer epoch. Nothing was written.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// An append with an idempotent producer's batch holds more than one
    /// batch. Nothing was written.
    #[error("{0} batches in one append from an idempotent producer; one is allowed")]
    IdempotentBatches(usize),
}

impl AppendError {
    /// The failure is the disk being full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, AppendError::Storage(e) | AppendError::Fenced(e) if e.is_no_space())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    /// Bytes read back from disk failed their checksum: the disk, not us.
    #[error("corrupt batch at {path} position {position}: {what}")]
    Corrupt { path: String, position: u64, what: &'static str },
    #[error(transparent)]
    Io(#[from] IoError),
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("invalid log directory {path}: {why}")]
    Invalid { path: String, why: String },
}

/// Errors of administrative operations: truncation, retention, delete-records,
/// epoch assignment, close.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("offset {offset} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, high_watermark: i64 },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("log refuses writes after an earlier I/O failure: {0}")]
    Fenced(Rc<IoError>),
    #[error("log is closed")]
    Closed,
}

impl From<AppendError> for AdminError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Storage(e) | AppendError::Fenced(e) => AdminError::Fenced(e),
            AppendError::Closed => AdminError::Closed,
            AppendError::Batch(_)
            | AppendError::StaleEpoch { .. }
            | AppendError::NotContiguous { .. }
            | AppendError::EpochRegression { .. }
            | AppendError::Sequence(_)
            | AppendError::IdempotentBatches(_) => {
                unreachable!("admin operations append no client or replicated batches")
            }
        }
    }
}
