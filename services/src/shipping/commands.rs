//! Shipping commands; ids, timestamps and the shipment id are fixed before logging.

use super::carrier::CarrierToken;
use super::model::{Address, ShipmentItem, ShipmentStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Saga: ship an order. The address and method are checked in apply, so a bad one is
    /// answered with ShipmentFailed (the saga compensates) rather than refused.
    Create {
        shipment_id: String,
        order_id: String,
        customer_id: String,
        address: Address,
        items: Vec<ShipmentItem>,
        method: String,
    },
    /// Saga: cancel an order's shipment; refused (nothing emitted) once dispatched.
    Cancel { order_id: String, reason: String },
    /// Admin or carrier: the shipment moved on.
    UpdateStatus {
        order_id: String,
        status: ShipmentStatus,
        location: Option<String>,
        note: Option<String>,
    },
    /// Installs the carrier's webhook token, made before logging. Only the first one ever
    /// installed counts: a later one (another node's, racing at first start) changes
    /// nothing, so every replica accepts the same token.
    InstallCarrierToken { token: CarrierToken },
}
