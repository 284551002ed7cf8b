//! Catalog records and value objects.

use crate::platform::Rejection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::platform::Money;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub weight_grams: Option<u32>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The admin who created it (a user id; see [`Author`]). Absent on older records.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// What catalog knows of a user who may write to it, kept from `identity-events` (its own read
/// model: catalog never calls identity). Only the fields catalog shows, no email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Author {
    pub id: String,
    /// None until the user's UserRegistered has been seen.
    pub name: Option<String>,
    pub roles: Vec<String>,
    /// How many of the user's identity events this model has applied (each exactly once).
    pub version: u64,
    pub updated_at_ms: i64,
}

pub fn check_sku(sku: &str) -> Result<String, Rejection> {
    let sku = sku.trim();
    let ok = !sku.is_empty()
        && sku.len() <= 64
        && sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(Rejection::invalid(
            "sku",
            "a SKU has 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(sku.to_string())
}

pub fn check_text(
    field: &str,
    text: &str,
    max: usize,
    required: bool,
) -> Result<String, Rejection> {
    let text = text.trim();
    if (required && text.is_empty()) || text.chars().count() > max {
        let least = usize::from(required);
        return Err(Rejection::invalid(
            field,
            format!("{field} has {least} to {max} characters"),
        ));
    }
    Ok(text.to_string())
}
