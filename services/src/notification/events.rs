//! Events on `notification-events`, keyed by notification id.

use serde::Serialize;

pub const TOPIC: &str = "notification-events";

pub const NOTIFICATION_SENT: &str = "NotificationSent";
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";

#[derive(Serialize)]
pub struct NotificationSent<'a> {
    pub notification_id: &'a str,
    pub recipient_id: &'a str,
    pub channel: &'a str,
    pub template: &'a str,
}

#[derive(Serialize)]
pub struct NotificationFailed<'a> {
    pub notification_id: &'a str,
    pub recipient_id: &'a str,
    pub channel: &'a str,
    pub template: &'a str,
    pub reason: &'a str,
}
