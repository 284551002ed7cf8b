//! The event envelope: the JSON value of every record on an event topic, keyed by the
//! aggregate id (API.md, "Kafka topics").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub aggregate_id: String,
    /// RFC 3339, from the command's timestamp (never the apply-time clock).
    pub occurred_at: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// Schema version of `data` for this event type.
    pub version: u32,
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// `data` read as a consumer's own view of this event type's payload. A payload that
    /// does not fit is the event's fault: the consumer retries it, then dead-letters it.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, super::Rejection> {
        T::deserialize(&self.data).map_err(|error| {
            super::Rejection::invalid("data", format!("{} {}: {error}", self.event_type, self.id))
        })
    }
}

/// A UUID derived from `parts`: the same parts always name the same record, so a command
/// derived from a redelivered event creates nothing new. The parts are joined with NUL so
/// ("ab", "c") and ("a", "bc") differ.
pub fn derived_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            digest.update([0]);
        }
        digest.update(part.as_bytes());
    }
    let digest = digest.finalize();
    let mut bytes = [0u8; 16];
    for (out, byte) in bytes.iter_mut().zip(digest.iter()) {
        *out = *byte;
    }
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}
