//! `Idempotency-Key` on mutating requests: the first answer to a (client, method, path, key)
//! is stored with a hash of the request body; a retry with the same body gets the stored
//! answer without reaching the service again; the same key with a different body is a client
//! bug and gets 422; a retry while the first is still running gets 409. Server errors (5xx)
//! are not stored, so a retry after one runs again.
//!
//! The store is in memory and bounded (oldest keys forgotten first): a node restart forgets
//! keys. Keeping them in a service store would make replays survive restarts and failover.

use crate::error::error_response;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use commerce_services::platform::http::Principal;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Keys remembered at most.
const CAPACITY: usize = 10_000;
/// Largest answer body stored for replay.
const MAX_STORED_BODY: usize = 1024 * 1024;

#[derive(Clone)]
enum Entry {
    InFlight {
        body_hash: u64,
    },
    Done {
        body_hash: u64,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

#[derive(Clone, Default)]
pub struct IdempotencyStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
}

impl IdempotencyStore {
    pub fn new() -> IdempotencyStore {
        IdempotencyStore::default()
    }
}

pub async fn layer(
    State(store): State<IdempotencyStore>,
    request: Request,
    next: Next,
) -> Response {
    let mutating = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let key = request
        .headers()
        .get(IDEMPOTENCY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let Some(key) = key.filter(|_| mutating) else {
        return next.run(request).await;
    };
    if key.is_empty() || key.len() > 255 {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "an Idempotency-Key has 1 to 255 characters",
            None,
        );
    }
    let client = match request.extensions().get::<Principal>() {
        Some(principal) => format!("user:{}", principal.user_id),
        None => match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
            None => "ip:unknown".to_string(),
        },
    };
    let scope = format!(
        "{client} {} {} {key}",
        request.method(),
        request.uri().path()
    );

    // The body is needed whole to compare it with the first request's; the body limit layer
    // outside bounds it.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_rejected",
                &error.to_string(),
                None,
            );
        }
    };
    let body_hash = hash(&body);

    {
        let Ok(mut inner) = store.inner.lock() else {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "idempotency store unavailable",
                None,
            );
        };
        match inner.entries.get(&scope) {
            Some(
                Entry::InFlight { body_hash: first }
                | Entry::Done {
                    body_hash: first, ..
                },
            ) if *first != body_hash => {
                return error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body",
                    None,
                );
            }
            Some(Entry::InFlight { .. }) => {
                return error_response(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_flight",
                    "a request with this Idempotency-Key is still being processed",
                    None,
                );
            }
            Some(Entry::Done {
                status,
                headers,
                body,
                ..
            }) => {
                let mut response = (*status, body.clone()).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.clone());
                }
                response.headers_mut().insert(
                    "idempotent-replayed",
                    axum::http::HeaderValue::from_static("true"),
                );
                return response;
            }
            None => {
                inner
                    .entries
                    .insert(scope.clone(), Entry::InFlight { body_hash });
                inner.order.push_back(scope.clone());
                while inner.order.len() > CAPACITY {
                    if let Some(oldest) = inner.order.pop_front() {
                        inner.entries.remove(&oldest);
                    }
                }
            }
        }
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_STORED_BODY).await;
    let Ok(mut inner) = store.inner.lock() else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "idempotency store unavailable",
            None,
        );
    };
    match body {
        Ok(body) if !parts.status.is_server_error() => {
            let mut headers = HeaderMap::new();
            if let Some(value) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
                headers.insert(axum::http::header::CONTENT_TYPE, value.clone());
            }
            inner.entries.insert(
                scope,
                Entry::Done {
                    body_hash,
                    status: parts.status,
                    headers,
                    body: body.clone(),
                },
            );
            Response::from_parts(parts, Body::from(body))
        }
        Ok(body) => {
            inner.entries.remove(&scope);
            Response::from_parts(parts, Body::from(body))
        }
        Err(_) => {
            inner.entries.remove(&scope);
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the answer was too large to keep for replay",
                None,
            )
        }
    }
}

/// FNV-1a: a stable hash of the body (a collision would only matter between two bodies sent
/// with the same key by the same client).
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
