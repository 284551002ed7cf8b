//! The notification state machine: templates, the users read model, and messages. Rendering
//! happens here (templates and variables are both in the state and the command, so every
//! replica renders the same text); delivery does not: the worker hands pending messages to a
//! channel and brings the answer back as `RecordDelivery`.

use super::commands::Command;
use super::events::{self, TOPIC};
use super::model::{Channel, Contact, DeliveryStatus, Notification, Origin, Template};
use super::templates::{kind, render};
use crate::platform::store::{Table, Transaction};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};

pub const TEMPLATES: Table<Template> = Table::new("template");
pub const CONTACTS: Table<Contact> = Table::new("contact");
/// Messages by `<recipient>/<id>`.
pub const NOTIFICATIONS: Table<Notification> = Table::new("notification");
/// Messages not delivered yet: `<recipient>/<id>` -> the same key.
pub const PENDING: Table<String> = Table::new("pending");

pub struct Notifications;

impl StateMachine for Notifications {
    type Command = Command;
    /// How many messages the command created or changed.
    type Output = usize;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        meta: &CommandMeta,
    ) -> Result<Result<usize, Rejection>, StoreError> {
        match command {
            Command::SeedTemplates(templates) => {
                let mut seeded = 0;
                for template in templates {
                    if TEMPLATES.get(tx, &template.name)?.is_none() {
                        let mut template = template.clone();
                        template.updated_at_ms = meta.at_ms;
                        TEMPLATES.put(tx, &template.name, &template)?;
                        seeded += 1;
                    }
                }
                Ok(Ok(seeded))
            }
            Command::PutTemplate { name, channels } => {
                let Some(kind) = kind(name) else {
                    return Ok(Err(Rejection::not_found("template")));
                };
                let mut template = TEMPLATES
                    .get(tx, name)?
                    .unwrap_or_else(|| kind.default_template());
                template.channels = channels.clone();
                template.updated_at_ms = meta.at_ms;
                TEMPLATES.put(tx, name, &template)?;
                Ok(Ok(0))
            }
            Command::Notify {
                id_base,
                template,
                recipient_id,
                variables,
                contact,
            } => {
                if let Some(contact) = contact {
                    CONTACTS.put(tx, &contact.user_id, contact)?;
                }
                let stored = match TEMPLATES.get(tx, template)? {
                    Some(stored) => stored,
                    None => match kind(template) {
                        Some(kind) => kind.default_template(),
                        None => return Ok(Err(Rejection::not_found("template"))),
                    },
                };
                let known = CONTACTS.get(tx, recipient_id)?;
                let mut values = variables.clone();
                values.entry("name".to_string()).or_insert_with(|| {
                    known
                        .as_ref()
                        .map_or_else(|| "customer".to_string(), |c| c.name.clone())
                });
                let mut created = 0;
                for (channel, content) in &stored.channels {
                    let address = match channel {
                        Channel::Email => known.as_ref().map(|c| c.email.clone()),
                        Channel::Push => Some(recipient_id.clone()),
                        // No phone numbers are known: identity does not collect them.
                        Channel::Sms => None,
                    };
                    let notification = Notification {
                        notification_id: format!("{id_base}-{}", channel.as_str()),
                        recipient_id: recipient_id.clone(),
                        channel: *channel,
                        template: template.clone(),
                        address,
                        subject: render(&content.subject, &values),
                        body: render(&content.body, &values),
                        status: DeliveryStatus::Pending,
                        failure_reason: None,
                        origin: Origin {
                            correlation_id: meta.correlation_id.clone(),
                            causation_id: meta.causation_id.clone(),
                            traceparent: meta.traceparent.clone(),
                        },
                        created_at_ms: meta.at_ms,
                        updated_at_ms: meta.at_ms,
                    };
                    let key = notification.key();
                    NOTIFICATIONS.put(tx, &key, &notification)?;
                    PENDING.put(tx, &key, &key)?;
                    created += 1;
                }
                Ok(Ok(created))
            }
            Command::RecordDelivery {
                recipient_id,
                notification_id,
                outcome,
            } => {
                let key = super::model::notification_key(recipient_id, notification_id);
                PENDING.delete(tx, &key);
                let Some(mut notification) = NOTIFICATIONS.get(tx, &key)? else {
                    return Ok(Ok(0));
                };
                if notification.status != DeliveryStatus::Pending {
                    return Ok(Ok(0));
                }
                notification.updated_at_ms = meta.at_ms;
                let channel = notification.channel.as_str();
                let event = match outcome {
                    Ok(()) => {
                        notification.status = DeliveryStatus::Sent;
                        let data = events::NotificationSent {
                            notification_id,
                            recipient_id,
                            channel,
                            template: &notification.template,
                        };
                        meta.event(events::NOTIFICATION_SENT, notification_id, 1, data)?
                    }
                    Err(reason) => {
                        notification.status = DeliveryStatus::Failed;
                        notification.failure_reason = Some(reason.clone());
                        let data = events::NotificationFailed {
                            notification_id,
                            recipient_id,
                            channel,
                            template: &notification.template,
                            reason,
                        };
                        meta.event(events::NOTIFICATION_FAILED, notification_id, 1, data)?
                    }
                };
                tx.emit(TOPIC, event);
                NOTIFICATIONS.put(tx, &key, &notification)?;
                Ok(Ok(1))
            }
        }
    }
}
