//! The participants' replies the saga waits on, read from their event topics as the order
//! service's own view of the contract (docs/order-flow.md), and matched to an order by
//! `order_id`. The platform's inbox applies each event at most once; the saga ignores a reply
//! that does not fit where its order stands.

use super::apply::Orders;
use super::commands::Command;
use super::saga::Reply;
use crate::platform::consumer::Subscriber;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;

pub const INVENTORY_EVENTS: &str = "inventory-events";
pub const PAYMENT_EVENTS: &str = "payment-events";
pub const SHIPPING_EVENTS: &str = "shipping-events";

#[derive(Deserialize)]
struct AboutOrder {
    order_id: String,
}

#[derive(Deserialize)]
struct WithReason {
    reason: String,
}

#[derive(Deserialize)]
struct Payment {
    payment_id: String,
}

#[derive(Deserialize)]
struct Shipment {
    shipment_id: String,
    tracking_number: String,
}

#[derive(Clone, Copy)]
pub struct OrderSubscriber;

impl Subscriber for OrderSubscriber {
    type Machine = Orders;
    const GROUP: &'static str = "order";
    const TOPICS: &'static [&'static str] = &[INVENTORY_EVENTS, PAYMENT_EVENTS, SHIPPING_EVENTS];

    fn command_for(
        &self,
        _topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let reply = match event.event_type.as_str() {
            "InventoryReserved" => Reply::InventoryReserved,
            "InventoryReservationFailed" => Reply::InventoryReservationFailed {
                reason: event.data_as::<WithReason>()?.reason,
            },
            "InventoryReleased" => Reply::InventoryReleased,
            "InventoryCommitted" => Reply::InventoryCommitted,
            "PaymentProcessed" => Reply::PaymentProcessed {
                payment_id: event.data_as::<Payment>()?.payment_id,
            },
            "PaymentFailed" => Reply::PaymentFailed {
                reason: event.data_as::<WithReason>()?.reason,
            },
            "RefundProcessed" => Reply::RefundProcessed,
            "ShipmentCreated" => {
                let shipment: Shipment = event.data_as()?;
                Reply::ShipmentCreated {
                    shipment_id: shipment.shipment_id,
                    tracking_number: shipment.tracking_number,
                }
            }
            "ShipmentFailed" => Reply::ShipmentFailed {
                reason: event.data_as::<WithReason>()?.reason,
            },
            "ShipmentCancelled" => Reply::ShipmentCancelled,
            "ShipmentDispatched" => Reply::ShipmentDispatched,
            "ShipmentDelivered" => Reply::ShipmentDelivered,
            // Stock levels, alerts, initiated payments, tracking notes: not the saga's.
            _ => return Ok(None),
        };
        let AboutOrder { order_id } = event.data_as()?;
        if order_id.is_empty() || order_id.len() > 128 {
            return Err(Rejection::invalid(
                "order_id",
                "an order id has 1 to 128 bytes",
            ));
        }
        Ok(Some(Command::Reply { order_id, reply }))
    }
}
