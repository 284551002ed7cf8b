//! The saga's commands on `shipping-commands` (docs/order-flow.md), read as shipping's own
//! view of that contract. A missing or malformed address is not the command's fault as a
//! message: it is answered with ShipmentFailed `invalid_address` so the saga compensates.

use super::apply::Shipping;
use super::commands::Command;
use super::model::{Address, ShipmentItem, shipment_id_for};
use crate::inventory::model::{check_id, check_order_id};
use crate::platform::consumer::Subscriber;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;

pub const SHIPPING_COMMANDS: &str = "shipping-commands";

const MAX_ITEMS: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(default)]
struct LooseAddress {
    name: String,
    line1: String,
    city: String,
    postal_code: String,
    country: String,
}

#[derive(Deserialize)]
struct CreateShipment {
    order_id: String,
    customer_id: String,
    #[serde(default)]
    address: Option<LooseAddress>,
    items: Vec<ShipmentItem>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
struct CancelShipment {
    order_id: String,
    reason: String,
}

#[derive(Clone, Copy)]
pub struct ShippingSubscriber;

impl Subscriber for ShippingSubscriber {
    type Machine = Shipping;
    const GROUP: &'static str = "shipping";
    const TOPICS: &'static [&'static str] = &[SHIPPING_COMMANDS];

    fn command_for(
        &self,
        _topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let command = match event.event_type.as_str() {
            "CreateShipment" => {
                let data: CreateShipment = event.data_as()?;
                if data.items.len() > MAX_ITEMS {
                    return Err(Rejection::invalid(
                        "items",
                        format!("a shipment has at most {MAX_ITEMS} items"),
                    ));
                }
                if data.items.iter().any(|item| item.quantity == 0) {
                    return Err(Rejection::invalid("quantity", "a quantity is at least 1"));
                }
                let address = data.address.unwrap_or_default();
                Command::Create {
                    // Derived from the command's envelope, so a redelivery names the same
                    // shipment (and tracking number).
                    shipment_id: shipment_id_for(&event.id),
                    order_id: check_order_id(&data.order_id)?,
                    customer_id: check_id("customer_id", &data.customer_id)?,
                    address: Address {
                        name: address.name,
                        line1: address.line1,
                        city: address.city,
                        postal_code: address.postal_code,
                        country: address.country,
                    },
                    items: data.items,
                    method: data.method.unwrap_or_else(|| "standard".to_string()),
                }
            }
            "CancelShipment" => {
                let data: CancelShipment = event.data_as()?;
                Command::Cancel {
                    order_id: check_order_id(&data.order_id)?,
                    reason: data.reason,
                }
            }
            other => {
                tracing::debug!(event_type = other, "not a shipping command; ignored");
                return Ok(None);
            }
        };
        Ok(Some(command))
    }
}
