//! A request body must arrive whole within a deadline, or the request is answered
//! `408 request_timeout` (and the connection closed) before any service sees it; and it must
//! not be larger than `max_body_bytes` (413, on the declared length alone when there is one).
//!
//! Without it a client that declares a body and sends half of it holds a connection and a
//! handler until the overall request timeout answers 504, as if the node were slow. Bodies
//! here are small JSON documents (at most `max_body_bytes`), so reading one whole before the
//! route runs costs little and lets the deadline cover the body alone.

use crate::error::error_response;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    /// The whole body must be received within this time.
    pub timeout: Duration,
    /// Larger bodies are refused with 413.
    pub max_bytes: usize,
}

pub async fn layer(State(deadline): State<BodyDeadline>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let max = u64::try_from(deadline.max_bytes).unwrap_or(u64::MAX);
    if declared.is_some_and(|length| length > max) {
        // Answered without reading the body; hyper closes the connection after it.
        return too_large(deadline.max_bytes);
    }
    let limited = http_body_util::Limited::new(body, deadline.max_bytes);
    let bytes = match tokio::time::timeout(deadline.timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            return closing(too_large(deadline.max_bytes));
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot read a request body");
            return closing(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read (the connection broke or the framing is invalid)",
                None,
            ));
        }
        Err(_elapsed) => {
            return closing(error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the request body did not arrive within {} s",
                    deadline.timeout.as_secs_f64()
                ),
                None,
            ));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(max_bytes: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the request body is larger than the limit of {max_bytes} bytes"),
        None,
    )
}

/// The rest of the body is unread, so the connection cannot carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
