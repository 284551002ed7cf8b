//! Inventory's HTTP routes, mounted by the gateway under `/api/inventory`.

use super::InventoryService;
use super::apply::{RESERVATIONS, STOCK};
use super::commands::Command;
use super::model::{Reservation, Stock, check_order_id, check_product_id, check_warehouse};
use crate::catalog::model::check_text;
use crate::platform::http::{Admin, ApiError, Body, RequestContext, answer};
use crate::platform::{ReadTx, Rejection, StoreError};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

pub fn router(service: Arc<InventoryService>) -> Router {
    Router::new()
        .route("/low-stock", get(low_stock))
        .route("/reservations/{order_id}", get(get_reservation))
        .route("/{product_id}", get(get_stock).put(set_stock))
        .route("/{product_id}/adjust", post(adjust_stock))
        .with_state(service)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// Units that can be sold now in the warehouse; at least 0.
    pub available: i64,
    /// Default `main`.
    pub warehouse: Option<String>,
    /// Alert when the product's available total drops below it (default 5).
    pub low_stock_threshold: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// Units to add (negative: remove) to the warehouse's available units.
    pub delta: i64,
    /// Default `main`.
    pub warehouse: Option<String>,
    /// Why (a count, damage, a delivery): kept in the command log.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct WarehouseView {
    pub name: String,
    pub available: u64,
    pub reserved: u64,
}

/// A product's stock: totals over its warehouses, and each warehouse.
#[derive(Serialize, ToSchema)]
pub struct StockView {
    pub product_id: String,
    pub available: u64,
    pub reserved: u64,
    pub warehouses: Vec<WarehouseView>,
    pub low_stock_threshold: u64,
}

impl From<&Stock> for StockView {
    fn from(stock: &Stock) -> StockView {
        let totals = stock.totals();
        StockView {
            product_id: stock.product_id.clone(),
            available: totals.available,
            reserved: totals.reserved,
            warehouses: stock
                .warehouses
                .iter()
                .map(|(name, units)| WarehouseView {
                    name: name.clone(),
                    available: units.available,
                    reserved: units.reserved,
                })
                .collect(),
            low_stock_threshold: stock.low_stock_threshold,
        }
    }
}

/// Set a warehouse's available units (admin).
#[utoipa::path(put, path = "/api/inventory/{product_id}", request_body = SetStock,
    responses((status = 200, body = StockView), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])), tag = "inventory")]
pub async fn set_stock(
    State(service): State<Arc<InventoryService>>,
    context: RequestContext,
    _admin: Admin,
    Path(product_id): Path<String>,
    Body(request): Body<SetStock>,
) -> Result<axum::Json<StockView>, ApiError> {
    let available = u64::try_from(request.available)
        .map_err(|_| Rejection::invalid("available", "available cannot be negative"))?;
    let low_stock_threshold = request
        .low_stock_threshold
        .map(|threshold| {
            u64::try_from(threshold).map_err(|_| {
                Rejection::invalid("low_stock_threshold", "a threshold cannot be negative")
            })
        })
        .transpose()?;
    let command = Command::SetStock {
        product_id: check_product_id(&product_id)?,
        warehouse: check_warehouse(request.warehouse.as_deref())?,
        available,
        low_stock_threshold,
    };
    service.submit(command, &context).await
}

/// A product's stock (anyone).
#[utoipa::path(get, path = "/api/inventory/{product_id}",
    responses((status = 200, body = StockView), (status = 404)), tag = "inventory")]
pub async fn get_stock(
    State(service): State<Arc<InventoryService>>,
    Path(product_id): Path<String>,
) -> Result<axum::Json<StockView>, ApiError> {
    match STOCK.get(service.engine.store().as_ref(), &product_id)? {
        Some(stock) => Ok(axum::Json(StockView::from(&stock))),
        None => Err(Rejection::not_found("product stock").into()),
    }
}

/// Add to or remove from a warehouse's available units (admin); never below zero.
#[utoipa::path(post, path = "/api/inventory/{product_id}/adjust", request_body = AdjustStock,
    responses((status = 200, body = StockView), (status = 400), (status = 403), (status = 404),
        (status = 409, description = "the adjustment would take available below zero")),
    security(("bearer" = [])), tag = "inventory")]
pub async fn adjust_stock(
    State(service): State<Arc<InventoryService>>,
    context: RequestContext,
    _admin: Admin,
    Path(product_id): Path<String>,
    Body(request): Body<AdjustStock>,
) -> Result<axum::Json<StockView>, ApiError> {
    let command = Command::AdjustStock {
        product_id: check_product_id(&product_id)?,
        warehouse: check_warehouse(request.warehouse.as_deref())?,
        delta: request.delta,
        reason: check_text("reason", &request.reason, 200, true)?,
    };
    service.submit(command, &context).await
}

/// An order's reservation: what it holds, from which warehouses, until when (admin).
#[utoipa::path(get, path = "/api/inventory/reservations/{order_id}",
    responses((status = 200, body = Reservation), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "inventory")]
pub async fn get_reservation(
    State(service): State<Arc<InventoryService>>,
    _admin: Admin,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Reservation>, ApiError> {
    let order_id = check_order_id(&order_id)?;
    match RESERVATIONS.get(service.engine.store().as_ref(), &order_id)? {
        Some(reservation) => Ok(axum::Json(reservation)),
        None => Err(Rejection::not_found("reservation").into()),
    }
}

/// Products whose available total is below their threshold (admin).
#[utoipa::path(get, path = "/api/inventory/low-stock",
    responses((status = 200, body = [StockView]), (status = 403)),
    security(("bearer" = [])), tag = "inventory")]
pub async fn low_stock(
    State(service): State<Arc<InventoryService>>,
    _admin: Admin,
) -> Result<axum::Json<Vec<StockView>>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    Ok(axum::Json(
        STOCK
            .scan(store)?
            .iter()
            .filter(|stock| stock.is_low())
            .map(StockView::from)
            .collect(),
    ))
}

impl InventoryService {
    /// Submits an admin command, answering with the product's stock after it.
    async fn submit(
        &self,
        command: Command,
        context: &RequestContext,
    ) -> Result<axum::Json<StockView>, ApiError> {
        let stock = answer(self.engine.submit(command, context.command()).await)?;
        let stock = stock.ok_or_else(|| {
            ApiError::Store(StoreError::Task("the command answered no stock".into()))
        })?;
        Ok(axum::Json(StockView::from(&stock)))
    }
}

/// Inventory's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(set_stock, get_stock, adjust_stock, get_reservation, low_stock),
    tags((name = "inventory"))
)]
pub struct InventoryApi;
