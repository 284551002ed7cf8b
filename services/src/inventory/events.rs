//! Events on `inventory-events` (docs/order-flow.md). Replies to the saga are keyed by order
//! id; stock events by product id.

use super::model::Item;
use serde::Serialize;

pub const TOPIC: &str = "inventory-events";

pub const INVENTORY_RESERVED: &str = "InventoryReserved";
pub const RESERVATION_FAILED: &str = "InventoryReservationFailed";
pub const INVENTORY_RELEASED: &str = "InventoryReleased";
pub const INVENTORY_COMMITTED: &str = "InventoryCommitted";
pub const STOCK_LEVEL_CHANGED: &str = "StockLevelChanged";
pub const LOW_STOCK_ALERT: &str = "LowStockAlert";

#[derive(Serialize)]
pub struct InventoryReserved<'a> {
    pub order_id: &'a str,
    pub items: &'a [Item],
    pub expires_at: &'a str,
}

#[derive(Serialize)]
pub struct ReservationFailed<'a> {
    pub order_id: &'a str,
    pub reason: &'a str,
    pub product_id: &'a str,
}

#[derive(Serialize)]
pub struct InventoryReleased<'a> {
    pub order_id: &'a str,
    pub reason: &'a str,
    pub items: &'a [Item],
}

#[derive(Serialize)]
pub struct InventoryCommitted<'a> {
    pub order_id: &'a str,
    pub items: &'a [Item],
}

#[derive(Serialize)]
pub struct StockLevelChanged<'a> {
    pub product_id: &'a str,
    pub available: u64,
    pub reserved: u64,
}

#[derive(Serialize)]
pub struct LowStockAlert<'a> {
    pub product_id: &'a str,
    pub available: u64,
    pub threshold: u64,
}
