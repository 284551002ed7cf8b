//! HTTP pieces every service's routes share: the error body, the caller the gateway
//! authenticated, the request context, and a JSON extractor whose failures answer in the
//! API's error shape.
//!
//! The gateway validates the bearer token and puts a [`Principal`] in the request's
//! extensions; a route states who may call it by taking [`Caller`] (any signed-in user: 401
//! without one) or [`Admin`] (403 for a signed-in non-admin). So the role a route needs is
//! written next to the route, and the check happens on data only the gateway produces.

use super::engine::CommandContext;
use super::error::{Rejection, RejectionKind, StoreError};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller (from a valid access token).
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub session_id: Option<String>,
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// Correlation and trace ids of the request, set by the gateway.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub correlation_id: String,
    pub traceparent: Option<String>,
}

impl RequestContext {
    pub fn command(&self) -> CommandContext {
        CommandContext {
            correlation_id: self.correlation_id.clone(),
            causation_id: None,
            traceparent: self.traceparent.clone(),
            consumed_event: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext {
                correlation_id: uuid::Uuid::new_v4().to_string(),
                traceparent: None,
            }))
    }
}

/// Any signed-in user.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                ApiError::Rejected(Rejection::unauthenticated(
                    "unauthenticated",
                    "a bearer access token is required",
                ))
            })
    }
}

/// A signed-in admin.
pub struct Admin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        if !principal.is_admin() {
            return Err(ApiError::Rejected(Rejection::forbidden(
                "this route needs the admin role",
            )));
        }
        Ok(Admin(principal))
    }
}

/// `axum::Json`, but a body that is not the expected JSON answers 400 `invalid_body` in the
/// API's shape and words ([`super::json_body`]).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Body(super::json_body::read(request).await?))
    }
}

/// What a route answers when it does not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something the route needs is not there yet (e.g. no signing key installed): 503, try
    /// again later; nothing changed.
    #[error("{code}: {message}")]
    Unavailable { code: &'static str, message: String },
    /// Refused for now, on purpose (an account locked after failed sign-ins): 429 with
    /// `Retry-After`; nothing changed.
    #[error("{code}: {message}")]
    Throttled {
        code: &'static str,
        message: String,
        retry_after_secs: i64,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Rejected(rejection) => {
                let status = match rejection.kind {
                    RejectionKind::Invalid => StatusCode::BAD_REQUEST,
                    RejectionKind::Unauthenticated => StatusCode::UNAUTHORIZED,
                    RejectionKind::Forbidden => StatusCode::FORBIDDEN,
                    RejectionKind::NotFound => StatusCode::NOT_FOUND,
                    RejectionKind::Conflict => StatusCode::CONFLICT,
                    RejectionKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                };
                error_response(
                    status,
                    &rejection.code,
                    &rejection.message,
                    rejection.field.as_deref(),
                )
            }
            ApiError::Store(StoreError::Unavailable(message)) => {
                tracing::warn!(%message, "service command log unavailable");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service cannot reach a majority of its replicas; retry shortly",
                    None,
                )
            }
            ApiError::Store(error) => {
                tracing::error!(%error, "service store failure");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the service cannot reach its store",
                    None,
                )
            }
            ApiError::Unavailable { code, message } => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, code, &message, None)
            }
            ApiError::Throttled {
                code,
                message,
                retry_after_secs,
            } => {
                let mut response =
                    error_response(StatusCode::TOO_MANY_REQUESTS, code, &message, None);
                if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string())
                {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
                response
            }
        }
    }
}

/// `{"error": {"code", "message", "field"?}}` with `status`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> Response {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let (Some(field), Some(object)) = (field, error.as_object_mut()) {
        object.insert(
            "field".to_string(),
            serde_json::Value::String(field.to_string()),
        );
    }
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// How long a request waits for its node's replica to catch up with the group's leader.
const READ_BARRIER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Middleware: before a service's route runs, this node's replica catches up with what the
/// service group's leader had committed ([`super::Engine::read_barrier`]), so the route
/// answers as the leader would, on any node.
pub async fn read_barrier<M: super::StateMachine>(
    axum::extract::State(engine): axum::extract::State<std::sync::Arc<super::Engine<M>>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    after_barrier(engine.read_barrier(), request, next).await
}

/// Runs the route once `barrier` (a read barrier) passed within its time limit; a 503 in
/// the API's error body otherwise. For middlewares over any engine handle.
pub async fn after_barrier(
    barrier: impl std::future::Future<Output = Result<(), StoreError>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(READ_BARRIER_TIMEOUT, barrier).await {
        Ok(Ok(())) => next.run(request).await,
        Ok(Err(error)) => ApiError::Store(error).into_response(),
        Err(_) => ApiError::Store(StoreError::Unavailable(
            "the service's replica did not catch up in time".to_string(),
        ))
        .into_response(),
    }
}

/// Flattens the engine's two-level answer.
pub fn answer<T>(result: Result<Result<T, Rejection>, StoreError>) -> Result<T, ApiError> {
    Ok(result??)
}

/// Most items a list route answers per page, and its default page size.
pub const MAX_PAGE_SIZE: usize = 100;
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// A checked `?page=&page_size=` (1-based pages, 1 to [`MAX_PAGE_SIZE`] items each).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: usize,
    pub page_size: usize,
}

impl Paging {
    pub fn parse(page: Option<usize>, page_size: Option<usize>) -> Result<Paging, Rejection> {
        let page = page.unwrap_or(1);
        if page == 0 {
            return Err(Rejection::invalid("page", "pages start at 1"));
        }
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(Rejection::invalid(
                "page_size",
                format!("page_size is 1 to {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Paging { page, page_size })
    }

    /// This page's share of `items`.
    pub fn slice<T>(&self, items: impl IntoIterator<Item = T>) -> impl Iterator<Item = T> {
        items
            .into_iter()
            .skip((self.page - 1).saturating_mul(self.page_size))
            .take(self.page_size)
    }
}
