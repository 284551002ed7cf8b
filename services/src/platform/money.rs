//! Money as every service and the API carry it: minor units of a currency. A value type of
//! the public contract (API.md), so it lives with the platform, not in any one service.

use super::Rejection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Money in minor units of a currency (`{"amount": 1999, "currency": "USD"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    /// A non-negative amount in a three-letter uppercase currency code.
    pub fn validate(self, field: &str) -> Result<Money, Rejection> {
        if self.amount < 0 {
            return Err(Rejection::invalid(field, "an amount cannot be negative"));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(Rejection::invalid(
                field,
                "currency is a three-letter ISO 4217 code such as USD",
            ));
        }
        Ok(self)
    }
}
