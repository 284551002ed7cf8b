//! The events notification reacts to, read as its own view of the other services' published
//! contracts: UserRegistered (welcome, and the contact read model), RegistrationAttempted
//! and RefreshTokenReused (security notices), OrderConfirmed, OrderCancelled (declined or
//! out of stock: the customer is told why), PaymentProcessed and ShipmentDelivered.
//! Everything else is ignored. Each event notifies once: the platform's inbox drops a
//! redelivered event id.

use super::apply::Notifications;
use super::commands::Command;
use super::model::Contact;
use crate::platform::consumer::Subscriber;
use crate::platform::envelope::derived_id;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const TOPICS: &[&str] = &[
    "identity-events",
    "order-events",
    "payment-events",
    "shipping-events",
];

#[derive(Deserialize)]
struct Money {
    amount: i64,
    currency: String,
}

impl Money {
    /// `12.34 USD`: minor units shown with two decimals.
    fn display(&self) -> String {
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        format!("{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[derive(Deserialize)]
struct UserRegistered {
    user_id: String,
    email: String,
    name: String,
}

#[derive(Deserialize)]
struct OrderConfirmed {
    order_id: String,
    customer_id: String,
    total: Money,
    #[serde(default)]
    tracking_number: Option<String>,
}

#[derive(Deserialize)]
struct PaymentProcessed {
    payment_id: String,
    order_id: String,
    customer_id: String,
    amount: Money,
    card_last4: String,
}

#[derive(Deserialize)]
struct OrderCancelled {
    order_id: String,
    customer_id: String,
    total: Money,
    reason: String,
}

#[derive(Deserialize)]
struct RegistrationAttempted {
    user_id: String,
    email: String,
}

#[derive(Deserialize)]
struct RefreshTokenReused {
    user_id: String,
    session_id: String,
}

#[derive(Deserialize)]
struct ShipmentDelivered {
    shipment_id: String,
    order_id: String,
    customer_id: String,
    tracking_number: String,
}

#[derive(Clone, Copy)]
pub struct NotificationSubscriber;

impl Subscriber for NotificationSubscriber {
    type Machine = Notifications;
    const GROUP: &'static str = "notification";
    const TOPICS: &'static [&'static str] = TOPICS;

    fn command_for(
        &self,
        _topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let (template, recipient, variables, contact) = match event.event_type.as_str() {
            "UserRegistered" => {
                let data: UserRegistered = event.data_as()?;
                let user_id = check_id("user_id", data.user_id)?;
                let variables = vars([
                    ("name", data.name.clone()),
                    ("email", data.email.clone()),
                    ("user_id", user_id.clone()),
                ]);
                let contact = Contact {
                    user_id: user_id.clone(),
                    email: data.email,
                    name: data.name,
                };
                ("welcome", user_id, variables, Some(contact))
            }
            "OrderConfirmed" => {
                let data: OrderConfirmed = event.data_as()?;
                let variables = vars([
                    ("order_id", data.order_id),
                    ("total", data.total.display()),
                    ("tracking_number", data.tracking_number.unwrap_or_default()),
                ]);
                let customer = check_id("customer_id", data.customer_id)?;
                ("order_confirmed", customer, variables, None)
            }
            "PaymentProcessed" => {
                let data: PaymentProcessed = event.data_as()?;
                let variables = vars([
                    ("order_id", data.order_id),
                    ("payment_id", data.payment_id),
                    ("amount", data.amount.display()),
                    ("card_last4", data.card_last4),
                ]);
                let customer = check_id("customer_id", data.customer_id)?;
                ("payment_received", customer, variables, None)
            }
            "OrderCancelled" => {
                let data: OrderCancelled = event.data_as()?;
                let variables = vars([
                    ("order_id", data.order_id),
                    ("total", data.total.display()),
                    ("reason", data.reason),
                ]);
                let customer = check_id("customer_id", data.customer_id)?;
                ("order_cancelled", customer, variables, None)
            }
            "RegistrationAttempted" => {
                let data: RegistrationAttempted = event.data_as()?;
                let user_id = check_id("user_id", data.user_id)?;
                let variables = vars([("email", data.email)]);
                ("registration_attempt", user_id, variables, None)
            }
            "RefreshTokenReused" => {
                let data: RefreshTokenReused = event.data_as()?;
                let user_id = check_id("user_id", data.user_id)?;
                let variables = vars([("session_id", data.session_id)]);
                ("refresh_token_reused", user_id, variables, None)
            }
            "ShipmentDelivered" => {
                let data: ShipmentDelivered = event.data_as()?;
                let variables = vars([
                    ("order_id", data.order_id),
                    ("shipment_id", data.shipment_id),
                    ("tracking_number", data.tracking_number),
                ]);
                let customer = check_id("customer_id", data.customer_id)?;
                ("shipment_delivered", customer, variables, None)
            }
            _ => return Ok(None),
        };
        Ok(Some(Command::Notify {
            id_base: derived_id(&[&event.id, template]),
            template: template.to_string(),
            recipient_id: recipient,
            variables,
            contact,
        }))
    }
}

fn vars<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

fn check_id(field: &str, id: String) -> Result<String, Rejection> {
    if id.is_empty() || id.len() > 128 {
        return Err(Rejection::invalid(
            field,
            format!("{field} has 1 to 128 bytes"),
        ));
    }
    Ok(id)
}
