//! Per-log settings, under Kafka's topic-config names.

use crate::constants::*;

/// A log's configuration. Field names follow Kafka's topic configs
/// (`segment.bytes` is `segment_bytes`, ...). `-1` means unlimited where
/// Kafka uses it that way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete sealed segments whose newest record is older
    /// than this. -1: keep forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest sealed segments while the log is
    /// larger than this. -1: no size limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest batch accepted, in Kafka wire bytes.
    pub max_message_bytes: u32,
    /// `flush.messages`: fdatasync after this many records even when no
    /// producer asked for durability. Kafka's default is "never" (i64::MAX).
    pub flush_messages: u64,
    /// `flush.ms`: fdatasync at least this often while data is unsynced.
    /// Kafka's default is "never" (i64::MAX); the broker's timer calls
    /// [`crate::Log::flush_if_due`].
    pub flush_ms: i64,
    /// Not a topic config: the broker's `log.segment.recycle.enable`. When
    /// retention deletes segments, keep the newest ones' files (one more
    /// than the log rolled in either of the last two intervals between
    /// runs) and roll later segments into
    /// them, overwriting blocks already written instead of reserving new
    /// ones (`engine/src/log.rs`, "Recycled segment files").
    pub recycle_segments: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            flush_messages: i64::MAX as u64,
            flush_ms: i64::MAX,
            recycle_segments: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value} for {key}: {why}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, value: String, why| Err(ConfigError { key, value, why });
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return err("segment.bytes", self.segment_bytes.to_string(), "must be between 4096 and 4294967295");
        }
        if self.segment_ms < 1 {
            return err("segment.ms", self.segment_ms.to_string(), "must be at least 1");
        }
        if self.retention_ms < -1 {
            return err("retention.ms", self.retention_ms.to_string(), "must be -1 or more");
        }
        if self.retention_bytes < -1 {
            return err("retention.bytes", self.retention_bytes.to_string(), "must be -1 or more");
        }
        if self.max_message_bytes < 64 || self.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT {
            return err("max.message.bytes", self.max_message_bytes.to_string(), "must be between 64 and 4186112");
        }
        if self.flush_messages < 1 {
            return err("flush.messages", self.flush_messages.to_string(), "must be at least 1");
        }
        if self.flush_ms < 0 {
            return err("flush.ms", self.flush_ms.to_string(), "must be 0 or more");
        }
        Ok(())
    }

    /// Sets one topic config by its Kafka name; `Ok(false)` for a name this
    /// log does not own (the broker may know it).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        fn parse<T: std::str::FromStr>(key: &'static str, v: &str) -> Result<T, ConfigError> {
            v.trim().parse().map_err(|_| ConfigError { key, value: v.to_string(), why: "not a number" })
        }
        let mut next = self.clone();
        match key {
            "segment.bytes" => next.segment_bytes = parse("segment.bytes", value)?,
            "segment.ms" => next.segment_ms = parse("segment.ms", value)?,
            "retention.ms" => next.retention_ms = parse("retention.ms", value)?,
            "retention.bytes" => next.retention_bytes = parse("retention.bytes", value)?,
            "max.message.bytes" => next.max_message_bytes = parse("max.message.bytes", value)?,
            "flush.messages" => {
                let v: i64 = parse("flush.messages", value)?;
                next.flush_messages = v.max(0) as u64;
            }
            "flush.ms" => next.flush_ms = parse("flush.ms", value)?,
            _ => return Ok(false),
        }
        next.validate()?;
        *self = next;
        Ok(true)
    }

    /// Every key this struct owns with its current value, for DescribeConfigs.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("flush.messages", self.flush_messages.min(i64::MAX as u64).to_string()),
            ("flush.ms", self.flush_ms.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.max_message_bytes, 1_048_588);
        c.validate().unwrap();
    }

    #[test]
    fn set_validates_and_leaves_config_unchanged_on_error() {
        let mut c = LogConfig::default();
        assert!(c.set("retention.ms", "1000").unwrap());
        assert_eq!(c.retention_ms, 1000);
        assert!(c.set("segment.bytes", "12").is_err());
        assert!(c.set("retention.ms", "abc").is_err());
        assert_eq!(c.segment_bytes, 1 << 30);
        assert!(!c.set("cleanup.policy", "delete").unwrap());
    }
}
