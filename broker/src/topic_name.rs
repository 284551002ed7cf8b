//! `TopicName`: a topic name Kafka would accept, validated once at the edge.

use crate::error::BrokerError;
use std::fmt;

/// Kafka's limit: 249 characters, so `<name>-<partition>` directory names stay under 255.
const MAX_LENGTH: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    pub fn parse(name: &str) -> Result<TopicName, BrokerError> {
        let invalid = |reason| BrokerError::InvalidTopic {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if name == "." || name == ".." {
            return Err(invalid("'.' and '..' are not allowed"));
        }
        if name.len() > MAX_LENGTH {
            return Err(invalid("longer than 249 characters"));
        }
        let legal = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
        if !name.chars().all(legal) {
            return Err(invalid(
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        Ok(TopicName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Topics whose names start with `__` belong to the broker itself.
    pub fn is_internal(&self) -> bool {
        self.0.starts_with("__")
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for name in ["orders", "catalog-events", "a.b_c-9", "__consumer_offsets"] {
            assert!(TopicName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_illegal_names() {
        let long = "x".repeat(250);
        for name in [
            "",
            ".",
            "..",
            "has space",
            "slash/inside",
            "ünï",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    TopicName::parse(name),
                    Err(BrokerError::InvalidTopic { .. })
                ),
                "{name:?}"
            );
        }
    }
}
