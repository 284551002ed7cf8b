//! The middleware over a real engine on a one-voter Raft group, as a node alone runs it:
//! what a client sees while a keyed request runs, after it answered, and after it failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::{IdempotencyRecords, layer, open};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use commerce_services::platform::record_signature::{RecordKey, RecordKeys};
use commerce_storage::raft::{GroupId, GroupStart, RaftNode, RaftNodeConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

const GROUP: GroupId = GroupId(1 << 48);

/// A handler that counts its runs and waits for the test to let it answer.
#[derive(Clone)]
struct Handler {
    runs: Arc<AtomicU32>,
    gate: Arc<Semaphore>,
}

async fn create(State(handler): State<Handler>) -> Response {
    let run = handler.runs.fetch_add(1, Ordering::SeqCst) + 1;
    let _permit = handler.gate.acquire().await.unwrap();
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"run": run})),
    )
        .into_response()
}

async fn fail(State(handler): State<Handler>) -> Response {
    handler.runs.fetch_add(1, Ordering::SeqCst);
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn records(dir: &Path) -> (IdempotencyRecords, Arc<RaftNode>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = RaftNodeConfig::new(1, dir.join("raft"));
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 150;
    config.election_timeout_max_ms = 300;
    let raft = Arc::new(RaftNode::start(config, listener).await.unwrap());
    let engine = open(&dir.join("idempotency")).unwrap();
    let members = BTreeMap::from([(1, raft.addr().to_string())]);
    engine
        .replicate(raft.clone(), GROUP, GroupStart::Bootstrap(members))
        .await
        .unwrap();
    for _ in 0..200 {
        if raft.leader(GROUP).unwrap() == Some(1) {
            let key = RecordKey::from_bytes([7; 32]).unwrap();
            return (IdempotencyRecords(engine, RecordKeys::with(key)), raft);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the one-voter group did not elect itself");
}

fn app(records: IdempotencyRecords, handler: Handler) -> Router {
    Router::new()
        .route("/things", post(create))
        .route("/fail", post(fail))
        .with_state(handler)
        .layer(from_fn_with_state(records, layer))
}

fn keyed(path: &str, key: &str, body: &'static str) -> Request<Body> {
    Request::post(path)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

async fn answer(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|value| value.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, replayed, String::from_utf8(body.to_vec()).unwrap())
}

fn error_code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_in_flight_while_its_request_runs_and_replayed_after_even_if_the_client_left() {
    let dir = tempfile::tempdir().unwrap();
    let (records, raft) = records(dir.path()).await;
    let handler = Handler {
        runs: Arc::default(),
        gate: Arc::new(Semaphore::new(0)),
    };
    let app = app(records, handler.clone());

    // The first request runs and waits in its handler.
    let first = tokio::spawn({
        let app = app.clone();
        async move { answer(&app, keyed("/things", "k-1", r#"{"a":1}"#)).await }
    });
    while handler.runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, body) = answer(&app, keyed("/things", "k-1", r#"{"a":1}"#)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::CONFLICT, "idempotency_key_in_flight")
    );
    let (status, _, body) = answer(&app, keyed("/things", "k-1", r#"{"a":2}"#)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );

    // The client hangs up; the request still finishes and its answer is kept.
    first.abort();
    handler.gate.add_permits(100);
    let replay = loop {
        let reply = answer(&app, keyed("/things", "k-1", r#"{"a":1}"#)).await;
        if reply.0 != StatusCode::CONFLICT {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        replay,
        (
            StatusCode::CREATED,
            Some("true".to_string()),
            r#"{"run":1}"#.to_string()
        )
    );
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);

    // Another key is another request.
    let (status, replayed, body) = answer(&app, keyed("/things", "k-2", r#"{"a":1}"#)).await;
    assert_eq!(
        (status, replayed, body.as_str()),
        (StatusCode::CREATED, None, r#"{"run":2}"#)
    );
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_not_kept_so_the_retry_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (records, raft) = records(dir.path()).await;
    let handler = Handler {
        runs: Arc::default(),
        gate: Arc::new(Semaphore::new(0)),
    };
    let app = app(records, handler.clone());
    for run in 1..=2 {
        let (status, replayed, _) = answer(&app, keyed("/fail", "k-1", "{}")).await;
        assert_eq!(
            (status, replayed),
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        );
        assert_eq!(handler.runs.load(Ordering::SeqCst), run);
    }
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_longer_than_255_characters_is_refused_before_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let (records, raft) = records(dir.path()).await;
    let handler = Handler {
        runs: Arc::default(),
        gate: Arc::new(Semaphore::new(100)),
    };
    let app = app(records, handler.clone());
    let long = "k".repeat(256);
    let (status, _, body) = answer(&app, keyed("/things", &long, "{}")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );
    assert_eq!(handler.runs.load(Ordering::SeqCst), 0);
    raft.shutdown().await;
}
