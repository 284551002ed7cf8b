//! commerce-gateway: the HTTP edge in front of the services.
//!
//! It mounts each service's router under `/api/<service>` and wraps them in what every route
//! needs: JWT validation ([`auth`]; the route itself states the role it needs), per-client
//! rate limits ([`rate_limit`]), CORS, correlation ids and W3C trace context
//! ([`correlation`]), `Idempotency-Key` replay on mutations ([`idempotency`]), a body size
//! limit and read deadline ([`body_deadline`]) and a timeout, security headers
//! ([`security_headers`]), Prometheus metrics ([`metrics`]), health endpoints, JWKS and the
//! OpenAPI document with a browsable UI ([`openapi`], [`docs`]). [`server`] is the listener
//! that serves it: connection limits and a header read timeout. It knows nothing about the
//! broker: readiness is a check the composition root hands in.

pub mod auth;
pub mod body_deadline;
pub mod correlation;
pub mod docs;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod security_headers;
pub mod server;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use commerce_services::identity::IdentityService;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

/// Something the node must have working before it is ready for traffic.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The gateway's settings (filled by the CLI from flags, env and file).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Requests per minute per client (token subject, else IP).
    pub rate_limit_per_minute: u32,
    /// Origins allowed by CORS; empty allows none.
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// A request body must arrive whole within this time (else 408).
    pub body_read_timeout: Duration,
    /// A route must answer within this time (else 504).
    pub request_timeout: Duration,
    /// The replicated `Idempotency-Key` records. `None` (a gateway built without the
    /// services' Raft groups) does not honour the header: requests pass as if it were absent.
    pub idempotency: Option<idempotency::IdempotencyRecords>,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            rate_limit_per_minute: 100,
            cors_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idempotency: None,
        }
    }
}

/// The services behind the gateway: identity, which the gateway also asks about tokens and
/// sessions, and every other service as a mount.
#[derive(Clone)]
pub struct Services {
    pub identity: Arc<IdentityService>,
    pub mounts: Vec<ServiceMount>,
}

/// A service's HTTP surface, as the composition root hands it to the gateway.
#[derive(Clone)]
pub struct ServiceMount {
    /// Where its routes live, e.g. `/api/orders`.
    pub path: &'static str,
    pub router: Router,
    /// Its part of the OpenAPI document.
    pub openapi: utoipa::openapi::OpenApi,
    /// False once the service's store has failed (readiness).
    pub healthy: Arc<dyn Fn() -> bool + Send + Sync>,
}

#[derive(Clone)]
struct HealthState {
    ready: ReadinessCheck,
    services: Services,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid CORS origin {0:?}")]
    CorsOrigin(String),
    #[error("the rate limit must be at least 1 request per minute")]
    RateLimit,
}

/// The whole HTTP application. Serve it with [`server::serve`] (or with connect info,
/// `into_make_service_with_connect_info::<SocketAddr>()`) so anonymous clients are rate
/// limited by IP.
pub fn router(
    config: &GatewayConfig,
    services: Services,
    ready: ReadinessCheck,
    metrics: metrics::Metrics,
) -> Result<Router, GatewayError> {
    let limiter =
        rate_limit::RateLimit::new(config.rate_limit_per_minute).ok_or(GatewayError::RateLimit)?;

    // Order matters: the layer added last runs first. A request meets the security headers,
    // CORS, correlation, the body's size limit and read deadline and the timeout, then
    // authentication (which names the client or marks a bad token), the rate limit (per
    // client), the refusal of a bad token, idempotency (per client), then the route.
    let mut api = Router::new().nest("/api/identity", services.identity.router());
    for mount in &services.mounts {
        api = api.nest(mount.path, mount.router.clone());
    }
    if let Some(records) = &config.idempotency {
        api = api.layer(from_fn_with_state(records.clone(), idempotency::layer));
    }
    let api = api
        .layer(axum::middleware::from_fn(auth::refuse))
        .layer(from_fn_with_state(limiter, rate_limit::layer))
        .layer(from_fn_with_state(
            auth::Authenticator {
                identity: services.identity.clone(),
            },
            auth::layer,
        ));

    let health = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready_handler))
        .with_state(HealthState {
            ready,
            services: services.clone(),
        });

    Ok(Router::new()
        .merge(api)
        .merge(health)
        .merge(openapi::router(&services.mounts))
        .merge(docs::router())
        .route(
            "/.well-known/jwks.json",
            get(auth::jwks).with_state(services.identity.clone()),
        )
        .route("/metrics", get(metrics::render).with_state(metrics.clone()))
        .fallback(error::not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout,
        ))
        .layer(from_fn_with_state(
            body_deadline::BodyDeadline {
                timeout: config.body_read_timeout,
                max_bytes: config.max_body_bytes,
            },
            body_deadline::layer,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(correlation::layer))
        .layer(cors(&config.cors_origins)?)
        .layer(axum::middleware::from_fn(security_headers::layer))
        .layer(from_fn_with_state(metrics, metrics::layer)))
}

fn cors(origins: &[String]) -> Result<CorsLayer, GatewayError> {
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|_| GatewayError::CorsOrigin(origin.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static(correlation::CORRELATION_HEADER),
            HeaderName::from_static(correlation::TRACEPARENT_HEADER),
            HeaderName::from_static(idempotency::IDEMPOTENCY_HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(correlation::CORRELATION_HEADER),
            axum::http::header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600)))
}

async fn live() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "live"}))
}

async fn ready_handler(State(state): State<HealthState>) -> impl IntoResponse {
    let services_ok = state.services.identity.engine.store().is_healthy()
        && state.services.mounts.iter().all(|mount| (mount.healthy)());
    let result = (state.ready)().and_then(|()| {
        if services_ok {
            Ok(())
        } else {
            Err("a service store failed; restart the node".to_string())
        }
    });
    match result {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready", "reason": reason})),
        ),
    }
}
