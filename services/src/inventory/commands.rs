//! Inventory commands; ids, timestamps and expiry instants are fixed before logging.

use super::model::Item;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Admin: sets one warehouse's available units (and optionally the alert threshold).
    SetStock {
        product_id: String,
        warehouse: String,
        available: u64,
        low_stock_threshold: Option<u64>,
    },
    /// Admin: adds `delta` (may be negative) to one warehouse's available units.
    AdjustStock {
        product_id: String,
        warehouse: String,
        delta: i64,
        reason: String,
    },
    /// Saga: hold `items` for the order until `expires_at`.
    Reserve {
        order_id: String,
        items: Vec<Item>,
        expires_at: String,
        expires_at_ms: i64,
    },
    /// Saga: the order is confirmed; its reservation no longer expires.
    Confirm { order_id: String },
    /// Saga: give the order's units back.
    Release { order_id: String, reason: String },
    /// Saga: shipped; the order's units leave stock.
    Commit { order_id: String },
    /// Worker: release every held reservation whose expiry is at or before `now_ms` (the
    /// worker reads the clock before submitting, so replay releases the same ones).
    ExpireReservations { now_ms: i64 },
}
