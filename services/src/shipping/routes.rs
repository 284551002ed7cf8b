//! Shipping's HTTP routes, mounted by the gateway under `/api/shipping`.

use super::ShippingService;
use super::apply::{CARRIER_TOKEN, CARRIER_TOKEN_ID, SHIPMENTS, TRACKING};
use super::commands::Command;
use super::model::{Address, HistoryEntry, Shipment, ShipmentStatus};
use super::rates::{MAX_WEIGHT_GRAMS, Method, Zone, cost_cents};
use crate::catalog::model::{Money, check_text};
use crate::inventory::model::check_order_id;
use crate::platform::http::{Admin, ApiError, Body, Caller, RequestContext, answer};
use crate::platform::{Rejection, StoreError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

pub const CARRIER_TOKEN_HEADER: &str = "x-carrier-token";

pub fn router(service: Arc<ShippingService>) -> Router {
    Router::new()
        .route("/orders/{order_id}", get(get_shipment))
        .route("/orders/{order_id}/dispatch", post(dispatch))
        .route("/orders/{order_id}/deliver", post(deliver))
        .route("/quote", post(quote))
        .route("/webhooks/carrier", post(carrier_webhook))
        .with_state(service)
}

/// An order's shipment as its customer or an admin sees it.
#[derive(Serialize, ToSchema)]
pub struct ShipmentView {
    pub order_id: String,
    pub shipment_id: String,
    pub tracking_number: String,
    pub status: ShipmentStatus,
    pub cost: Money,
    pub method: Method,
    pub zone: Zone,
    pub weight_grams: u64,
    pub address: Address,
    pub history: Vec<HistoryEntry>,
}

impl From<Shipment> for ShipmentView {
    fn from(shipment: Shipment) -> ShipmentView {
        ShipmentView {
            order_id: shipment.order_id,
            shipment_id: shipment.shipment_id,
            tracking_number: shipment.tracking_number,
            status: shipment.status,
            cost: shipment.cost,
            method: shipment.method,
            zone: shipment.zone,
            weight_grams: shipment.weight_grams,
            address: shipment.address,
            history: shipment.history,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub address: Address,
    pub weight_grams: u64,
    /// `standard` or `express`.
    pub method: String,
}

#[derive(Serialize, ToSchema)]
pub struct Quote {
    pub cost: Money,
    pub zone: Zone,
}

/// What an admin may add to a status change (both optional; the body may be empty).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusNote {
    pub location: Option<String>,
    pub note: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CarrierUpdate {
    pub tracking_number: String,
    /// `dispatched`, `in_transit` or `delivered`.
    pub status: String,
    pub location: Option<String>,
    pub note: Option<String>,
}

/// An order's shipment (its customer, or an admin).
#[utoipa::path(get, path = "/api/shipping/orders/{order_id}",
    responses((status = 200, body = ShipmentView), (status = 401), (status = 404)),
    security(("bearer" = [])), tag = "shipping")]
pub async fn get_shipment(
    State(service): State<Arc<ShippingService>>,
    Caller(caller): Caller,
    Path(order_id): Path<String>,
) -> Result<axum::Json<ShipmentView>, ApiError> {
    let order_id = check_order_id(&order_id)?;
    let Some(shipment) = SHIPMENTS.get(service.engine.store().as_ref(), &order_id)? else {
        return Err(Rejection::not_found("shipment").into());
    };
    // Another customer's shipment is answered as one that does not exist, as orders are:
    // a 403 would confirm the order id is real.
    if shipment.customer_id != caller.user_id && !caller.is_admin() {
        return Err(Rejection::not_found("shipment").into());
    }
    Ok(axum::Json(ShipmentView::from(shipment)))
}

/// What shipping a parcel would cost (anyone).
#[utoipa::path(post, path = "/api/shipping/quote", request_body = QuoteRequest,
    responses((status = 200, body = Quote), (status = 400)), tag = "shipping")]
pub async fn quote(Body(request): Body<QuoteRequest>) -> Result<axum::Json<Quote>, ApiError> {
    let (_, zone) = request.address.validate()?;
    let method = parse_method(&request.method)?;
    if request.weight_grams > MAX_WEIGHT_GRAMS {
        return Err(Rejection::invalid(
            "weight_grams",
            format!("the carrier takes parcels up to {MAX_WEIGHT_GRAMS} g"),
        )
        .into());
    }
    Ok(axum::Json(Quote {
        cost: Money {
            amount: cost_cents(request.weight_grams, zone, method),
            currency: "USD".to_string(),
        },
        zone,
    }))
}

/// Mark an order's shipment dispatched (admin); the body `{location?, note?}` is optional.
#[utoipa::path(post, path = "/api/shipping/orders/{order_id}/dispatch", request_body = StatusNote,
    responses((status = 200, body = ShipmentView), (status = 403), (status = 404),
        (status = 409, description = "invalid_state: not a created shipment")),
    security(("bearer" = [])), tag = "shipping")]
pub async fn dispatch(
    State(service): State<Arc<ShippingService>>,
    context: RequestContext,
    _admin: Admin,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<ShipmentView>, ApiError> {
    let note = status_note(&body)?;
    service
        .change_status(&order_id, ShipmentStatus::Dispatched, note, &context)
        .await
}

/// Mark an order's shipment delivered (admin); the body `{location?, note?}` is optional.
#[utoipa::path(post, path = "/api/shipping/orders/{order_id}/deliver", request_body = StatusNote,
    responses((status = 200, body = ShipmentView), (status = 403), (status = 404),
        (status = 409, description = "invalid_state: not dispatched yet, or cancelled")),
    security(("bearer" = [])), tag = "shipping")]
pub async fn deliver(
    State(service): State<Arc<ShippingService>>,
    context: RequestContext,
    _admin: Admin,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<ShipmentView>, ApiError> {
    let note = status_note(&body)?;
    service
        .change_status(&order_id, ShipmentStatus::Delivered, note, &context)
        .await
}

/// The carrier's status updates, authenticated by the `X-Carrier-Token` header.
#[utoipa::path(post, path = "/api/shipping/webhooks/carrier", request_body = CarrierUpdate,
    params(("X-Carrier-Token" = String, Header, description = "the token in <data-dir>/services/shipping/carrier-token (the same on every node)")),
    responses((status = 200, body = ShipmentView), (status = 400), (status = 401), (status = 404),
        (status = 409, description = "invalid_state"), (status = 503, description = "carrier_token_unavailable")),
    tag = "shipping")]
pub async fn carrier_webhook(
    State(service): State<Arc<ShippingService>>,
    context: RequestContext,
    headers: HeaderMap,
    Body(update): Body<CarrierUpdate>,
) -> Result<axum::Json<ShipmentView>, ApiError> {
    let presented = headers
        .get(CARRIER_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    // Read at each call: a token installed by another node's command counts at once.
    let Some(token) = CARRIER_TOKEN.get(service.engine.store().as_ref(), CARRIER_TOKEN_ID)? else {
        return Err(ApiError::Unavailable {
            code: "carrier_token_unavailable",
            message: "no carrier token is installed yet; try again shortly".to_string(),
        });
    };
    if !token.matches(presented) {
        return Err(Rejection::unauthenticated(
            "invalid_carrier_token",
            "X-Carrier-Token is missing or wrong",
        )
        .into());
    }
    let status = match update.status.as_str() {
        "dispatched" => ShipmentStatus::Dispatched,
        "in_transit" => ShipmentStatus::InTransit,
        "delivered" => ShipmentStatus::Delivered,
        _ => {
            return Err(Rejection::invalid(
                "status",
                "a carrier status is dispatched, in_transit or delivered",
            )
            .into());
        }
    };
    let note = StatusNote {
        location: update.location,
        note: update.note,
    };
    let Some(order_id) = TRACKING.get(service.engine.store().as_ref(), &update.tracking_number)?
    else {
        return Err(Rejection::not_found("tracking number").into());
    };
    service
        .change_status(&order_id, status, note, &context)
        .await
}

fn parse_method(method: &str) -> Result<Method, Rejection> {
    Method::parse(method)
        .ok_or_else(|| Rejection::invalid("method", "a method is standard or express"))
}

fn status_note(body: &Bytes) -> Result<StatusNote, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(StatusNote::default());
    }
    serde_json::from_slice(body).map_err(|error| Rejection {
        code: "invalid_body".to_string(),
        ..Rejection::invalid("body", error.to_string())
    })
}

impl ShippingService {
    async fn change_status(
        &self,
        order_id: &str,
        status: ShipmentStatus,
        note: StatusNote,
        context: &RequestContext,
    ) -> Result<axum::Json<ShipmentView>, ApiError> {
        let optional = |field: &str, text: Option<String>| {
            text.map(|text| check_text(field, &text, 200, true))
                .transpose()
        };
        let command = Command::UpdateStatus {
            order_id: check_order_id(order_id)?,
            status,
            location: optional("location", note.location)?,
            note: optional("note", note.note)?,
        };
        let shipment = answer(self.engine.submit(command, context.command()).await)?;
        let shipment = shipment.ok_or_else(|| {
            ApiError::Store(StoreError::Task("the command answered no shipment".into()))
        })?;
        Ok(axum::Json(ShipmentView::from(shipment)))
    }
}

/// Shipping's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get_shipment, quote, dispatch, deliver, carrier_webhook),
    tags((name = "shipping"))
)]
pub struct ShippingApi;
