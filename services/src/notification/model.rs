//! Notification records and value objects.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }
}

/// What one channel of a template says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Content {
    pub subject: String,
    pub body: String,
}

/// A stored template: the text per channel for one kind of notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub name: String,
    /// The event that sends it.
    pub event_type: String,
    /// The `{{variables}}` its text may use.
    pub variables: Vec<String>,
    pub channels: BTreeMap<Channel, Content>,
    pub updated_at_ms: i64,
}

/// What notification knows of a user, kept from `identity-events` (its own read model):
/// where to send them mail and how to greet them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub user_id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
}

/// Where the events the worker causes later come from (correlation, causation, trace).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Origin {
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub notification_id: String,
    pub recipient_id: String,
    pub channel: Channel,
    pub template: String,
    /// The email address for email, the user id for push; None when the channel has no
    /// address for this user (delivery then fails with `no_address`).
    pub address: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: DeliveryStatus,
    pub failure_reason: Option<String>,
    pub origin: Origin,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Notification {
    /// Its key: `<recipient>/<id>`, so one user's notifications are one prefix scan.
    pub fn key(&self) -> String {
        notification_key(&self.recipient_id, &self.notification_id)
    }
}

pub fn notification_key(recipient_id: &str, notification_id: &str) -> String {
    format!("{recipient_id}/{notification_id}")
}
