//! Notification commands; ids, timestamps and variable values are fixed before logging.

use super::model::{Channel, Contact, Content, Template};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Stores the default templates that are not stored yet (first start).
    SeedTemplates(Vec<Template>),
    /// An admin's new text for a template (validated before logging).
    PutTemplate {
        name: String,
        channels: BTreeMap<Channel, Content>,
    },
    /// An event that notifies `recipient_id` with `template`, one message per channel.
    Notify {
        /// Derived from the event id; each channel's message id is `<this>-<channel>`.
        id_base: String,
        template: String,
        recipient_id: String,
        variables: BTreeMap<String, String>,
        /// A user's contact details, when the event carries them (UserRegistered).
        contact: Option<Contact>,
    },
    /// The channel's answer to a delivery.
    RecordDelivery {
        recipient_id: String,
        notification_id: String,
        outcome: Result<(), String>,
    },
}
