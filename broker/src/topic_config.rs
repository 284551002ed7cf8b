//! Topic-level configuration: the keys a topic may override, their defaults, validation,
//! and the translation into the storage layer's `LogConfig`.

use crate::error::BrokerError;
use commerce_storage::{FlushPolicy, LogConfig};
use std::collections::BTreeMap;

/// A config key a topic may set, with Kafka's default and a validator.
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |value| match value.parse::<i64>() {
        Ok(number) if number >= min => Ok(()),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(_) => Err("must be an integer".to_string()),
    }
}

fn one_of(allowed: &'static [&'static str]) -> impl Fn(&str) -> Result<(), String> {
    move |value| {
        if value
            .split(',')
            .map(str::trim)
            .all(|part| allowed.contains(&part))
        {
            Ok(())
        } else {
            Err(format!("must be one of {}", allowed.join(", ")))
        }
    }
}

pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// The supported topic configs. Unknown keys are refused with INVALID_CONFIG.
pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        default: "delete",
        doc: "delete or compact",
        validate: |v| one_of(&["delete", "compact"])(v),
    },
    ConfigKey {
        name: "retention.ms",
        default: "604800000",
        doc: "age after which whole segments are deleted; -1 keeps forever",
        validate: |v| long_at_least(-1)(v),
    },
    ConfigKey {
        name: "retention.bytes",
        default: "-1",
        doc: "size past which the oldest segments are deleted; -1 is unlimited",
        validate: |v| long_at_least(-1)(v),
    },
    ConfigKey {
        name: "segment.bytes",
        default: "1073741824",
        doc: "segment file size at which the log rolls",
        validate: |v| long_at_least(14)(v),
    },
    ConfigKey {
        name: "segment.ms",
        default: "604800000",
        doc: "segment age at which the log rolls",
        validate: |v| long_at_least(1)(v),
    },
    ConfigKey {
        name: "delete.retention.ms",
        default: "86400000",
        doc: "how long the cleaner keeps a tombstone (null value) of a compacted topic",
        validate: |v| long_at_least(0)(v),
    },
    ConfigKey {
        name: "max.message.bytes",
        default: "1048588",
        doc: "largest record batch accepted",
        validate: |v| long_at_least(0)(v),
    },
    ConfigKey {
        name: "message.timestamp.type",
        default: "CreateTime",
        doc: "CreateTime (LogAppendTime is not supported yet)",
        validate: |v| one_of(&["CreateTime"])(v),
    },
    ConfigKey {
        name: "min.insync.replicas",
        default: "1",
        doc: "replicas that must have a write for acks=all",
        validate: |v| long_at_least(1)(v),
    },
    ConfigKey {
        name: "compression.type",
        default: "producer",
        doc: "batches are stored as the producer compressed them",
        validate: |v| one_of(&["producer"])(v),
    },
];

/// A topic's overrides (only what was set explicitly; defaults are implied).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Validates every entry; nothing is kept when one is bad.
    pub fn from_overrides<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, BrokerError> {
        let mut overrides = BTreeMap::new();
        for (name, value) in entries {
            validate(name, value)?;
            overrides.insert(name.to_string(), value.to_string());
        }
        Ok(TopicConfig { overrides })
    }

    /// The effective value of a key: the override or the default.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.overrides.get(name).map(String::as_str).or_else(|| {
            KEYS.iter()
                .find(|key| key.name == name)
                .map(|key| key.default)
        })
    }

    fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|value| value.parse().ok())
    }

    pub fn max_message_bytes(&self) -> usize {
        self.get_i64("max.message.bytes")
            .and_then(|value| usize::try_from(value).ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// Whether the cleaner compacts this topic (`cleanup.policy` lists `compact`).
    pub fn is_compacted(&self) -> bool {
        self.get("cleanup.policy")
            .is_some_and(|policy| policy.split(',').any(|part| part.trim() == "compact"))
    }

    pub fn delete_retention_ms(&self) -> i64 {
        self.get_i64("delete.retention.ms").unwrap_or(86_400_000)
    }

    pub fn log_config(&self, flush: FlushPolicy) -> LogConfig {
        let defaults = LogConfig::default();
        // Retention deletes segments only under the `delete` policy; a compact-only topic
        // keeps the latest value of every key however old, as Kafka does.
        let deletes = self
            .get("cleanup.policy")
            .is_some_and(|policy| policy.split(',').any(|part| part.trim() == "delete"));
        let positive = |value: Option<i64>| value.filter(|v| *v >= 0);
        let retained = |value: Option<i64>| positive(value).filter(|_| deletes);
        LogConfig {
            segment_bytes: positive(self.get_i64("segment.bytes"))
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(defaults.segment_bytes),
            segment_ms: positive(self.get_i64("segment.ms")),
            retention_bytes: retained(self.get_i64("retention.bytes"))
                .and_then(|v| u64::try_from(v).ok()),
            retention_ms: retained(self.get_i64("retention.ms")),
            flush,
            ..defaults
        }
    }
}

/// Refuses a key that is not a topic config.
pub fn validate_name(name: &str) -> Result<(), BrokerError> {
    if KEYS.iter().any(|key| key.name == name) {
        Ok(())
    } else {
        Err(BrokerError::InvalidConfig {
            key: name.to_string(),
            reason: "unknown topic config".to_string(),
        })
    }
}

pub fn validate(name: &str, value: &str) -> Result<(), BrokerError> {
    let key =
        KEYS.iter()
            .find(|key| key.name == name)
            .ok_or_else(|| BrokerError::InvalidConfig {
                key: name.to_string(),
                reason: "unknown topic config".to_string(),
            })?;
    (key.validate)(value).map_err(|reason| BrokerError::InvalidConfig {
        key: name.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overrides_win_and_defaults_fill_in() {
        let config = TopicConfig::from_overrides([("retention.ms", "1000")]).unwrap();
        assert_eq!(config.get("retention.ms"), Some("1000"));
        assert_eq!(config.get("cleanup.policy"), Some("delete"));
        let log = config.log_config(FlushPolicy::Os);
        assert_eq!(log.retention_ms, Some(1000));
        assert_eq!(log.retention_bytes, None);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        assert!(TopicConfig::from_overrides([("no.such.key", "1")]).is_err());
        assert!(TopicConfig::from_overrides([("retention.ms", "soon")]).is_err());
        assert!(TopicConfig::from_overrides([("cleanup.policy", "shred")]).is_err());
        assert!(TopicConfig::from_overrides([("retention.ms", "-1")]).is_ok());
    }
}
