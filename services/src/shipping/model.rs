//! Shipping records and value objects: the address, the shipment and its status history.

use super::rates::{Method, Zone, zone_of};
use crate::platform::Money;
use crate::platform::Rejection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

const MAX_ADDRESS_FIELD_BYTES: usize = 200;

/// A postal address (docs/order-flow.md): every field non-empty, at most 200 bytes; country an
/// ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

impl Address {
    /// The address trimmed, with its country uppercased, and the country's zone; a rejection
    /// names the first bad field.
    pub fn validate(&self) -> Result<(Address, Zone), Rejection> {
        let field = |name: &str, value: &str| -> Result<String, Rejection> {
            let value = value.trim();
            if value.is_empty()
                || value.len() > MAX_ADDRESS_FIELD_BYTES
                || value.chars().any(char::is_control)
            {
                return Err(Rejection::invalid(
                    &format!("address.{name}"),
                    format!("{name} has 1 to {MAX_ADDRESS_FIELD_BYTES} bytes of text"),
                ));
            }
            Ok(value.to_string())
        };
        let address = Address {
            name: field("name", &self.name)?,
            line1: field("line1", &self.line1)?,
            city: field("city", &self.city)?,
            postal_code: field("postal_code", &self.postal_code)?,
            country: field("country", &self.country)?.to_ascii_uppercase(),
        };
        let zone = zone_of(&address.country).ok_or_else(|| {
            Rejection::invalid(
                "address.country",
                format!(
                    "{} is not an ISO 3166-1 alpha-2 country code we ship to",
                    address.country
                ),
            )
        })?;
        Ok((address, zone))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShipmentItem {
    pub product_id: String,
    pub quantity: u64,
    pub weight_grams: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Created,
    Dispatched,
    InTransit,
    Delivered,
    Cancelled,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Created => "created",
            ShipmentStatus::Dispatched => "dispatched",
            ShipmentStatus::InTransit => "in_transit",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<ShipmentStatus> {
        match text {
            "created" => Some(ShipmentStatus::Created),
            "dispatched" => Some(ShipmentStatus::Dispatched),
            "in_transit" => Some(ShipmentStatus::InTransit),
            "delivered" => Some(ShipmentStatus::Delivered),
            "cancelled" => Some(ShipmentStatus::Cancelled),
            _ => None,
        }
    }

    /// Whether a shipment in this status may move to `next` (by admin or carrier):
    /// created -> dispatched -> in_transit* -> delivered; cancelled only from created.
    pub fn may_become(self, next: ShipmentStatus) -> bool {
        use ShipmentStatus::*;
        matches!(
            (self, next),
            (Created, Dispatched)
                | (Created, Cancelled)
                | (Dispatched | InTransit, InTransit)
                | (Dispatched | InTransit, Delivered)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub status: ShipmentStatus,
    /// RFC 3339.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One order's shipment (keyed by order id: the saga ships an order once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shipment {
    pub shipment_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub address: Address,
    pub items: Vec<ShipmentItem>,
    pub method: Method,
    pub zone: Zone,
    pub weight_grams: u64,
    pub cost: Money,
    pub tracking_number: String,
    pub status: ShipmentStatus,
    pub history: Vec<HistoryEntry>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A CreateShipment that was refused, kept so a repeat is answered the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedShipment {
    pub order_id: String,
    pub customer_id: String,
    pub reason: String,
    pub message: String,
}

/// `DC` + 12 uppercase hex characters of a digest of the shipment id: deterministic, so
/// every replica and every replay assigns the same number.
pub fn tracking_number(shipment_id: &str) -> String {
    let digest = Sha256::digest(shipment_id.as_bytes());
    let mut number = String::from("DC");
    for byte in digest.iter().take(6) {
        number.push_str(&format!("{byte:02X}"));
    }
    number
}

/// A shipment id derived from the id of the command that creates it (a UUID-shaped digest),
/// so a redelivered command names the same shipment.
pub fn shipment_id_for(command_envelope_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"shipment\0")
        .chain_update(command_envelope_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    for (out, byte) in bytes.iter_mut().zip(digest.iter()) {
        *out = *byte;
    }
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn address(country: &str) -> Address {
        Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Springfield".into(),
            postal_code: "12345".into(),
            country: country.into(),
        }
    }

    #[test]
    fn addresses_are_validated_field_by_field() {
        let (ok, zone) = address(" de ").validate().unwrap();
        assert_eq!(ok.country, "DE");
        assert_eq!(zone, Zone::Zone1);
        assert_eq!(
            address("XX").validate().unwrap_err().field.as_deref(),
            Some("address.country")
        );
        let mut blank = address("US");
        blank.city = "  ".into();
        assert_eq!(
            blank.validate().unwrap_err().field.as_deref(),
            Some("address.city")
        );
        let mut long = address("US");
        long.line1 = "x".repeat(201);
        assert_eq!(
            long.validate().unwrap_err().field.as_deref(),
            Some("address.line1")
        );
    }

    #[test]
    fn tracking_numbers_are_deterministic_and_shaped() {
        let id = shipment_id_for("envelope-1");
        assert_eq!(id, shipment_id_for("envelope-1"));
        assert_ne!(id, shipment_id_for("envelope-2"));
        let number = tracking_number(&id);
        assert_eq!(number, tracking_number(&id));
        assert_eq!(number.len(), 14);
        assert!(number.starts_with("DC"));
        assert!(
            number[2..]
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    #[test]
    fn status_transitions() {
        use ShipmentStatus::*;
        assert!(Created.may_become(Dispatched));
        assert!(Created.may_become(Cancelled));
        assert!(Dispatched.may_become(InTransit));
        assert!(InTransit.may_become(InTransit));
        assert!(InTransit.may_become(Delivered));
        assert!(!Created.may_become(Delivered));
        assert!(!Dispatched.may_become(Cancelled));
        assert!(!Dispatched.may_become(Dispatched));
        for next in [Created, Dispatched, InTransit, Delivered, Cancelled] {
            assert!(!Cancelled.may_become(next));
            assert!(!Delivered.may_become(next));
        }
    }
}
