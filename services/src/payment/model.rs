//! Payment records and value objects.

use crate::platform::Money;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a payment is in its life. `Pending` until the provider has answered the charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Captured,
    Failed,
    Refunded,
}

/// Why the provider refused a charge (the `reason` of PaymentFailed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    CardDeclined,
    InsufficientFunds,
    InvalidCard,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::CardDeclined => "card_declined",
            DeclineReason::InsufficientFunds => "insufficient_funds",
            DeclineReason::InvalidCard => "invalid_card",
        }
    }
}

/// What the provider answered to a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum ChargeOutcome {
    Captured { charge_id: String },
    Declined { reason: DeclineReason },
}

/// What the provider answered to a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum RefundOutcome {
    Refunded {
        refund_id: String,
    },
    /// The provider will never refund this (e.g. it knows no such charge).
    Refused {
        reason: String,
    },
}

/// Where a command came from, kept so that the events the worker causes later answer the
/// command that asked for them (same correlation id, causation = the command's envelope).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Origin {
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub amount: Money,
    pub reason: String,
    /// `pending` until the provider answered, then `refunded` or `refused`.
    pub status: String,
    pub provider_refund_id: Option<String>,
    pub requested_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount: Money,
    /// The provider's token for the card (never the number: that was exchanged for this
    /// token at the edge), kept while the charge is pending (the worker charges it, also
    /// after a crash) and dropped in the same batch that records the outcome. A payment
    /// recorded before cards were tokenized held `card_number` here: it is read without it.
    #[serde(default)]
    pub payment_token: Option<String>,
    pub card_last4: String,
    pub idempotency_key: String,
    pub status: PaymentStatus,
    pub failure_reason: Option<DeclineReason>,
    pub charge_id: Option<String>,
    pub refunds: Vec<Refund>,
    /// A refund asked for while the charge was still pending: done once it is captured.
    pub refund_requested: Option<RefundRequest>,
    pub origin: Origin,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundRequest {
    pub refund_id: String,
    pub reason: String,
    pub origin: Origin,
}

/// Work for the worker: a charge or a refund the provider has not answered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PendingWork {
    Charge {
        payment_id: String,
    },
    Refund {
        payment_id: String,
        refund_id: String,
    },
}
