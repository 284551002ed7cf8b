//! Payment's HTTP routes, mounted by the gateway under `/api/payments`.

use super::PaymentService;
use super::apply::{BY_ORDER, PAYMENTS};
use super::card_vault::CardToken;
use super::commands::Command;
use super::model::{DeclineReason, Payment, PaymentStatus};
use super::provider::{LedgerCharge, TestProvider};
use crate::platform::Money;
use crate::platform::card::{CardBrand, CardNumber};
use crate::platform::error::RejectionKind;
use crate::platform::http::{Admin, ApiError, Body, Caller, Principal, RequestContext, answer};
use crate::platform::{ReadTx, Rejection};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

pub fn router(service: Arc<PaymentService>) -> Router {
    Router::new()
        .route("/orders/{order_id}", get(payment_of_order))
        .route("/provider/charges", get(provider_charges))
        .route("/tokens", post(tokenize_card))
        .route("/{payment_id}", get(get_payment))
        .route("/{payment_id}/refund", post(refund_payment))
        .with_state(service)
}

#[derive(Serialize, ToSchema)]
pub struct RefundView {
    pub refund_id: String,
    pub amount: Money,
    pub reason: String,
    /// `pending`, `refunded` or `refused: <why>`.
    pub status: String,
    pub requested_at: String,
    pub completed_at: Option<String>,
}

/// A payment as its owner and admins see it: never the card number.
#[derive(Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub status: PaymentStatus,
    pub amount: Money,
    pub card_last4: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<DeclineReason>,
    pub refunds: Vec<RefundView>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Payment> for PaymentView {
    fn from(payment: Payment) -> PaymentView {
        use crate::platform::time::rfc3339;
        PaymentView {
            refunds: payment
                .refunds
                .into_iter()
                .map(|refund| RefundView {
                    refund_id: refund.refund_id,
                    amount: refund.amount,
                    reason: refund.reason,
                    status: refund.status,
                    requested_at: rfc3339(refund.requested_at_ms),
                    completed_at: refund.completed_at_ms.map(rfc3339),
                })
                .collect(),
            payment_id: payment.payment_id,
            order_id: payment.order_id,
            customer_id: payment.customer_id,
            status: payment.status,
            amount: payment.amount,
            card_last4: payment.card_last4,
            failure_reason: payment.failure_reason,
            created_at: rfc3339(payment.created_at_ms),
            updated_at: rfc3339(payment.updated_at_ms),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChargesQuery {
    pub order_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChargeList {
    pub items: Vec<LedgerCharge>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeCard {
    /// 12 to 19 digits (spaces allowed between groups) passing the Luhn check.
    pub card_number: String,
}

/// A tokenized card: what may be stored and sent instead of the number.
#[derive(Serialize, ToSchema)]
pub struct CardTokenView {
    /// `tok_…`, to pass as `payment: {token}` when placing an order.
    pub token: String,
    pub brand: CardBrand,
    pub card_last4: String,
}

/// Exchange a card number for the test provider's token (what a PSP's tokenization
/// endpoint is, Stripe's `POST /v1/tokens`): the number is kept nowhere, the vault keeps the
/// brand, the last four digits and a keyed fingerprint. Any signed-in user.
#[utoipa::path(post, path = "/api/payments/tokens", request_body = TokenizeCard,
    responses((status = 201, body = CardTokenView), (status = 400), (status = 401), (status = 503)),
    security(("bearer" = [])), tag = "payments")]
pub async fn tokenize_card(
    State(service): State<Arc<PaymentService>>,
    Caller(_caller): Caller,
    Body(request): Body<TokenizeCard>,
) -> Result<(StatusCode, axum::Json<CardTokenView>), ApiError> {
    let card = parse_card(&request.card_number, "card_number")?;
    let token = tokenize(&service.provider, &card).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CardTokenView {
            token: token.token,
            brand: token.brand,
            card_last4: token.card_last4,
        }),
    ))
}

/// A card number from a request, or the API's `invalid_card` answer for `field`.
pub fn parse_card(text: &str, field: &str) -> Result<CardNumber, Rejection> {
    CardNumber::parse(text).map_err(|error| Rejection {
        kind: RejectionKind::Invalid,
        code: "invalid_card".to_string(),
        message: error.to_string(),
        field: Some(field.to_string()),
    })
}

/// Tokenizes through `provider`, its failures as the API answers them (503: retry).
pub async fn tokenize(provider: &TestProvider, card: &CardNumber) -> Result<CardToken, ApiError> {
    provider
        .tokenize(card)
        .await
        .map_err(|error| ApiError::Unavailable {
            code: "tokenization_unavailable",
            message: error.to_string(),
        })
}

/// The payment of an order (its customer or an admin).
#[utoipa::path(get, path = "/api/payments/orders/{order_id}",
    responses((status = 200, body = PaymentView), (status = 401), (status = 404)),
    security(("bearer" = [])), tag = "payments")]
pub async fn payment_of_order(
    State(service): State<Arc<PaymentService>>,
    Caller(caller): Caller,
    Path(order_id): Path<String>,
) -> Result<axum::Json<PaymentView>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let Some(payment_id) = BY_ORDER.get(store, &order_id)? else {
        return Err(Rejection::not_found("payment").into());
    };
    visible(&caller, PAYMENTS.get(store, &payment_id)?)
}

/// One payment (its customer or an admin).
#[utoipa::path(get, path = "/api/payments/{payment_id}",
    responses((status = 200, body = PaymentView), (status = 401), (status = 404)),
    security(("bearer" = [])), tag = "payments")]
pub async fn get_payment(
    State(service): State<Arc<PaymentService>>,
    Caller(caller): Caller,
    Path(payment_id): Path<String>,
) -> Result<axum::Json<PaymentView>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    visible(&caller, PAYMENTS.get(store, &payment_id)?)
}

/// Refund a captured payment in full (admin). Idempotent: a payment is refunded once, a
/// second call refunds nothing and answers the payment as it is.
#[utoipa::path(post, path = "/api/payments/{payment_id}/refund",
    responses((status = 200, body = PaymentView), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "payments")]
pub async fn refund_payment(
    State(service): State<Arc<PaymentService>>,
    context: RequestContext,
    _admin: Admin,
    Path(payment_id): Path<String>,
) -> Result<axum::Json<PaymentView>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let Some(payment) = PAYMENTS.get(store, &payment_id)? else {
        return Err(Rejection::not_found("payment").into());
    };
    if matches!(
        payment.status,
        PaymentStatus::Failed | PaymentStatus::Pending
    ) {
        return Err(Rejection::conflict(
            "not_refundable",
            None,
            "only a captured payment can be refunded",
        )
        .into());
    }
    let command = Command::Refund {
        order_id: payment.order_id.clone(),
        // One admin refund per payment: the id is the payment's, so it names the same refund
        // however often it is asked for.
        refund_id: crate::platform::envelope::derived_id(&["admin-refund", &payment_id]),
        reason: "admin_refund".to_string(),
    };
    let after = answer(service.engine.submit(command, context.command()).await)?;
    service.wake.notify_one();
    Ok(axum::Json(after.unwrap_or(payment).into()))
}

/// The test provider's ledger for an order: one entry per real charge (admin). This is how a
/// test proves a payment was charged once.
#[utoipa::path(get, path = "/api/payments/provider/charges", params(ChargesQuery),
    responses((status = 200, body = ChargeList), (status = 400), (status = 403)),
    security(("bearer" = [])), tag = "payments")]
pub async fn provider_charges(
    State(service): State<Arc<PaymentService>>,
    _admin: Admin,
    query: Result<Query<ChargesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<ChargeList>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| Rejection::invalid("order_id", rejection.body_text()))?;
    let items = service
        .provider
        .charges_for(&query.order_id)
        .map_err(|error| ApiError::Store(crate::platform::StoreError::Task(error.to_string())))?;
    Ok(axum::Json(ChargeList { items }))
}

/// The payment if the caller may see it: its customer or an admin.
fn visible(
    caller: &Principal,
    payment: Option<Payment>,
) -> Result<axum::Json<PaymentView>, ApiError> {
    let Some(payment) = payment else {
        return Err(Rejection::not_found("payment").into());
    };
    // Another customer's payment is answered as one that does not exist, as orders are:
    // a 403 would confirm the id is real.
    if payment.customer_id != caller.user_id && !caller.is_admin() {
        return Err(Rejection::not_found("payment").into());
    }
    Ok(axum::Json(payment.into()))
}

/// Payment's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(payment_of_order, get_payment, refund_payment, provider_charges, tokenize_card),
    tags((name = "payments"))
)]
pub struct PaymentApi;
