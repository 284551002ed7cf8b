//! The saga's commands on `inventory-commands` (docs/order-flow.md), read as inventory's own
//! view of that contract. Each becomes one logged inventory command; the inbox drops a
//! redelivered envelope, and the reservation record answers a repeated command with a new
//! envelope id.

use super::apply::Inventory;
use super::commands::Command;
use super::model::{Item, check_order_id, check_product_id};
use crate::platform::consumer::Subscriber;
use crate::platform::time::parse_rfc3339;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;

pub const INVENTORY_COMMANDS: &str = "inventory-commands";

/// An order has at most this many lines; more is not an order the saga sends.
const MAX_ITEMS: usize = 1000;

#[derive(Deserialize)]
struct ReserveInventory {
    order_id: String,
    items: Vec<Item>,
    expires_at: String,
}

#[derive(Deserialize)]
struct OrderOnly {
    order_id: String,
}

#[derive(Deserialize)]
struct ReleaseInventory {
    order_id: String,
    reason: String,
}

#[derive(Clone, Copy)]
pub struct InventorySubscriber;

impl Subscriber for InventorySubscriber {
    type Machine = Inventory;
    const GROUP: &'static str = "inventory";
    const TOPICS: &'static [&'static str] = &[INVENTORY_COMMANDS];

    fn command_for(
        &self,
        _topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let command = match event.event_type.as_str() {
            "ReserveInventory" => {
                let data: ReserveInventory = event.data_as()?;
                if data.items.is_empty() || data.items.len() > MAX_ITEMS {
                    return Err(Rejection::invalid(
                        "items",
                        format!("a reservation has 1 to {MAX_ITEMS} items"),
                    ));
                }
                let mut items = Vec::with_capacity(data.items.len());
                for item in data.items {
                    if item.quantity == 0 {
                        return Err(Rejection::invalid("quantity", "a quantity is at least 1"));
                    }
                    items.push(Item {
                        product_id: check_product_id(&item.product_id)?,
                        quantity: item.quantity,
                    });
                }
                let expires_at_ms = parse_rfc3339(&data.expires_at).ok_or_else(|| {
                    Rejection::invalid("expires_at", "expires_at is an RFC 3339 timestamp")
                })?;
                Command::Reserve {
                    order_id: check_order_id(&data.order_id)?,
                    items,
                    expires_at: data.expires_at,
                    expires_at_ms,
                }
            }
            "ConfirmReservation" => {
                let data: OrderOnly = event.data_as()?;
                Command::Confirm {
                    order_id: check_order_id(&data.order_id)?,
                }
            }
            "ReleaseInventory" => {
                let data: ReleaseInventory = event.data_as()?;
                Command::Release {
                    order_id: check_order_id(&data.order_id)?,
                    reason: data.reason,
                }
            }
            "CommitInventory" => {
                let data: OrderOnly = event.data_as()?;
                Command::Commit {
                    order_id: check_order_id(&data.order_id)?,
                }
            }
            other => {
                tracing::debug!(event_type = other, "not an inventory command; ignored");
                return Ok(None);
            }
        };
        Ok(Some(command))
    }
}
