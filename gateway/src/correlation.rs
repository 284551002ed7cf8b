//! Correlation ids and W3C trace context.
//!
//! `X-Correlation-Id` is taken from the request when it is a sane token (else generated), put
//! in the request context the services carry into their events, echoed on the response and
//! attached to the request's log span. `traceparent` (W3C Trace Context) is accepted when
//! well-formed: the gateway keeps the trace id, opens its own span id as the child, and
//! propagates that `traceparent` to the services (into event headers) and back on the
//! response; a missing or malformed one starts a new trace.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use commerce_services::platform::http::RequestContext;
use tracing::Instrument;

pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

pub async fn layer(mut request: Request, next: Next) -> Response {
    let correlation_id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_token(id))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let trace_id = request
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_traceparent);
    let (trace_id, flags) =
        trace_id.unwrap_or_else(|| (uuid::Uuid::new_v4().simple().to_string(), "01".to_string()));
    let span_id: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(16)
        .collect();
    let traceparent = format!("00-{trace_id}-{span_id}-{flags}");
    request.extensions_mut().insert(RequestContext {
        correlation_id: correlation_id.clone(),
        traceparent: Some(traceparent.clone()),
    });
    let span = tracing::info_span!(
        "http",
        correlation_id = %correlation_id,
        trace_id = %trace_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "request"));
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert(TRACEPARENT_HEADER, value);
    }
    response
}

/// 1 to 128 characters of letters, digits and `-_.:`, so ids are safe in logs and headers.
fn is_token(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// (trace id, flags) of a version-00 `traceparent`, unless malformed or all-zero.
fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && trace_id.chars().any(|c| c != '0')
        && parent_id.chars().any(|c| c != '0');
    valid.then(|| (trace_id.to_string(), flags.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_or_refused() {
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
                "01".to_string()
            ))
        );
        assert_eq!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(parse_traceparent("garbage"), None);
        assert!(is_token("abc-123"));
        assert!(!is_token("has space"));
    }
}
