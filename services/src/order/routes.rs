//! Order's HTTP routes, mounted by the gateway under `/api/orders`.

use super::apply::{BY_CUSTOMER, ORDERS};
use super::commands::{Command, NewOrder};
use super::model::{Address, Money, Order, OrderLine, OrderStatus, ShippingMethod, Step};
use super::placement::{self, PLACEMENTS, Placement};
use super::validate::{self, AddressInput, MAX_QUANTITY};
use super::{OrderService, TokenizeError};
use crate::platform::error::RejectionKind;
use crate::platform::http::{ApiError, Body, Caller, Paging, Principal, RequestContext, answer};
use crate::platform::time::rfc3339;
use crate::platform::{Rejection, StoreError};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

const MAX_LINES: usize = 100;

pub fn router(service: Arc<OrderService>) -> Router {
    Router::new()
        .route("/", get(list_orders).post(place_order))
        .route("/{id}", get(get_order))
        .route("/{id}/cancel", post(cancel_order))
        .with_state(service)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub items: Vec<ItemInput>,
    pub shipping_address: AddressInput,
    pub payment: PaymentInput,
    /// `standard` (default) or `express`.
    pub shipping_method: Option<ShippingMethod>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    pub product_id: String,
    /// 1 to 1000. Lines for the same product are merged (the sum must stay within 1000).
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInput {
    pub card_number: String,
}

#[derive(Serialize, ToSchema)]
pub struct Placed {
    pub id: String,
    pub status: OrderStatus,
}

/// An order as its owner (or an admin) sees it.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderLine>,
    pub total: Money,
    pub customer_id: String,
    pub shipping_address: Address,
    pub shipping_method: ShippingMethod,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// The saga timeline: every command sent, every reply and timeout, with its time.
    pub steps: Vec<Step>,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> OrderView {
        OrderView {
            id: order.id,
            status: order.saga.status(),
            items: order.lines,
            total: order.total,
            customer_id: order.customer_id,
            shipping_address: order.shipping_address,
            shipping_method: order.shipping_method,
            created_at: rfc3339(order.created_at_ms),
            cancel_reason: order.saga.cancel_reason().map(str::to_string),
            tracking_number: order.saga.tracking_number,
            steps: order.saga.steps,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Admins only: every customer's orders.
    pub all: Option<bool>,
    /// 1-based.
    pub page: Option<usize>,
    pub page_size: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    pub page: usize,
    pub page_size: usize,
    pub total: usize,
}

/// Place an order: priced from the catalog now, then driven by the saga. The card number is
/// exchanged for the payment provider's token before anything is recorded. With an
/// `Idempotency-Key`, every retry of the request answers the one order it placed (also
/// after a crash); the key with another request answers 422.
#[utoipa::path(post, path = "/api/orders", request_body = PlaceOrder,
    responses((status = 202, body = Placed), (status = 400), (status = 401), (status = 404),
        (status = 422), (status = 503)),
    security(("bearer" = [])), tag = "orders")]
pub async fn place_order(
    State(service): State<Arc<OrderService>>,
    context: RequestContext,
    Caller(caller): Caller,
    headers: HeaderMap,
    Body(request): Body<PlaceOrder>,
) -> Result<(StatusCode, axum::Json<Placed>), ApiError> {
    let quantities = merged_quantities(&request.items)?;
    let shipping_address = validate::address(&request.shipping_address)?;
    let card = validate::card_number(&request.payment.card_number)?;
    let shipping_method = request.shipping_method.unwrap_or(ShippingMethod::Standard);
    let placement = match placement::key_from(&headers)? {
        Some(key) => {
            let card_fingerprint = service.cards.fingerprint(&card).map_err(unavailable)?;
            let request_fingerprint = placement::request_fingerprint(
                &quantities,
                &shipping_address,
                shipping_method,
                &card_fingerprint,
            );
            let placement = Placement {
                key,
                request_fingerprint,
            };
            // A retry of a request placed before: its order, without tokenizing again.
            if let Some(order) = placed_before(&service, &caller.user_id, &placement)? {
                return Ok(accepted(order));
            }
            Some(placement)
        }
        None => None,
    };
    let lines = price(&service, &quantities).await?;
    let total = total(&lines)?;
    let tokenized = service.cards.tokenize(&card).await.map_err(unavailable)?;
    drop(card);
    let id = match &placement {
        Some(placement) => placement::order_id(&caller.user_id, &placement.key),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let new = NewOrder {
        id,
        customer_id: caller.user_id,
        lines,
        total,
        shipping_address,
        shipping_method,
        payment: tokenized.payment,
        placement,
        step_timeout_ms: service.step_timeout_ms,
    };
    let order = submit(&service, Command::Place(Box::new(new)), &context).await?;
    Ok(accepted(order))
}

fn accepted(order: Order) -> (StatusCode, axum::Json<Placed>) {
    let placed = Placed {
        id: order.id,
        status: order.saga.status(),
    };
    (StatusCode::ACCEPTED, axum::Json(placed))
}

/// The order this customer's key placed, if the key was used before with this very request;
/// the 422 rejection if it was used with another.
fn placed_before(
    service: &OrderService,
    customer_id: &str,
    placement: &Placement,
) -> Result<Option<Order>, ApiError> {
    let store = service.engine.store().as_ref();
    let index = placement::placement_key(customer_id, &placement.key);
    let Some(placed) = PLACEMENTS.get(store, &index)? else {
        return Ok(None);
    };
    let order_id = placement::same_request(&placed, placement)?;
    Ok(ORDERS.get(store, &order_id)?)
}

fn unavailable(error: TokenizeError) -> ApiError {
    ApiError::Unavailable {
        code: "tokenization_unavailable",
        message: error.to_string(),
    }
}

/// One order with its saga timeline (its owner or an admin; 404 for anyone else).
#[utoipa::path(get, path = "/api/orders/{id}",
    responses((status = 200, body = OrderView), (status = 401), (status = 404)),
    security(("bearer" = [])), tag = "orders")]
pub async fn get_order(
    State(service): State<Arc<OrderService>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    Ok(axum::Json(visible_order(&service, &caller, &id)?.into()))
}

/// The caller's orders, newest first (`?all=true`: everyone's, admins only).
#[utoipa::path(get, path = "/api/orders", params(ListQuery),
    responses((status = 200, body = OrderPage), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])), tag = "orders")]
pub async fn list_orders(
    State(service): State<Arc<OrderService>>,
    Caller(caller): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| Rejection::invalid("query", rejection.body_text()))?;
    let paging = Paging::parse(query.page, query.page_size)?;
    let store = service.engine.store().as_ref();
    let mut orders = if query.all.unwrap_or(false) {
        if !caller.is_admin() {
            return Err(Rejection::forbidden("all=true needs the admin role").into());
        }
        ORDERS.scan(store)?
    } else {
        let mut orders = Vec::new();
        for id in BY_CUSTOMER.scan_prefix(store, &format!("{}/", caller.user_id))? {
            if let Some(order) = ORDERS.get(store, &id)? {
                orders.push(order);
            }
        }
        orders
    };
    orders.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    let total = orders.len();
    let items = paging.slice(orders).map(OrderView::from).collect();
    Ok(axum::Json(OrderPage {
        items,
        page: paging.page,
        page_size: paging.page_size,
        total,
    }))
}

/// Cancel an order before its shipment is dispatched (its owner or an admin); undoes what the
/// saga did so far.
#[utoipa::path(post, path = "/api/orders/{id}/cancel",
    responses((status = 200, body = OrderView), (status = 401), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "orders")]
pub async fn cancel_order(
    State(service): State<Arc<OrderService>>,
    context: RequestContext,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    visible_order(&service, &caller, &id)?;
    let order = submit(&service, Command::Cancel { order_id: id }, &context).await?;
    Ok(axum::Json(order.into()))
}

/// The order if the caller may see it; "not found" otherwise, so ids of other customers'
/// orders reveal nothing.
fn visible_order(service: &OrderService, caller: &Principal, id: &str) -> Result<Order, ApiError> {
    match ORDERS.get(service.engine.store().as_ref(), id)? {
        Some(order) if order.customer_id == caller.user_id || caller.is_admin() => Ok(order),
        _ => Err(Rejection::not_found("order").into()),
    }
}

/// Quantities per product, in first-seen order, duplicate lines merged.
fn merged_quantities(items: &[ItemInput]) -> Result<Vec<(String, u32)>, Rejection> {
    if items.is_empty() {
        return Err(Rejection::invalid(
            "items",
            "an order has at least one item",
        ));
    }
    if items.len() > MAX_LINES {
        return Err(Rejection::invalid(
            "items",
            format!("an order has at most {MAX_LINES} lines"),
        ));
    }
    let mut merged: Vec<(String, u32)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let field = format!("items[{index}].quantity");
        let quantity = u32::try_from(item.quantity)
            .ok()
            .filter(|quantity| (1..=MAX_QUANTITY).contains(quantity))
            .ok_or_else(|| {
                Rejection::invalid(&field, format!("a quantity is 1 to {MAX_QUANTITY}"))
            })?;
        let product_id = item.product_id.trim();
        if product_id.is_empty() || product_id.len() > 128 {
            return Err(Rejection::invalid(
                &format!("items[{index}].product_id"),
                "a product id has 1 to 128 bytes",
            ));
        }
        match merged.iter_mut().find(|(id, _)| id == product_id) {
            Some((_, total)) => {
                *total += quantity;
                if *total > MAX_QUANTITY {
                    return Err(Rejection::invalid(
                        &field,
                        format!("at most {MAX_QUANTITY} of one product per order"),
                    ));
                }
            }
            None => merged.push((product_id.to_string(), quantity)),
        }
    }
    Ok(merged)
}

/// Prices every line from the catalog as it is now.
async fn price(
    service: &OrderService,
    quantities: &[(String, u32)],
) -> Result<Vec<OrderLine>, ApiError> {
    let catalog_error =
        |error: super::CatalogError| ApiError::Store(StoreError::Task(error.to_string()));
    let mut lines = Vec::with_capacity(quantities.len());
    let mut caught_up = false;
    for (index, (product_id, quantity)) in quantities.iter().enumerate() {
        let mut product = service.catalog.product(product_id).map_err(catalog_error)?;
        if product.is_none() && !caught_up {
            service.catalog.catch_up().await.map_err(catalog_error)?;
            caught_up = true;
            product = service.catalog.product(product_id).map_err(catalog_error)?;
        }
        let product = product.ok_or_else(|| Rejection {
            kind: RejectionKind::NotFound,
            code: "unknown_product".to_string(),
            message: format!("no product {product_id} in the catalog"),
            field: Some(format!("items[{index}].product_id")),
        })?;
        let line_total = product
            .price
            .amount
            .checked_mul(i64::from(*quantity))
            .ok_or_else(|| Rejection::invalid("items", "the order total is too large"))?;
        lines.push(OrderLine {
            product_id: product.id,
            sku: product.sku,
            name: product.name,
            quantity: *quantity,
            line_total: Money {
                amount: line_total,
                currency: product.price.currency.clone(),
            },
            unit_price: product.price,
            weight_grams: product.weight_grams,
        });
    }
    Ok(lines)
}

/// The sum of the lines, all in one currency.
fn total(lines: &[OrderLine]) -> Result<Money, Rejection> {
    let mut total: Option<Money> = None;
    for line in lines {
        total = Some(match total {
            None => line.line_total.clone(),
            Some(sum) if sum.currency != line.line_total.currency => {
                return Err(Rejection::invalid(
                    "items",
                    "every item of an order must be priced in the same currency",
                ));
            }
            Some(sum) => Money {
                amount: sum
                    .amount
                    .checked_add(line.line_total.amount)
                    .ok_or_else(|| Rejection::invalid("items", "the order total is too large"))?,
                currency: sum.currency,
            },
        });
    }
    total.ok_or_else(|| Rejection::invalid("items", "an order has at least one item"))
}

async fn submit(
    service: &OrderService,
    command: Command,
    context: &RequestContext,
) -> Result<Order, ApiError> {
    answer(service.engine.submit(command, context.command()).await)?
        .ok_or_else(|| ApiError::Store(StoreError::Task("the command answered no order".into())))
}

/// Order's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(place_order, get_order, list_orders, cancel_order),
    tags((name = "orders"))
)]
pub struct OrderApi;
