//! The middleware: a mutating request with an `Idempotency-Key` is begun in the replicated
//! records before its handler runs, and its answer recorded after (see the module above).
//!
//! The handler runs in a task of its own, and the answer is recorded there: a client that
//! hangs up, or the gateway's timeout, does not cut a request short between its effect and
//! its record, so a retry replays the answer instead of running twice. Only a node crash
//! leaves a key in flight; its lease then runs out and a retry runs.

use super::IdempotencyRecords;
use super::machine::{Command, Outcome, StoredAnswer, StoredBody};
use crate::error::error_response;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use commerce_services::platform::engine::CommandContext;
use commerce_services::platform::http::{Principal, RequestContext};
use commerce_services::platform::time::now_ms;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::Instrument;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Largest answer body kept for replay.
const MAX_STORED_BODY: usize = 1024 * 1024;
/// How long a key stays in flight when its node crashed before recording the answer: a
/// retry within it gets 409, after it runs. Well above the gateway's request timeout, so a
/// slow request is not overtaken by its own retry.
const IN_FLIGHT_LEASE: Duration = Duration::from_secs(120);
/// Attempts to record an answer: the group may be electing a leader just then, and a key
/// left in flight refuses retries until its lease runs out.
const RECORD_ATTEMPTS: u32 = 3;
const RECORD_RETRY: Duration = Duration::from_millis(500);
/// What the body fingerprints are keyed for (see [`RecordKey::digest`]).
///
/// [`RecordKey::digest`]: commerce_services::platform::record_signature::RecordKey::digest
const FINGERPRINT_PURPOSE: &str = "idempotency-body-fingerprint";

pub async fn layer(
    State(records): State<IdempotencyRecords>,
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
    let scope = scope(&request, &key);
    let context = request
        .extensions()
        .get::<RequestContext>()
        .map(RequestContext::command)
        .unwrap_or_default();

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

    let Some(key) = records.1.current() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "this node has not installed the cluster's keys yet; retry shortly",
            None,
        );
    };
    let attempt = uuid::Uuid::new_v4().to_string();
    let begin = Command::Begin {
        scope: scope.clone(),
        fingerprint: key.digest(FINGERPRINT_PURPOSE, &body),
        attempt: attempt.clone(),
        at_ms: now_ms(),
        lease_ms: i64::try_from(IN_FLIGHT_LEASE.as_millis()).unwrap_or(i64::MAX),
    };
    match records.0.submit(begin, context.clone()).await {
        Ok(Ok(Outcome::Started)) => {}
        Ok(Ok(Outcome::Completed(answer))) => return replay(answer),
        Ok(Ok(Outcome::Mismatch)) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
                None,
            );
        }
        Ok(Ok(Outcome::InFlight)) => {
            return error_response(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed",
                None,
            );
        }
        Ok(Ok(other)) => {
            tracing::error!(?other, "the idempotency records answered Begin out of turn");
            return internal("the idempotency records answered out of turn");
        }
        Ok(Err(rejection)) => {
            tracing::error!(%rejection, "the idempotency records refused Begin");
            return internal("the idempotency records refused the request");
        }
        Err(error) => {
            // Nothing ran: the retry the client is told to make is safe.
            tracing::warn!(%error, "cannot begin an idempotent request");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the idempotency records cannot reach a majority of their replicas; retry shortly",
                None,
            );
        }
    }

    let request = Request::from_parts(parts, Body::from(body));
    let run = Run {
        records,
        scope,
        attempt,
        context,
    };
    let task = tokio::spawn(
        run.handle(next, request)
            .instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "an idempotent request's task failed");
            internal("the request failed")
        }
    }
}

/// A begun request: runs its handler and records the answer.
struct Run {
    records: IdempotencyRecords,
    scope: String,
    attempt: String,
    context: CommandContext,
}

impl Run {
    async fn handle(self, next: Next, request: Request) -> Response {
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let Ok(body) = axum::body::to_bytes(body, MAX_STORED_BODY).await else {
            self.record(Command::Abandon {
                scope: self.scope.clone(),
                attempt: self.attempt.clone(),
            })
            .await;
            return internal("the answer was too large to keep for replay");
        };
        let settle = if parts.status.is_server_error() {
            Command::Abandon {
                scope: self.scope.clone(),
                attempt: self.attempt.clone(),
            }
        } else {
            Command::Complete {
                scope: self.scope.clone(),
                attempt: self.attempt.clone(),
                answer: StoredAnswer {
                    status: parts.status.as_u16(),
                    content_type: parts
                        .headers
                        .get(axum::http::header::CONTENT_TYPE)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string),
                    body: StoredBody::new(body.to_vec()),
                },
            }
        };
        self.record(settle).await;
        Response::from_parts(parts, Body::from(body))
    }

    /// Submits `Complete` or `Abandon`. The answer goes out whatever happens here: a failure
    /// only leaves the key in flight until its lease runs out.
    async fn record(&self, command: Command) {
        for attempt in 1..=RECORD_ATTEMPTS {
            match self
                .records
                .0
                .submit(command.clone(), self.context.clone())
                .await
            {
                Ok(Ok(Outcome::Recorded)) => return,
                Ok(Ok(Outcome::Superseded)) => {
                    tracing::warn!(
                        scope = %self.scope,
                        "an idempotent request finished after a retry took its key over"
                    );
                    return;
                }
                Ok(other) => {
                    tracing::error!(?other, "the idempotency records answered out of turn");
                    return;
                }
                Err(error) if attempt < RECORD_ATTEMPTS => {
                    tracing::info!(%error, "cannot record an idempotent answer yet; retrying");
                    tokio::time::sleep(RECORD_RETRY).await;
                }
                Err(error) => {
                    tracing::warn!(
                        %error,
                        scope = %self.scope,
                        "cannot record an idempotent answer; the key stays in flight until its lease ends"
                    );
                }
            }
        }
    }
}

/// The key's scope: the same key from another client, or on another route, is another key.
fn scope(request: &Request, key: &str) -> String {
    let client = match request.extensions().get::<Principal>() {
        Some(principal) => format!("user:{}", principal.user_id),
        None => match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
            None => "ip:unknown".to_string(),
        },
    };
    format!(
        "{client} {} {} {key}",
        request.method(),
        request.uri().path()
    )
}

fn replay(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Bytes::from(answer.body.into_bytes())).into_response();
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

fn internal(message: &str) -> Response {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", message, None)
}
