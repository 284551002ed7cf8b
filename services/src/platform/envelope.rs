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
