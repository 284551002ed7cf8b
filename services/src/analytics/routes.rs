//! Analytics' HTTP routes (admin), mounted by the gateway under `/api/analytics`.

use super::AnalyticsService;
use super::apply::{MINUTES, PRODUCTS, TOTALS, TOTALS_ID, minute_key};
use super::model::{MINUTE_MS, ProductSales, conversion_rate, minute_of, rank};
use crate::platform::Money;
use crate::platform::http::{Admin, ApiError};
use crate::platform::time::{now_ms, rfc3339};
use crate::platform::{ReadTx, Rejection, StoreError};
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_TOP: usize = 10;
const MAX_TOP: usize = 100;
const DEFAULT_MINUTES: i64 = 60;
const MAX_MINUTES: i64 = 1440;

pub fn router(service: Arc<AnalyticsService>) -> Router {
    Router::new()
        .route("/summary", get(summary))
        .route("/series", get(series))
        .route("/top-products", get(top_products))
        .with_state(service)
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub orders_created: u64,
    pub orders_confirmed: u64,
    pub orders_cancelled: u64,
    pub orders_completed: u64,
    /// Confirmed order totals minus their refunds (a refund of an order cancelled before
    /// it was confirmed is in `refunds` only).
    pub revenue: Money,
    pub refunds: Money,
    /// orders_confirmed / orders_created (0 before any order).
    pub conversion_rate: f64,
    pub registered_users: u64,
    pub products_created: u64,
    pub payments_processed: u64,
    pub payments_failed: u64,
    pub shipments_created: u64,
    pub shipments_delivered: u64,
    pub low_stock_alerts: u64,
    /// The ten best sellers.
    pub top_products: Vec<ProductSales>,
}

#[derive(Serialize, ToSchema)]
pub struct Minute {
    /// The minute's start, RFC 3339.
    pub minute: String,
    pub orders_created: u64,
    pub orders_confirmed: u64,
    pub orders_cancelled: u64,
    pub revenue: Money,
}

#[derive(Serialize, ToSchema)]
pub struct Series {
    pub minutes: i64,
    /// Oldest first, one per minute up to the current one (empty minutes included).
    pub buckets: Vec<Minute>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// How many minutes back, 1 to 1440 (default 60).
    pub minutes: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// 1 to 100 (default 10).
    pub limit: Option<usize>,
}

fn usd(amount: i64) -> Money {
    Money {
        amount,
        currency: "USD".to_string(),
    }
}

/// Totals over every order, payment, user and alert seen (admin).
#[utoipa::path(get, path = "/api/analytics/summary",
    responses((status = 200, body = Summary), (status = 401), (status = 403)),
    security(("bearer" = [])), tag = "analytics")]
pub async fn summary(
    State(service): State<Arc<AnalyticsService>>,
    _admin: Admin,
) -> Result<axum::Json<Summary>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let totals = TOTALS.get(store, TOTALS_ID)?.unwrap_or_default();
    Ok(axum::Json(Summary {
        orders_created: totals.orders_created,
        orders_confirmed: totals.orders_confirmed,
        orders_cancelled: totals.orders_cancelled,
        orders_completed: totals.orders_completed,
        revenue: usd(totals
            .confirmed_amount
            .saturating_sub(totals.refunded_confirmed_amount)),
        refunds: usd(totals.refunded_amount),
        conversion_rate: conversion_rate(&totals),
        registered_users: totals.registered_users,
        products_created: totals.products_created,
        payments_processed: totals.payments_processed,
        payments_failed: totals.payments_failed,
        shipments_created: totals.shipments_created,
        shipments_delivered: totals.shipments_delivered,
        low_stock_alerts: totals.low_stock_alerts,
        top_products: top(store, DEFAULT_TOP)?,
    }))
}

/// Orders and revenue per minute, by the events' time (admin).
#[utoipa::path(get, path = "/api/analytics/series", params(SeriesQuery),
    responses((status = 200, body = Series), (status = 400), (status = 403)),
    security(("bearer" = [])), tag = "analytics")]
pub async fn series(
    State(service): State<Arc<AnalyticsService>>,
    _admin: Admin,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Series>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| Rejection::invalid("query", rejection.body_text()))?;
    let minutes = query.minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(Rejection::invalid("minutes", format!("minutes is 1 to {MAX_MINUTES}")).into());
    }
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let current = minute_of(now_ms());
    let mut buckets = Vec::new();
    for back in (0..minutes).rev() {
        let minute_ms = current - back * MINUTE_MS;
        let bucket = MINUTES
            .get(store, &minute_key(minute_ms))?
            .unwrap_or_default();
        buckets.push(Minute {
            minute: rfc3339(minute_ms),
            orders_created: bucket.orders_created,
            orders_confirmed: bucket.orders_confirmed,
            orders_cancelled: bucket.orders_cancelled,
            revenue: usd(bucket.revenue),
        });
    }
    Ok(axum::Json(Series { minutes, buckets }))
}

/// Best-selling products by quantity, then revenue (admin).
#[utoipa::path(get, path = "/api/analytics/top-products", params(TopQuery),
    responses((status = 200, body = [ProductSales]), (status = 400), (status = 403)),
    security(("bearer" = [])), tag = "analytics")]
pub async fn top_products(
    State(service): State<Arc<AnalyticsService>>,
    _admin: Admin,
    query: Result<Query<TopQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<ProductSales>>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| Rejection::invalid("query", rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_TOP);
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(Rejection::invalid("limit", format!("limit is 1 to {MAX_TOP}")).into());
    }
    Ok(axum::Json(top(service.engine.store().as_ref(), limit)?))
}

fn top(store: &dyn ReadTx, limit: usize) -> Result<Vec<ProductSales>, StoreError> {
    let mut products = PRODUCTS.scan(store)?;
    rank(&mut products);
    products.truncate(limit);
    Ok(products)
}

/// Analytics' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(summary, series, top_products), tags((name = "analytics")))]
pub struct AnalyticsApi;
