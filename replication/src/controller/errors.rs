//! The Kafka error codes the controller answers with.
//!
//! Each operation has its own error enum (its variants carry what went wrong, its `Display` is the
//! message Kafka sends for it); each maps to one [`ErrorCode`] through a tested `code()`. The codes
//! are Kafka's numbers (`clients/src/main/java/org/apache/kafka/common/protocol/Errors.java`), so
//! `net` copies them onto the wire unchanged.

/// A Kafka error code the controller can return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnknownTopicOrPartition,
    InvalidTopicException,
    TopicAlreadyExists,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidReplicaAssignment,
    InvalidConfig,
    NotController,
    InvalidRequest,
    PolicyViolation,
    FencedLeaderEpoch,
    StaleBrokerEpoch,
    PreferredLeaderNotAvailable,
    EligibleLeadersNotAvailable,
    ElectionNotNeeded,
    InvalidUpdateVersion,
    UnknownTopicId,
    InconsistentClusterId,
    IneligibleReplica,
}

impl ErrorCode {
    /// Kafka's wire number for this error.
    pub const fn code(self) -> i16 {
        match self {
            ErrorCode::UnknownTopicOrPartition => 3,
            ErrorCode::InvalidTopicException => 17,
            ErrorCode::TopicAlreadyExists => 36,
            ErrorCode::InvalidPartitions => 37,
            ErrorCode::InvalidReplicationFactor => 38,
            ErrorCode::InvalidReplicaAssignment => 39,
            ErrorCode::InvalidConfig => 40,
            ErrorCode::NotController => 41,
            ErrorCode::InvalidRequest => 42,
            ErrorCode::PolicyViolation => 44,
            ErrorCode::FencedLeaderEpoch => 74,
            ErrorCode::StaleBrokerEpoch => 77,
            ErrorCode::PreferredLeaderNotAvailable => 80,
            ErrorCode::EligibleLeadersNotAvailable => 83,
            ErrorCode::ElectionNotNeeded => 84,
            ErrorCode::InvalidUpdateVersion => 95,
            ErrorCode::UnknownTopicId => 100,
            ErrorCode::InconsistentClusterId => 104,
            ErrorCode::IneligibleReplica => 107,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_kafkas_number() {
        // Errors.java, apache/kafka 3.9.
        let cases = [
            (ErrorCode::UnknownTopicOrPartition, 3),
            (ErrorCode::InvalidTopicException, 17),
            (ErrorCode::TopicAlreadyExists, 36),
            (ErrorCode::InvalidPartitions, 37),
            (ErrorCode::InvalidReplicationFactor, 38),
            (ErrorCode::InvalidReplicaAssignment, 39),
            (ErrorCode::InvalidConfig, 40),
            (ErrorCode::NotController, 41),
            (ErrorCode::InvalidRequest, 42),
            (ErrorCode::PolicyViolation, 44),
            (ErrorCode::FencedLeaderEpoch, 74),
            (ErrorCode::StaleBrokerEpoch, 77),
            (ErrorCode::PreferredLeaderNotAvailable, 80),
            (ErrorCode::EligibleLeadersNotAvailable, 83),
            (ErrorCode::ElectionNotNeeded, 84),
            (ErrorCode::InvalidUpdateVersion, 95),
            (ErrorCode::UnknownTopicId, 100),
            (ErrorCode::InconsistentClusterId, 104),
            (ErrorCode::IneligibleReplica, 107),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }
}
