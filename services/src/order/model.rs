//! Order records and value objects: the order as placed (priced lines, address) and its saga
//! state ([`super::saga::Saga`]), kept in one record so one apply changes both atomically.

use super::saga::Saga;
pub use crate::platform::Money;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A delivery address (contract: every field non-empty, at most 200 bytes; `country` an ISO
/// 3166-1 alpha-2 code). Built only through [`super::validate::address`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// One priced line of an order, as the catalog priced it when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
    pub weight_grams: u32,
}

/// How the order is shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShippingMethod {
    Standard,
    Express,
}

/// The order as the saga keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
    pub shipping_method: ShippingMethod,
    pub created_at_ms: i64,
    /// The placing request's correlation id: every command and event of this order carries
    /// it, whichever reply or tick caused them, so one order's flow is one trace.
    pub correlation_id: String,
    pub saga: Saga,
}

/// The public status (API.md): what a customer cares about, not the saga's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelled,
    Completed,
}

/// One entry of the saga timeline: a command sent, a reply, a timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// The step: `reserve_inventory`, `process_payment`, `create_shipment`, ...
    pub name: String,
    /// `requested`, `succeeded`, `failed`, `timed_out`, ...
    pub status: String,
    /// RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
