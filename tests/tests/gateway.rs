//! The gateway with a real HTTP client: rate limits, CORS, idempotency keys, correlation and
//! trace headers, limits, health, metrics, OpenAPI.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, product, wait_for_events};
use commerce_tests::{Node, TimeLimit};
use reqwest::Method;
use serde_json::json;

#[test]
fn the_101st_request_in_a_minute_gets_429_with_retry_after() {
    let _limit = TimeLimit::new("the_101st_request_gets_429", Duration::from_secs(120));
    let node = Node::start();
    let api = Api::new(&node);
    // The default budget: 100 requests at once.
    for i in 1..=100 {
        let reply = api.get("/api/catalog/products", None);
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text);
    }
    // The budget refills at 100 per minute (one per 0.6 s), so on a slow machine a request
    // or two more may pass before the refusal; the refusal itself must come.
    let limited = (101..=150)
        .map(|_| api.get("/api/catalog/products", None))
        .find(|reply| reply.status != 200)
        .expect("no 429 within 150 requests");
    assert_eq!(
        (limited.status, limited.error_code()),
        (429, "rate_limited")
    );
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // Health is not rate limited.
    api.get("/health/live", None).expect(200);
}

#[test]
fn the_rate_limit_is_per_client_and_configurable() {
    let _limit = TimeLimit::new("the_rate_limit_is_per_client", Duration::from_secs(120));
    let node = Node::start_with_env(&[("COMMERCE_RATE_LIMIT_PER_MINUTE", "5")]);
    let api = Api::new(&node);
    // Anonymous requests count against the IP: register, login and three reads are five.
    api.register("erin@example.com", "erins password", "Erin");
    let token = api.token("erin@example.com", "erins password");
    for _ in 0..3 {
        api.get("/api/catalog/products", None).expect(200);
    }
    assert_eq!(api.get("/api/catalog/products", None).status, 429);
    // A signed-in client has its own budget.
    for _ in 0..5 {
        api.get("/api/identity/me", Some(&token)).expect(200);
    }
    assert_eq!(api.get("/api/identity/me", Some(&token)).status, 429);
}

#[test]
fn cors_preflight_allows_configured_origins_only() {
    let _limit = TimeLimit::new("cors_preflight", Duration::from_secs(120));
    let node = Node::start_with_env(&[(
        "COMMERCE_CORS_ORIGINS",
        "https://shop.example,https://admin.example",
    )]);
    let api = Api::new(&node);
    let preflight = |origin: &str| {
        api.send(
            api.request(Method::OPTIONS, "/api/catalog/products", None)
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header(
                    "Access-Control-Request-Headers",
                    "authorization,content-type,idempotency-key",
                ),
        )
    };
    let allowed = preflight("https://shop.example");
    assert!(allowed.status < 300, "{}", allowed.status);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or("")
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_lowercase();
    assert!(
        headers.contains("idempotency-key") && headers.contains("authorization"),
        "{headers}"
    );

    let refused = preflight("https://evil.example");
    assert_eq!(refused.header("access-control-allow-origin"), None);

    // A simple cross-origin GET from an allowed origin carries the header too.
    let get = api.send(
        api.request(Method::GET, "/api/catalog/products", None)
            .header("Origin", "https://admin.example"),
    );
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://admin.example")
    );
}

#[test]
fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let _limit = TimeLimit::new("idempotency_key_replays", Duration::from_secs(120));
    let mut node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let body = product("KEY-1", "Kettle", "kitchen", 3999);
    let post = |body: &serde_json::Value, key: &str| {
        api.send(
            api.request(Method::POST, "/api/catalog/products", Some(&admin))
                .header("Idempotency-Key", key)
                .json(body),
        )
    };
    let first = post(&body, "key-1").expect(201);
    let again = post(&body, "key-1").expect(201);
    assert_eq!(again.body, first.body, "the replay is the first answer");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other_body = post(&product("KEY-2", "Toaster", "kitchen", 2999), "key-1");
    assert_eq!(
        (other_body.status, other_body.error_code()),
        (422, "idempotency_key_reused")
    );
    // Nothing new was created: one product, one event.
    let list = api.get("/api/catalog/products", None).expect(200).body;
    assert_eq!(list["total"], 1);
    // Another key is another request (and here a duplicate SKU).
    assert_eq!(post(&body, "key-2").status, 409);
    // Registering with a key: the replay does not register twice.
    let register = |key: &str| {
        api.send(
            api.request(Method::POST, "/api/identity/register", None)
                .header("Idempotency-Key", key)
                .json(&json!({"email": "fay@example.com", "password": "fays password", "name": "Fay"})),
        )
    };
    let user = register("reg-1").expect(201);
    assert_eq!(register("reg-1").expect(201).body, user.body);

    // The answers outlive a restart (and a crash).
    node.kill();
    node.restart();
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let after_restart = api.send(
        api.request(Method::POST, "/api/catalog/products", Some(&admin))
            .header("Idempotency-Key", "key-1")
            .json(&body),
    );
    assert_eq!(after_restart.expect(201).body, first.body);
    assert_eq!(register("reg-1").expect(201).body, user.body);
    assert_eq!(
        api.get("/api/catalog/products", None).expect(200).body["total"],
        1
    );

    let sentinel = api
        .post(
            "/api/catalog/products",
            Some(&admin),
            &product("AFTER", "after", "kitchen", 1),
        )
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = wait_for_events(&node, "catalog-events", "the sentinel's event", |all| {
        all.iter()
            .any(|event| event["aggregate_id"] == sentinel.as_str())
    });
    let kettles = events
        .iter()
        .filter(|event| event["data"]["sku"] == "KEY-1")
        .count();
    assert_eq!(kettles, 1);
}

#[test]
fn correlation_and_trace_headers_are_echoed_or_generated() {
    let _limit = TimeLimit::new("correlation_and_trace_headers", Duration::from_secs(120));
    let node = Node::start();
    let api = Api::new(&node);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = api.send(
        api.request(Method::GET, "/api/catalog/products", None)
            .header("X-Correlation-Id", "abc-123")
            .header("traceparent", traceparent),
    );
    assert_eq!(reply.header("x-correlation-id"), Some("abc-123"));
    let echoed = reply.header("traceparent").unwrap();
    assert!(
        echoed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{echoed}"
    );
    assert!(
        !echoed.contains("00f067aa0ba902b7"),
        "the gateway is a child span: {echoed}"
    );

    let generated = api.get("/api/catalog/products", None);
    let id = generated.header("x-correlation-id").unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(
        generated
            .header("traceparent")
            .is_some_and(|value| value.len() == 55)
    );
    // An unsafe correlation id is replaced, not echoed.
    let unsafe_id = api.send(
        api.request(Method::GET, "/health/live", None)
            .header("X-Correlation-Id", "not ok!"),
    );
    assert_ne!(unsafe_id.header("x-correlation-id"), Some("not ok!"));
}

#[test]
fn health_metrics_openapi_and_limits() {
    let _limit = TimeLimit::new(
        "health_metrics_openapi_and_limits",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let api = Api::new(&node);
    assert_eq!(
        api.get("/health/live", None).expect(200).body["status"],
        "live"
    );
    assert_eq!(
        api.get("/health/ready", None).expect(200).body["status"],
        "ready"
    );

    let openapi = api.get("/api/openapi.json", None).expect(200).body;
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/identity/register",
        "/api/identity/login",
        "/api/catalog/products",
        "/api/catalog/products/{id}/price",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    assert!(openapi["components"]["schemas"].get("Product").is_some());
    let docs = api.get("/api/docs", None).expect(200);
    assert!(docs.text.to_lowercase().contains("<html"), "a browsable UI");

    let missing = api.get("/api/nothing-here", None);
    assert_eq!((missing.status, missing.error_code()), (404, "not_found"));

    // Oversized bodies are refused before reaching a service, on the declared length alone.
    // (A raw request: the server answers without reading the body and closes, so a client
    // still writing 2 MiB may see a broken pipe instead of the answer.)
    let (status, body) = declare_oversized_body(node.http_addr(), 2 * 1024 * 1024);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    let wrong_method = api.send(api.request(Method::PATCH, "/api/identity/me", None));
    assert_eq!(
        (wrong_method.status, wrong_method.error_code()),
        (405, "method_not_allowed")
    );

    let metrics = api.get("/metrics", None).expect(200).text;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/api/openapi.json\""), "{metrics}");
}

/// Sends only the headers of a POST declaring `length` body bytes; returns the status and
/// whatever the server sent back.
fn declare_oversized_body(addr: std::net::SocketAddr, length: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "POST /api/identity/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("send headers");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&answer);
                if text.contains("\r\n\r\n") && text.contains("payload_too_large") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}
