//! `Idempotency-Key` on `POST /api/orders`, kept by the order service itself.
//!
//! The gateway's replicated records answer a retry while they know the key, but a request
//! in flight when its node died leaves the key "in flight" until a lease runs out, and the
//! retry after that runs again. So the order service keeps its own, durable answer: the key
//! travels in the `Place` command, and the apply that creates the order records
//! (customer, key) -> (order id, request fingerprint) in the same batch ([`PLACEMENTS`]),
//! in the order group's replicated state. A second `Place` with the key answers the first
//! order; with another request it is refused (422, as the gateway does). The order id is
//! derived from (customer, key) too, so every attempt of one request names the same order.
//!
//! The request fingerprint covers what the customer asked for (items, address, shipping
//! method and the card's keyed fingerprint — never its number), not the prices the catalog
//! gave, so a retry after a price change is still the same request.

use crate::platform::envelope::derived_id;
use crate::platform::error::RejectionKind;
use crate::platform::store::Table;
use crate::platform::{Rejection, http::ApiError};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Address, ShippingMethod};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;

/// `<customer id>/<Idempotency-Key>` -> the order placed with it.
pub const PLACEMENTS: Table<Placed> = Table::new("placement");

/// The key a `Place` command carries, with what the request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub key: String,
    /// Hex SHA-256 of the request as [`request_fingerprint`] sees it.
    pub request_fingerprint: String,
}

/// What a key placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub order_id: String,
    pub request_fingerprint: String,
}

pub fn placement_key(customer_id: &str, key: &str) -> String {
    format!("{customer_id}/{key}")
}

/// The order id every attempt of (customer, key) gets.
pub fn order_id(customer_id: &str, key: &str) -> String {
    derived_id(&["order", customer_id, key])
}

/// The request's `Idempotency-Key`, if it has one (1 to 255 visible ASCII characters, as the
/// gateway checks too).
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Ok(Some(key.to_string())),
        _ => Err(Rejection {
            kind: RejectionKind::Invalid,
            code: "invalid_idempotency_key".to_string(),
            message: format!("an Idempotency-Key has 1 to {MAX_KEY_LEN} characters"),
            field: None,
        }
        .into()),
    }
}

/// What one order request asked for, as a stable hash.
pub fn request_fingerprint(
    quantities: &[(String, u32)],
    address: &Address,
    method: ShippingMethod,
    card_fingerprint: &str,
) -> String {
    #[derive(Serialize)]
    struct Request<'a> {
        items: &'a [(String, u32)],
        address: &'a Address,
        method: ShippingMethod,
        card: &'a str,
    }
    let request = Request {
        items: quantities,
        address,
        method,
        card: card_fingerprint,
    };
    // Serializing plain structs and strings cannot fail; an empty input would only make
    // every request with this key look alike, which the key's owner chose.
    let bytes = serde_json::to_vec(&request).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The answer to a key used again with another request.
pub fn key_reused() -> Rejection {
    Rejection {
        kind: RejectionKind::Unprocessable,
        code: "idempotency_key_reused".to_string(),
        message: "this Idempotency-Key was used with a different request body".to_string(),
        field: None,
    }
}

/// Whether `placement` is the request `placed` was made for: Ok(order id) if so, the 422
/// rejection if the key was used with another request.
pub fn same_request(placed: &Placed, placement: &Placement) -> Result<String, Rejection> {
    if placed.request_fingerprint == placement.request_fingerprint {
        Ok(placed.order_id.clone())
    } else {
        Err(key_reused())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn address(city: &str) -> Address {
        Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: city.into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        }
    }

    #[test]
    fn a_key_names_one_order_per_customer_and_one_request() {
        assert_eq!(order_id("c1", "k"), order_id("c1", "k"));
        assert_ne!(order_id("c1", "k"), order_id("c2", "k"));
        let items = vec![("p1".to_string(), 2)];
        let fingerprint = |city: &str, card: &str| {
            request_fingerprint(&items, &address(city), ShippingMethod::Standard, card)
        };
        assert_eq!(fingerprint("Berlin", "f1"), fingerprint("Berlin", "f1"));
        assert_ne!(fingerprint("Berlin", "f1"), fingerprint("Paris", "f1"));
        assert_ne!(fingerprint("Berlin", "f1"), fingerprint("Berlin", "f2"));
        let placed = Placed {
            order_id: "o1".into(),
            request_fingerprint: fingerprint("Berlin", "f1"),
        };
        let again = Placement {
            key: "k".into(),
            request_fingerprint: fingerprint("Berlin", "f1"),
        };
        assert_eq!(same_request(&placed, &again).unwrap(), "o1");
        let other = Placement {
            key: "k".into(),
            request_fingerprint: fingerprint("Paris", "f1"),
        };
        assert_eq!(
            same_request(&placed, &other).unwrap_err().code,
            "idempotency_key_reused"
        );
    }
}
