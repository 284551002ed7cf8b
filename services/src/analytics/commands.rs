//! Analytics commands: one fact taken from a consumed event, with its minute fixed from the
//! event's `occurred_at` before logging.

use serde::{Deserialize, Serialize};

/// A confirmed order's line, as analytics keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoldLine {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: u64,
    pub revenue: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    OrderCreated {
        order_id: String,
        minute_ms: i64,
    },
    OrderConfirmed {
        order_id: String,
        minute_ms: i64,
        total: i64,
        lines: Vec<SoldLine>,
    },
    OrderCancelled {
        order_id: String,
        minute_ms: i64,
    },
    OrderCompleted {
        order_id: String,
    },
    /// A refund, counted once per payment.
    RefundProcessed {
        payment_id: String,
        /// Empty in commands logged before it was carried: such a refund is taken as one
        /// of a confirmed order, as it was then.
        #[serde(default)]
        order_id: String,
        minute_ms: i64,
        amount: i64,
    },
    /// Something counted once per (kind, id): users registered, products created,
    /// payments, shipments, low-stock alerts.
    Count {
        kind: Counted,
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Counted {
    UserRegistered,
    ProductCreated,
    PaymentProcessed,
    PaymentFailed,
    ShipmentCreated,
    ShipmentDelivered,
    /// Counted per alert event (id = the event id): every crossing is one alert.
    LowStockAlert,
}

impl Counted {
    pub fn as_str(self) -> &'static str {
        match self {
            Counted::UserRegistered => "user_registered",
            Counted::ProductCreated => "product_created",
            Counted::PaymentProcessed => "payment_processed",
            Counted::PaymentFailed => "payment_failed",
            Counted::ShipmentCreated => "shipment_created",
            Counted::ShipmentDelivered => "shipment_delivered",
            Counted::LowStockAlert => "low_stock_alert",
        }
    }
}
