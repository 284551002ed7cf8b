//! Catalog commands; ids and timestamps are fixed before logging.

use super::model::{Money, Product};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Create(Product),
    Update {
        id: String,
        name: Option<String>,
        description: Option<String>,
        category: Option<String>,
        weight_grams: Option<u32>,
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
    },
    ChangePrice {
        id: String,
        price: Money,
    },
    Delete {
        id: String,
    },
    /// From `identity-events`: a user's name and/or roles as identity now has them.
    RecordAuthor {
        user_id: String,
        name: Option<String>,
        roles: Option<Vec<String>>,
    },
}
