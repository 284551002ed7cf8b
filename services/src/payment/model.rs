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
    /// The full card number, kept ONLY while the charge is pending (the worker needs it to
    /// call the provider, also after a crash); erased in the same batch that records the
    /// outcome. Events and answers carry `card_last4` only.
    pub card_number: Option<String>,
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

/// The last four digits of a card number (fewer if it is shorter).
pub fn last4(card_number: &str) -> String {
    let digits: Vec<char> = card_number.chars().filter(char::is_ascii_digit).collect();
    let start = digits.len().saturating_sub(4);
    digits.get(start..).unwrap_or_default().iter().collect()
}

/// The Luhn check of a 12 to 19 digit card number (spaces allowed between groups).
pub fn luhn_valid(card_number: &str) -> bool {
    let digits: Vec<u32> = card_number
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_digit(10))
        .collect::<Option<Vec<u32>>>()
        .unwrap_or_default();
    if !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card number without the spaces people type between groups.
pub fn normalize_card(card_number: &str) -> String {
    card_number.chars().filter(|c| *c != ' ').collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_the_test_cards_and_refuses_typos() {
        for card in [
            "4242424242424242",
            "4000000000000002",
            "4000000000009995",
            "4242 4242 4242 4242",
            "5555555555554444",
        ] {
            assert!(luhn_valid(card), "{card}");
        }
        for card in [
            "4242424242424241",
            "1234",
            "42424242424242424242",
            "4242x24242424242",
            "",
        ] {
            assert!(!luhn_valid(card), "{card}");
        }
    }

    #[test]
    fn last4_keeps_the_last_four_digits() {
        assert_eq!(last4("4242424242424242"), "4242");
        assert_eq!(last4("4000 0000 0000 9995"), "9995");
        assert_eq!(last4("12"), "12");
    }
}
