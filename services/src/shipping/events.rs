//! Events on `shipping-events` (docs/order-flow.md), all keyed by order id so that one
//! order's shipping story stays in order.

use crate::platform::Money;
use serde::Serialize;

pub const TOPIC: &str = "shipping-events";

pub const SHIPMENT_CREATED: &str = "ShipmentCreated";
pub const SHIPMENT_FAILED: &str = "ShipmentFailed";
pub const SHIPMENT_CANCELLED: &str = "ShipmentCancelled";
pub const SHIPMENT_DISPATCHED: &str = "ShipmentDispatched";
pub const SHIPMENT_DELIVERED: &str = "ShipmentDelivered";
pub const TRACKING_UPDATED: &str = "TrackingUpdated";

#[derive(Serialize)]
pub struct ShipmentCreated<'a> {
    pub shipment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub tracking_number: &'a str,
    pub cost: &'a Money,
    pub method: &'a str,
}

#[derive(Serialize)]
pub struct ShipmentFailed<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub reason: &'a str,
}

#[derive(Serialize)]
pub struct ShipmentCancelled<'a> {
    pub shipment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub reason: &'a str,
}

/// ShipmentDispatched and ShipmentDelivered.
#[derive(Serialize)]
pub struct ShipmentMoved<'a> {
    pub shipment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub tracking_number: &'a str,
}

#[derive(Serialize)]
pub struct TrackingUpdated<'a> {
    pub shipment_id: &'a str,
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub tracking_number: &'a str,
    pub status: &'a str,
    pub location: Option<&'a str>,
    pub note: Option<&'a str>,
}
