//! Log configuration: one typed struct, filled by the CLI / topic configs.

use std::str::FromStr;
use std::time::Duration;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How a partition log is rolled, retained, indexed and flushed.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll when the active segment would grow past this many bytes (default 1 GiB).
    /// Capped internally at `u32::MAX`, the largest position an index entry can hold.
    pub segment_bytes: u64,
    /// Roll when the active segment's first append is older than this (default 7 days).
    pub segment_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log is bigger than this (`None`: unlimited).
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest timestamp is older than this (`None`: forever).
    pub retention_ms: Option<i64>,
    /// One sparse index entry per this many bytes of batches (default 4096).
    pub index_interval_bytes: u32,
    /// When appended bytes are fsynced.
    pub flush: FlushPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: Some(7 * DAY_MS),
            retention_bytes: None,
            retention_ms: Some(7 * DAY_MS),
            index_interval_bytes: 4096,
            flush: FlushPolicy::Interval(Duration::from_millis(1000)),
        }
    }
}

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before every `append` returns (group-committed across concurrent appenders).
    EveryAppend,
    /// fsync when `flush_if_due` finds the last flush older than this.
    Interval(Duration),
    /// Never fsync explicitly except on roll and close; leave it to the OS (Kafka's default).
    Os,
}

impl FromStr for FlushPolicy {
    type Err = String;

    /// Parses the CLI spelling: `every-batch`, `os` or `interval:<ms>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "every-batch" => Ok(FlushPolicy::EveryAppend),
            "os" => Ok(FlushPolicy::Os),
            other => match other.strip_prefix("interval:") {
                Some(ms) => ms
                    .trim()
                    .parse::<u64>()
                    .map(|ms| FlushPolicy::Interval(Duration::from_millis(ms)))
                    .map_err(|e| format!("bad flush interval {ms:?}: {e}")),
                None => Err(format!(
                    "unknown flush policy {other:?}; expected every-batch, os or interval:<ms>"
                )),
            },
        }
    }
}

impl LogConfig {
    /// The effective roll size: an index entry stores a u32 position.
    pub(crate) fn max_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, u64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flush_policy_parses_the_cli_spellings() {
        assert_eq!(
            "every-batch".parse::<FlushPolicy>().unwrap(),
            FlushPolicy::EveryAppend
        );
        assert_eq!("os".parse::<FlushPolicy>().unwrap(), FlushPolicy::Os);
        assert_eq!(
            "interval:250".parse::<FlushPolicy>().unwrap(),
            FlushPolicy::Interval(Duration::from_millis(250))
        );
        assert!("interval:soon".parse::<FlushPolicy>().is_err());
        assert!("always".parse::<FlushPolicy>().is_err());
    }

    #[test]
    fn defaults_match_kafka() {
        let config = LogConfig::default();
        assert_eq!(config.segment_bytes, 1 << 30);
        assert_eq!(config.retention_bytes, None);
        assert_eq!(config.retention_ms, Some(7 * DAY_MS));
        assert_eq!(config.index_interval_bytes, 4096);
    }
}
