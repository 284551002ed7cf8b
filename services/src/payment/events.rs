//! Events on `payment-events`, keyed by order id (a reply about an order stays on the order's
//! partition, docs/order-flow.md).

use crate::platform::Money;
use serde::Serialize;

pub const TOPIC: &str = "payment-events";

pub const PAYMENT_INITIATED: &str = "PaymentInitiated";
pub const PAYMENT_PROCESSED: &str = "PaymentProcessed";
pub const PAYMENT_FAILED: &str = "PaymentFailed";
pub const REFUND_PROCESSED: &str = "RefundProcessed";

#[derive(Serialize)]
pub struct PaymentInitiated<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub amount: &'a Money,
}

#[derive(Serialize)]
pub struct PaymentProcessed<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub amount: &'a Money,
    pub card_last4: &'a str,
}

#[derive(Serialize)]
pub struct PaymentFailed<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub amount: &'a Money,
    pub reason: &'a str,
}

#[derive(Serialize)]
pub struct RefundProcessed<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub amount: &'a Money,
}
