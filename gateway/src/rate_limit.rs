//! Per-client rate limit (GCRA, governor): the token's subject when the token is valid,
//! else the client's IP, so anonymous requests and requests with an invalid or expired token
//! share their IP's budget (authentication runs before and only marks a bad token; it is
//! answered after this count, see [`crate::auth`]). Over the limit: 429 with `Retry-After`.

use crate::error::error_response;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use commerce_services::platform::http::Principal;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl RateLimit {
    /// `per_minute` requests per client per minute, all of them usable at once (burst).
    pub fn new(per_minute: u32) -> Option<RateLimit> {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute)?);
        Some(RateLimit {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            clock: DefaultClock::default(),
        })
    }
}

pub async fn layer(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let client = match request.extensions().get::<Principal>() {
        Some(principal) => format!("user:{}", principal.user_id),
        None => match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
            None => "ip:unknown".to_string(),
        },
    };
    if let Err(not_until) = limit.limiter.check_key(&client) {
        let wait = not_until.wait_time_from(limit.clock.now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("too many requests; retry in {seconds} s"),
            None,
        );
        if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    // Forget idle clients now and then so the table does not grow without bound.
    if limit.limiter.len() > 100_000 {
        limit.limiter.retain_recent();
    }
    next.run(request).await
}
