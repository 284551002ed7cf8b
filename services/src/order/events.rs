//! What the order service publishes (docs/order-flow.md): its events on `order-events` and
//! its commands to the participants, each keyed by the order id.

use super::model::{Address, Money, OrderLine, ShippingMethod};
use serde::Serialize;

pub const ORDER_EVENTS: &str = "order-events";
pub const INVENTORY_COMMANDS: &str = "inventory-commands";
pub const PAYMENT_COMMANDS: &str = "payment-commands";
pub const SHIPPING_COMMANDS: &str = "shipping-commands";

pub const ORDER_CREATED: &str = "OrderCreated";
pub const ORDER_CONFIRMED: &str = "OrderConfirmed";
pub const ORDER_CANCELLED: &str = "OrderCancelled";
pub const ORDER_COMPLETED: &str = "OrderCompleted";

pub const RESERVE_INVENTORY: &str = "ReserveInventory";
pub const CONFIRM_RESERVATION: &str = "ConfirmReservation";
pub const RELEASE_INVENTORY: &str = "ReleaseInventory";
pub const COMMIT_INVENTORY: &str = "CommitInventory";
pub const PROCESS_PAYMENT: &str = "ProcessPayment";
pub const REFUND_PAYMENT: &str = "RefundPayment";
pub const CREATE_SHIPMENT: &str = "CreateShipment";
pub const CANCEL_SHIPMENT: &str = "CancelShipment";

#[derive(Serialize)]
pub struct OrderCreated<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub lines: &'a [OrderLine],
    pub total: &'a Money,
    pub shipping_address: &'a Address,
}

#[derive(Serialize)]
pub struct OrderConfirmed<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub lines: &'a [OrderLine],
    pub total: &'a Money,
    pub tracking_number: Option<&'a str>,
}

#[derive(Serialize)]
pub struct OrderCancelled<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub lines: &'a [OrderLine],
    pub total: &'a Money,
    pub reason: &'a str,
}

#[derive(Serialize)]
pub struct OrderCompleted<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
}

/// `{product_id, quantity}` in inventory commands.
#[derive(Serialize)]
pub struct Item<'a> {
    pub product_id: &'a str,
    pub quantity: u32,
}

#[derive(Serialize)]
pub struct ReserveInventory<'a> {
    pub order_id: &'a str,
    pub items: Vec<Item<'a>>,
    /// RFC 3339.
    pub expires_at: String,
}

/// ConfirmReservation and CommitInventory.
#[derive(Serialize)]
pub struct ForOrder<'a> {
    pub order_id: &'a str,
}

/// ReleaseInventory and CancelShipment.
#[derive(Serialize)]
pub struct WithReason<'a> {
    pub order_id: &'a str,
    pub reason: &'a str,
}

#[derive(Serialize)]
pub struct ProcessPayment<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub amount: &'a Money,
    /// The provider's token for the card (never the number) and its last four digits.
    pub payment_token: &'a str,
    pub card_last4: &'a str,
    pub idempotency_key: String,
}

#[derive(Serialize)]
pub struct RefundPayment<'a> {
    pub order_id: &'a str,
    pub reason: &'a str,
    pub idempotency_key: String,
}

#[derive(Serialize)]
pub struct ShipmentItem<'a> {
    pub product_id: &'a str,
    pub quantity: u32,
    pub weight_grams: u32,
}

#[derive(Serialize)]
pub struct CreateShipment<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub address: &'a Address,
    pub items: Vec<ShipmentItem<'a>>,
    pub method: ShippingMethod,
}
