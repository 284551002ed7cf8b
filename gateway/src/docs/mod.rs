//! `/api/docs`: a browsable view of the OpenAPI document, served entirely from the binary.
//!
//! The page, its script and its style sheet are compiled in (`include_str!`), and the
//! script reads `/api/openapi.json` from the same node, so the page works offline and its
//! Content-Security-Policy allows this origin only. A small hand-written viewer rather than
//! a packaged UI: the packaged ones either load from a CDN (Scalar's page) or fetch and
//! unpack a release archive at build time (utoipa-swagger-ui), and an operator needs the
//! routes, their parameters, answers and schemas, which take ~200 lines to show.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Only this node's own scripts, styles and document; no inline code, no framing.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("viewer.js");
const STYLE: &str = include_str!("viewer.css");

pub fn router() -> Router {
    Router::new()
        .route(
            "/api/docs",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/api/docs/viewer.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/api/docs/viewer.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
    );
    // The assets change only with the binary; revalidate rather than keep them forever.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
