//! `Idempotency-Key` on mutating requests: the first answer to a (client, method, path, key)
//! is stored with a hash of the request body; a retry with the same body gets the stored
//! answer without reaching the service again; the same key with a different body is a client
//! bug and gets 422; a retry while the first is still running gets 409. Server errors (5xx)
//! are not stored, so a retry after one runs again.
//!
//! Answers are kept for a day. With a directory they are kept in a fjall database there, so a
//! retry after a node restart (or crash) still gets the first answer; without one (tests of
//! the gateway alone) in a bounded map in memory. Requests in flight are only in memory: a
//! crash mid-request leaves the key unused, and the retry runs.

use crate::error::error_response;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use commerce_services::platform::http::Principal;
use commerce_services::platform::time::now_ms;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Keys remembered at most in memory.
const MEMORY_CAPACITY: usize = 10_000;
/// Largest answer body stored for replay.
const MAX_STORED_BODY: usize = 1024 * 1024;
/// How long an answer is replayed.
const RETENTION_MS: i64 = 24 * 3600 * 1000;

/// A stored answer.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Answer {
    body_hash: u64,
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
    at_ms: i64,
}

#[derive(Clone)]
pub struct IdempotencyStore {
    in_flight: Arc<Mutex<HashMap<String, u64>>>,
    answers: Arc<Answers>,
}

enum Answers {
    Memory(Mutex<(HashMap<String, Answer>, VecDeque<String>)>),
    Disk {
        _db: fjall::Database,
        keys: fjall::Keyspace,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct IdempotencyError(String);

impl IdempotencyStore {
    /// Answers kept in memory only.
    pub fn in_memory() -> IdempotencyStore {
        IdempotencyStore {
            in_flight: Arc::default(),
            answers: Arc::new(Answers::Memory(Mutex::default())),
        }
    }

    /// Answers kept in a fjall database in `dir`; expired ones are dropped on open.
    pub fn open(dir: &Path) -> Result<IdempotencyStore, IdempotencyError> {
        let error = |error: fjall::Error| IdempotencyError(error.to_string());
        let db = fjall::Database::builder(dir).open().map_err(error)?;
        let keys = db
            .keyspace("answers", fjall::KeyspaceCreateOptions::default)
            .map_err(error)?;
        let now = now_ms();
        let mut expired = Vec::new();
        for guard in keys.iter() {
            let (key, value) = guard.into_inner().map_err(error)?;
            let keep = serde_json::from_slice::<Answer>(&value)
                .is_ok_and(|answer| now - answer.at_ms < RETENTION_MS);
            if !keep {
                expired.push(key);
            }
        }
        for key in expired {
            keys.remove(key).map_err(error)?;
        }
        Ok(IdempotencyStore {
            in_flight: Arc::default(),
            answers: Arc::new(Answers::Disk { _db: db, keys }),
        })
    }

    fn get(&self, scope: &str) -> Option<Answer> {
        let answer = match self.answers.as_ref() {
            Answers::Memory(memory) => memory.lock().ok()?.0.get(scope).cloned(),
            Answers::Disk { keys, .. } => keys
                .get(scope)
                .ok()
                .flatten()
                .and_then(|value| serde_json::from_slice(&value).ok()),
        }?;
        (now_ms() - answer.at_ms < RETENTION_MS).then_some(answer)
    }

    fn put(&self, scope: &str, answer: Answer) {
        match self.answers.as_ref() {
            Answers::Memory(memory) => {
                if let Ok(mut memory) = memory.lock() {
                    let (entries, order) = &mut *memory;
                    entries.insert(scope.to_string(), answer);
                    order.push_back(scope.to_string());
                    while order.len() > MEMORY_CAPACITY {
                        if let Some(oldest) = order.pop_front() {
                            entries.remove(&oldest);
                        }
                    }
                }
            }
            Answers::Disk { keys, .. } => {
                let stored = serde_json::to_vec(&answer)
                    .map_err(|error| error.to_string())
                    .and_then(|value| keys.insert(scope, value).map_err(|error| error.to_string()));
                if let Err(error) = stored {
                    // The answer still goes out; only a later retry would run again.
                    tracing::warn!(%error, "cannot keep an idempotent answer");
                }
            }
        }
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
        let Ok(mut in_flight) = store.in_flight.lock() else {
            return unavailable();
        };
        let first_hash = match store.get(&scope) {
            Some(answer) if answer.body_hash == body_hash => return replay(answer),
            Some(answer) => Some(answer.body_hash),
            None => in_flight.get(&scope).copied(),
        };
        match first_hash {
            Some(first) if first != body_hash => {
                return error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body",
                    None,
                );
            }
            Some(_) => {
                return error_response(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_flight",
                    "a request with this Idempotency-Key is still being processed",
                    None,
                );
            }
            None => {
                in_flight.insert(scope.clone(), body_hash);
            }
        }
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_STORED_BODY).await;
    let response = match body {
        Ok(body) => {
            if !parts.status.is_server_error() {
                store.put(
                    &scope,
                    Answer {
                        body_hash,
                        status: parts.status.as_u16(),
                        content_type: parts
                            .headers
                            .get(axum::http::header::CONTENT_TYPE)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_string),
                        body: body.to_vec(),
                        at_ms: now_ms(),
                    },
                );
            }
            Response::from_parts(parts, Body::from(body))
        }
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the answer was too large to keep for replay",
            None,
        ),
    };
    if let Ok(mut in_flight) = store.in_flight.lock() {
        in_flight.remove(&scope);
    }
    response
}

fn replay(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Bytes::from(answer.body)).into_response();
    if let Some(value) = answer
        .content_type
        .and_then(|value| HeaderValue::from_str(&value).ok())
    {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn unavailable() -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "idempotency store unavailable",
        None,
    )
}

/// FNV-1a: a stable hash of the body (a collision would only matter between two bodies sent
/// with the same key by the same client).
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
