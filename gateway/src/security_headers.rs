//! Standard security headers on every answer, whatever produced it (a route, a layer's
//! refusal, the fallback):
//!
//! - `X-Content-Type-Options: nosniff`: a browser takes the declared content type, never
//!   guesses one (a JSON answer cannot be run as a script);
//! - `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page may frame ours;
//! - `Referrer-Policy: no-referrer`: URLs (ids in paths) do not leak to other sites;
//! - `Content-Security-Policy`: API answers load nothing (`default-src 'none'`); a page that
//!   sets its own policy (the docs UI allows its own origin only) keeps it;
//! - `Cache-Control: no-store` unless the route chose a caching policy: answers carry
//!   personal data (orders, tokens) that no shared cache or browser history should keep.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// For answers that are data, not pages: nothing may be loaded or run from them.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

pub async fn layer(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    set(headers, X_CONTENT_TYPE_OPTIONS, "nosniff", true);
    set(headers, X_FRAME_OPTIONS, "DENY", true);
    set(headers, REFERRER_POLICY, "no-referrer", true);
    set(
        headers,
        CONTENT_SECURITY_POLICY,
        API_CONTENT_SECURITY_POLICY,
        false,
    );
    set(headers, CACHE_CONTROL, "no-store", false);
    response
}

/// Sets `name` to `value`; when `replace` is false, only if the route did not set it.
fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str, replace: bool) {
    if replace || !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}
