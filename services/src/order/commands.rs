//! Order commands; ids, prices and timestamps are fixed before logging.

use super::model::{Address, OrderLine, ShippingMethod};
use super::placement::Placement;
use super::saga::Reply;
use crate::platform::Money;
use crate::platform::card::CardPayment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A validated, priced order from `POST /api/orders` (boxed: far larger than the rest;
    /// serialized as the order itself).
    Place(Box<NewOrder>),
    /// A participant's reply, from its event topic.
    Reply { order_id: String, reply: Reply },
    /// The clock: fail every step whose deadline is at or before `now_ms`.
    Tick { now_ms: i64 },
    /// The customer (or an admin) cancels.
    Cancel { order_id: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOrder {
    pub id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
    pub shipping_method: ShippingMethod,
    /// The card as the provider tokenized it at the edge. A command logged before cards
    /// were tokenized carries `card_number` instead, which is not read: its payment is
    /// declined as an invalid card.
    #[serde(default)]
    pub payment: CardPayment,
    /// The request's `Idempotency-Key`, recorded with the order in the same apply.
    #[serde(default)]
    pub placement: Option<Placement>,
    pub step_timeout_ms: i64,
}
