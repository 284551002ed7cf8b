//! Bearer-token authentication. A valid access token becomes a `Principal` in the request's
//! extensions; a request without a token goes on anonymous (the route decides whether that is
//! enough); a request with a bad token (malformed, expired, tampered, `alg: none`, signed by
//! another key) is answered 401 here and reaches no service.

use crate::error::error_response;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use commerce_services::identity::tokens::Verifier;
use std::sync::Arc;

pub async fn layer(
    State(verifier): State<Arc<Verifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(header) = request.headers().get(AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return unauthorized("the Authorization header must be `Bearer <access token>`");
        };
        match verifier.verify(token) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
            }
            Err(error) => {
                tracing::info!(%error, "rejected an access token");
                return unauthorized("the access token is invalid or expired");
            }
        }
    }
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, "invalid_token", message, None);
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}
