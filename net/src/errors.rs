//! The one place engine and registry errors become Kafka error codes.

use crate::metadata::RegistryError;
use crate::shard::PartitionError;
use kafka_protocol::ResponseError;
use spindle_engine::producers::SequenceError;
use spindle_engine::{AdminError, AppendError, BatchErrorKind, ReadError};

pub const NONE: i16 = 0;

pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub fn append_error(e: &AppendError) -> ResponseError {
    match e {
        AppendError::Batch(b) => match b.kind() {
            BatchErrorKind::Corrupt => ResponseError::CorruptMessage,
            BatchErrorKind::InvalidRecord => ResponseError::InvalidRecord,
            BatchErrorKind::TooLarge => ResponseError::MessageTooLarge,
            BatchErrorKind::UnsupportedCompression => ResponseError::UnsupportedCompressionType,
        },
        AppendError::Storage(_) | AppendError::Fenced(_) => ResponseError::KafkaStorageError,
        // The broker is shutting down; the client retries elsewhere or later.
        AppendError::Closed => ResponseError::NotLeaderOrFollower,
        // Leadership moved on while the produce was on its way.
        AppendError::StaleEpoch { .. } => ResponseError::NotLeaderOrFollower,
        // Only a follower's fetcher appends replicated batches; it handles
        // these itself (truncate and fetch again). Never a client's doing.
        AppendError::NotContiguous { .. } | AppendError::EpochRegression { .. } => ResponseError::UnknownServerError,
        AppendError::Sequence(SequenceError::OutOfOrder { .. }) => ResponseError::OutOfOrderSequenceNumber,
        AppendError::Sequence(SequenceError::StaleProducerEpoch { .. }) => ResponseError::InvalidProducerEpoch,
        AppendError::IdempotentBatches(_) => ResponseError::InvalidRecord,
    }
}

pub fn read_error(e: &ReadError) -> ResponseError {
    match e {
        ReadError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        ReadError::Corrupt { .. } | ReadError::Io(_) => ResponseError::KafkaStorageError,
    }
}

pub fn admin_error(e: &AdminError) -> ResponseError {
    match e {
        AdminError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        AdminError::Io(_) | AdminError::Fenced(_) => ResponseError::KafkaStorageError,
        AdminError::Closed => ResponseError::NotLeaderOrFollower,
    }
}

pub fn partition_error(e: &PartitionError) -> ResponseError {
    match e {
        PartitionError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        PartitionError::NotOwner => ResponseError::NotLeaderOrFollower,
        PartitionError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

pub fn registry_error(e: &RegistryError) -> ResponseError {
    match e {
        // Kafka answers TOPIC_ALREADY_EXISTS for a topic marked for deletion.
        RegistryError::Exists(_) | RegistryError::BeingDeleted(_) => ResponseError::TopicAlreadyExists,
        RegistryError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        RegistryError::InvalidName(..) => ResponseError::InvalidTopicException,
        RegistryError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        RegistryError::InvalidConfig(_) => ResponseError::InvalidConfig,
        RegistryError::Io(_) => ResponseError::KafkaStorageError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_engine::BatchError;

    #[test]
    fn batch_rejections_map_to_the_codes_clients_expect() {
        let cases = [
            (BatchError::CrcMismatch { expected: 1, actual: 2 }, 2),
            (BatchError::WrongMagic(1), 2),
            (BatchError::Truncated(3), 2),
            (BatchError::LengthMismatch { declared: 1, actual: 2 }, 2),
            (BatchError::CountMismatch { count: 1, last_offset_delta: 3 }, 87),
            (BatchError::RecordsMismatch { declared: 1, found: 2, bytes: 3 }, 87),
            (BatchError::TooLarge { size: 2, max: 1 }, 10),
            (BatchError::UnknownCompression(7), 76),
        ];
        for (e, want) in cases {
            assert_eq!(append_error(&AppendError::Batch(e.clone())).code(), want, "{e}");
        }
    }

    #[test]
    fn storage_and_lookup_errors_map_to_kafka_codes() {
        let io = std::rc::Rc::new(spindle_engine::storage::IoError::new(
            "write",
            std::path::Path::new("/x"),
            std::io::Error::from_raw_os_error(5),
        ));
        assert_eq!(append_error(&AppendError::Fenced(io.clone())).code(), 56);
        assert_eq!(append_error(&AppendError::Storage(io)).code(), 56);
        let oor = ReadError::OffsetOutOfRange { offset: 9, log_start: 0, log_end: 3 };
        assert_eq!(read_error(&oor).code(), 1);
        assert_eq!(partition_error(&PartitionError::UnknownTopicOrPartition).code(), 3);
        assert_eq!(registry_error(&RegistryError::Exists("t".into())).code(), 36);
        assert_eq!(registry_error(&RegistryError::BeingDeleted("t".into())).code(), 36);
        assert_eq!(registry_error(&RegistryError::InvalidPartitions(0)).code(), 37);
        assert_eq!(registry_error(&RegistryError::InvalidConfig("x".into())).code(), 40);
        assert_eq!(registry_error(&RegistryError::InvalidName("a/b".into(), "x")).code(), 17);
    }
}
