//! The commands payment answers, from `payment-commands` (docs/order-flow.md): ProcessPayment
//! and RefundPayment, read as payment's own view of the saga's contract. Ids are derived from
//! the idempotency key here, before logging, so a replayed command (a new envelope id, the
//! same key) names the same payment and apply answers it from what it already did.

use super::apply::Payments;
use super::commands::Command;
use crate::platform::Money;
use crate::platform::consumer::Subscriber;
use crate::platform::envelope::derived_id;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;

pub const PAYMENT_COMMANDS: &str = "payment-commands";

#[derive(Deserialize)]
struct ProcessPayment {
    order_id: String,
    customer_id: String,
    amount: Money,
    /// The provider's token for the card (the order saga never sees the number). A record
    /// written before cards were tokenized has none (and a `card_number`, which is not read):
    /// it is charged as an unknown token, i.e. declined as an invalid card.
    #[serde(default)]
    payment_token: String,
    #[serde(default)]
    card_last4: String,
    idempotency_key: String,
}

#[derive(Deserialize)]
struct RefundPayment {
    order_id: String,
    reason: String,
    idempotency_key: String,
}

#[derive(Clone, Copy)]
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
                let data: ProcessPayment = event.data_as()?;
                let amount = data.amount.validate("amount")?;
                if amount.amount == 0 {
                    return Err(Rejection::invalid("amount", "a payment is for more than 0"));
                }
                // The provider judges the token (an unknown one is an invalid card); only
                // absurd input is refused.
                if data.payment_token.len() > 128 {
                    return Err(Rejection::invalid(
                        "payment_token",
                        "a payment token has at most 128 characters",
                    ));
                }
                let card_last4: String = data
                    .card_last4
                    .chars()
                    .filter(char::is_ascii_digit)
                    .take(4)
                    .collect();
                let idempotency_key = check("idempotency_key", data.idempotency_key, 256)?;
                Command::Process {
                    payment_id: derived_id(&["payment", &idempotency_key]),
                    order_id: check("order_id", data.order_id, 128)?,
                    customer_id: check("customer_id", data.customer_id, 128)?,
                    amount,
                    payment_token: data.payment_token,
                    card_last4,
                    idempotency_key,
                }
            }
            "RefundPayment" => {
                let data: RefundPayment = event.data_as()?;
                let idempotency_key = check("idempotency_key", data.idempotency_key, 256)?;
                Command::Refund {
                    order_id: check("order_id", data.order_id, 128)?,
                    refund_id: derived_id(&["refund", &idempotency_key]),
                    reason: check("reason", data.reason, 200)?,
                }
            }
            // Nothing else is payment's business.
            _ => return Ok(None),
        };
        Ok(Some(command))
    }
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
