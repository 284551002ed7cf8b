//! The gateway's own error answers, in the API's shape.

use axum::http::StatusCode;
use axum::response::Response;
pub use commerce_services::platform::http::error_response;

pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route", None)
}
