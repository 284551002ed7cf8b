//! The events analytics follows, read as its own view of the published contracts (API.md,
//! docs/order-flow.md): only the fields it aggregates, so other fields may come and go.
//! Minutes come from each event's `occurred_at`, never from the clock at apply.

use super::apply::Analytics;
use super::commands::{Command, Counted, SoldLine};
use super::model::minute_of;
use crate::platform::consumer::Subscriber;
use crate::platform::time::parse_rfc3339;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;

pub const TOPICS: &[&str] = &[
    "identity-events",
    "catalog-events",
    "order-events",
    "payment-events",
    "inventory-events",
    "shipping-events",
];

#[derive(Deserialize)]
struct Amount {
    amount: i64,
}

#[derive(Deserialize)]
struct OrderLine {
    product_id: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    name: String,
    quantity: u64,
    line_total: Amount,
}

#[derive(Deserialize)]
struct OrderOnly {
    order_id: String,
}

#[derive(Deserialize)]
struct OrderConfirmed {
    order_id: String,
    lines: Vec<OrderLine>,
    total: Amount,
}

#[derive(Deserialize)]
struct Payment {
    payment_id: String,
}

#[derive(Deserialize)]
struct Refund {
    payment_id: String,
    order_id: String,
    amount: Amount,
}

#[derive(Deserialize)]
struct UserRegistered {
    user_id: String,
}

#[derive(Deserialize)]
struct ProductCreated {
    id: String,
}

#[derive(Deserialize)]
struct Shipment {
    shipment_id: String,
}

#[derive(Clone, Copy)]
pub struct AnalyticsSubscriber;

impl Subscriber for AnalyticsSubscriber {
    type Machine = Analytics;
    const GROUP: &'static str = "analytics";
    const TOPICS: &'static [&'static str] = TOPICS;

    fn command_for(
        &self,
        topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let count = |kind: Counted, id: String| Command::Count { kind, id };
        let command = match (topic, event.event_type.as_str()) {
            ("identity-events", "UserRegistered") => count(
                Counted::UserRegistered,
                event.data_as::<UserRegistered>()?.user_id,
            ),
            ("catalog-events", "ProductCreated") => count(
                Counted::ProductCreated,
                event.data_as::<ProductCreated>()?.id,
            ),
            ("order-events", "OrderCreated") => Command::OrderCreated {
                order_id: event.data_as::<OrderOnly>()?.order_id,
                minute_ms: minute(event)?,
            },
            ("order-events", "OrderConfirmed") => {
                let data: OrderConfirmed = event.data_as()?;
                Command::OrderConfirmed {
                    order_id: data.order_id,
                    minute_ms: minute(event)?,
                    total: data.total.amount,
                    lines: data
                        .lines
                        .into_iter()
                        .map(|line| SoldLine {
                            product_id: line.product_id,
                            sku: line.sku,
                            name: line.name,
                            quantity: line.quantity,
                            revenue: line.line_total.amount,
                        })
                        .collect(),
                }
            }
            ("order-events", "OrderCancelled") => Command::OrderCancelled {
                order_id: event.data_as::<OrderOnly>()?.order_id,
                minute_ms: minute(event)?,
            },
            ("order-events", "OrderCompleted") => Command::OrderCompleted {
                order_id: event.data_as::<OrderOnly>()?.order_id,
            },
            ("payment-events", "PaymentProcessed") => count(
                Counted::PaymentProcessed,
                event.data_as::<Payment>()?.payment_id,
            ),
            ("payment-events", "PaymentFailed") => count(
                Counted::PaymentFailed,
                event.data_as::<Payment>()?.payment_id,
            ),
            ("payment-events", "RefundProcessed") => {
                let data: Refund = event.data_as()?;
                Command::RefundProcessed {
                    payment_id: data.payment_id,
                    order_id: data.order_id,
                    minute_ms: minute(event)?,
                    amount: data.amount.amount,
                }
            }
            ("inventory-events", "LowStockAlert") => {
                count(Counted::LowStockAlert, event.id.clone())
            }
            ("shipping-events", "ShipmentCreated") => count(
                Counted::ShipmentCreated,
                event.data_as::<Shipment>()?.shipment_id,
            ),
            ("shipping-events", "ShipmentDelivered") => count(
                Counted::ShipmentDelivered,
                event.data_as::<Shipment>()?.shipment_id,
            ),
            _ => return Ok(None),
        };
        Ok(Some(command))
    }
}

fn minute(event: &EventEnvelope) -> Result<i64, Rejection> {
    parse_rfc3339(&event.occurred_at)
        .map(minute_of)
        .ok_or_else(|| Rejection::invalid("occurred_at", "occurred_at is an RFC 3339 timestamp"))
}
