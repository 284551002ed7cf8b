//! Payment commands; ids and timestamps are fixed before logging, and the provider's answers
//! come in as commands too (`RecordCharge`, `RecordRefund`), so apply never calls out.

use super::model::{ChargeOutcome, RefundOutcome};
use crate::platform::Money;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// ProcessPayment from `payment-commands`: becomes a pending payment unless one with this
    /// idempotency key (or for this order) exists.
    Process {
        /// Derived from the idempotency key, so a replayed command names the same payment.
        payment_id: String,
        order_id: String,
        customer_id: String,
        amount: Money,
        /// The provider's token for the card; empty in a command logged before cards were
        /// tokenized (its card number is not read: the charge is declined as invalid).
        #[serde(default)]
        payment_token: String,
        #[serde(default)]
        card_last4: String,
        idempotency_key: String,
    },
    /// The provider's answer to the payment's charge.
    RecordCharge {
        payment_id: String,
        outcome: ChargeOutcome,
    },
    /// RefundPayment from `payment-commands`, or an admin's refund: refunds the order's
    /// captured payment in full, once.
    Refund {
        order_id: String,
        refund_id: String,
        reason: String,
    },
    /// The provider's answer to a refund.
    RecordRefund {
        payment_id: String,
        refund_id: String,
        outcome: RefundOutcome,
    },
}
