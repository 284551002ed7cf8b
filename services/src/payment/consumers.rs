//! The commands payment answers, from `payment-commands` (docs/order-flow.md): ProcessPayment
//! and RefundPayment, read as payment's own view of the saga's contract. Ids are derived from
//! the idempotency key here, before logging, so a replayed command (a new envelope id, the
//! same key) names the same payment and apply answers it from what it already did.

use super::apply::Payments;
use super::commands::Command;
use super::model::normalize_card;
use crate::catalog::model::Money;
use crate::platform::consumer::Subscriber;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const PAYMENT_COMMANDS: &str = "payment-commands";

#[derive(Deserialize)]
struct ProcessPayment {
    order_id: String,
    customer_id: String,
    amount: Money,
    card_number: String,
    idempotency_key: String,
}

#[derive(Deserialize)]
struct RefundPayment {
    order_id: String,
    reason: String,
    idempotency_key: String,
}

pub struct PaymentSubscriber;

impl Subscriber for PaymentSubscriber {
    type Machine = Payments;
    const GROUP: &'static str = "payment";
    const TOPICS: &'static [&'static str] = &[PAYMENT_COMMANDS];

    fn command_for(
        &self,
        _topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let command = match event.event_type.as_str() {
            "ProcessPayment" => {
                let data: ProcessPayment = parse(event)?;
                let amount = data.amount.validate("amount")?;
                if amount.amount == 0 {
                    return Err(Rejection::invalid("amount", "a payment is for more than 0"));
                }
                let card_number = normalize_card(&data.card_number);
                // The provider judges the number (invalid_card); only absurd input is refused.
                if card_number.is_empty() || card_number.len() > 64 {
                    return Err(Rejection::invalid(
                        "card_number",
                        "a card number has 1 to 64 characters",
                    ));
                }
                let idempotency_key = check("idempotency_key", data.idempotency_key, 256)?;
                Command::Process {
                    payment_id: derived_id("payment", &idempotency_key),
                    order_id: check("order_id", data.order_id, 128)?,
                    customer_id: check("customer_id", data.customer_id, 128)?,
                    amount,
                    card_number,
                    idempotency_key,
                }
            }
            "RefundPayment" => {
                let data: RefundPayment = parse(event)?;
                let idempotency_key = check("idempotency_key", data.idempotency_key, 256)?;
                Command::Refund {
                    order_id: check("order_id", data.order_id, 128)?,
                    refund_id: derived_id("refund", &idempotency_key),
                    reason: check("reason", data.reason, 200)?,
                }
            }
            // Nothing else is payment's business.
            _ => return Ok(None),
        };
        Ok(Some(command))
    }
}

/// A UUID derived from a key: the same key names the same record.
pub fn derived_id(kind: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    for (out, byte) in bytes.iter_mut().zip(digest.iter()) {
        *out = *byte;
    }
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn parse<T: serde::de::DeserializeOwned>(event: &EventEnvelope) -> Result<T, Rejection> {
    T::deserialize(&event.data).map_err(|error| {
        Rejection::invalid(
            "data",
            format!("{} command {}: {error}", event.event_type, event.id),
        )
    })
}

fn check(field: &str, value: String, max: usize) -> Result<String, Rejection> {
    if value.is_empty() || value.len() > max {
        return Err(Rejection::invalid(
            field,
            format!("{field} has 1 to {max} bytes"),
        ));
    }
    Ok(value)
}
