//! The REST edge's small promises (issue 15): security headers on every answer, errors in
//! the API's own words, and rate limits for clients without a valid token too.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::{Api, Reply};
use commerce_tests::{Node, TimeLimit};
use reqwest::Method;
use serde_json::json;

fn assert_security_headers(what: &str, reply: &Reply) {
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert!(reply.header("referrer-policy").is_some(), "{what}");
    let policy = reply.header("content-security-policy").unwrap_or("");
    assert!(
        policy.contains("frame-ancestors 'none'"),
        "{what}: {policy}"
    );
}

#[test]
fn every_answer_carries_security_headers_and_json_is_not_cached() {
    let _limit = TimeLimit::new(
        "every_answer_carries_security_headers",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let api = Api::new(&node);
    let answers = [
        ("a list", api.get("/api/catalog/products", None).expect(200)),
        ("health", api.get("/health/live", None).expect(200)),
        ("no route", api.get("/api/nothing-here", None).expect(404)),
        (
            "a bad token",
            api.get("/api/identity/me", Some("not-a-token")).expect(401),
        ),
        ("no token", api.get("/api/identity/me", None).expect(401)),
        ("the docs page", api.get("/api/docs", None).expect(200)),
    ];
    for (what, reply) in &answers {
        assert_security_headers(what, reply);
        if reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
            assert!(
                reply
                    .header("content-security-policy")
                    .unwrap()
                    .contains("default-src 'none'"),
                "{what}"
            );
        }
    }
}

#[test]
fn malformed_bodies_are_answered_in_the_apis_own_words() {
    let _limit = TimeLimit::new("malformed_bodies_are_answered", Duration::from_secs(120));
    let node = Node::start();
    let api = Api::new(&node);
    let post = |body: &str| {
        api.send(
            api.request(Method::POST, "/api/identity/register", None)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    };
    let cases = [
        (r#"["a@example.com", "a password"]"#, None),
        (r#"{"email": "a@example.com"}"#, Some("password")),
        (
            r#"{"email": 5, "password": "a long password", "name": "A"}"#,
            Some("email"),
        ),
        (r#"{"email": "a@example.com", "#, None),
        ("null", None),
    ];
    for (body, field) in cases {
        let reply = post(body);
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_body"),
            "{body}: {}",
            reply.text
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        for rust in [
            "struct",
            "RegisterRequest",
            "elements",
            "Failed to",
            "deserialize",
            "u32",
            "String",
        ] {
            assert!(!message.contains(rust), "{body}: {message}");
        }
        if let Some(field) = field {
            assert_eq!(reply.body["error"]["field"], field, "{body}: {message}");
            assert!(message.contains(field), "{body}: {message}");
        }
    }
    // Not JSON at all, by its declared type.
    let reply = api.send(
        api.request(Method::POST, "/api/identity/register", None)
            .header("content-type", "text/plain")
            .body("hello"),
    );
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_body"));
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    // A valid body still works.
    api.post(
        "/api/identity/register",
        None,
        &json!({"email": "a@example.com", "password": "a long password", "name": "A"}),
    )
    .expect(201);
}

#[test]
fn requests_with_an_invalid_token_are_rate_limited_by_ip() {
    let _limit = TimeLimit::new("requests_with_an_invalid_token", Duration::from_secs(120));
    let node = Node::start_with_env(&[("COMMERCE_RATE_LIMIT_PER_MINUTE", "5")]);
    let api = Api::new(&node);
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            api.get("/api/identity/me", Some("forged.token.value"))
                .status
        })
        .collect();
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "never limited: {statuses:?}");
    // The same IP's budget: an anonymous request is limited too.
    let anonymous = api.get("/api/catalog/products", None);
    assert_eq!(
        (anonymous.status, anonymous.error_code()),
        (429, "rate_limited")
    );
    assert!(anonymous.header("retry-after").is_some());
}
