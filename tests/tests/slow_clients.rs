//! Slow and numerous HTTP clients (issue 15, item 4): a client that stalls in a request's
//! header is cut off after the header timeout, one that stalls in its body is answered 408,
//! one IP cannot hold more than its share of connections, and other clients are served
//! meanwhile. Time bounds here are generous upper bounds, never exact timings.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::time::Duration;

use commerce_tests::http::Api;
use commerce_tests::slow_client::{Outcome, RawHttp, parse_answer};
use commerce_tests::{Node, TimeLimit};

/// Another loopback address: the node sees requests from it as another client IP.
fn other_client_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

#[test]
fn stalled_headers_are_cut_off_after_the_header_timeout_while_others_are_served() {
    let _limit = TimeLimit::new("stalled_headers_are_cut_off", Duration::from_secs(180));
    let node = Node::start_with_env(&[
        ("COMMERCE_HTTP_HEADER_TIMEOUT_MS", "1500"),
        ("COMMERCE_HTTP_MAX_CONNECTIONS_PER_IP", "20"),
    ]);
    // More half-open requests than one IP may hold: some are refused, the rest stall.
    let mut stalled: Vec<RawHttp> = (0..40)
        .map(|_| RawHttp::half_header(node.http_addr()))
        .collect();
    // Meanwhile another client is served, several times over.
    let api = Api::from_address(&node, other_client_ip());
    for _ in 0..5 {
        api.get("/api/catalog/products", None).expect(200);
    }
    // Every stalled connection is closed by the server, long before this bound; none got
    // an answer to its half request.
    for (i, connection) in stalled.iter_mut().enumerate() {
        match connection.wait_closed(Duration::from_secs(30)) {
            Outcome::Closed(sent) => assert!(
                !sent.contains("200 OK"),
                "connection {i} was answered: {sent}"
            ),
            Outcome::StillOpen => panic!("stalled connection {i} still open after 30 s"),
        }
    }
    // The places are free again: the stalling IP is served like anyone.
    Api::new(&node)
        .get("/api/catalog/products", None)
        .expect(200);
}

#[test]
fn one_ip_cannot_hold_more_connections_than_its_cap_and_refusals_are_logged_once() {
    let _limit = TimeLimit::new("one_ip_cannot_hold_more", Duration::from_secs(180));
    // A long header timeout: connections within the cap stay open for the whole test, so a
    // connection closed now was refused by the cap.
    let node = Node::start_with_env(&[
        ("COMMERCE_HTTP_HEADER_TIMEOUT_MS", "120000"),
        ("COMMERCE_HTTP_MAX_CONNECTIONS_PER_IP", "10"),
    ]);
    let mut held: Vec<RawHttp> = (0..10)
        .map(|_| RawHttp::half_header(node.http_addr()))
        .collect();
    // The node has accepted the ten (they are served: a request on another is too).
    let api = Api::from_address(&node, other_client_ip());
    api.get("/health/live", None).expect(200);
    for i in 0..5 {
        let mut refused = RawHttp::half_header(node.http_addr());
        assert!(
            matches!(refused.wait_closed(Duration::from_secs(20)), Outcome::Closed(sent) if sent.is_empty()),
            "connection {} over the per-IP cap was not closed at once",
            11 + i
        );
    }
    // Other clients are not affected by one IP's cap.
    api.get("/api/catalog/products", None).expect(200);
    // The held connections are still open (not cut off by the refusals).
    assert_eq!(
        held[0].wait_closed(Duration::from_millis(500)),
        Outcome::StillOpen
    );
    // Five refusals in a burst: one warning, not five.
    let warnings = node.log().matches("refusing HTTP connections").count();
    assert_eq!(warnings, 1, "{}", node.log());
    // A closed connection gives its place back.
    held.truncate(5);
    let same_ip = Api::new(&node);
    commerce_tests::wait_for(
        "the capped IP to be served after closing connections",
        Duration::from_secs(20),
        || {
            same_ip
                .try_send(same_ip.request(reqwest::Method::GET, "/health/live", None))
                .ok()
                .filter(|reply| reply.status == 200)
        },
    );
}

#[test]
fn a_body_that_stalls_is_answered_408_in_the_api_shape() {
    let _limit = TimeLimit::new("a_body_that_stalls", Duration::from_secs(120));
    let node = Node::start_with_env(&[("COMMERCE_HTTP_BODY_TIMEOUT_MS", "1000")]);
    let mut slow = RawHttp::partial_body(
        node.http_addr(),
        "/api/identity/register",
        200,
        r#"{"email": "slow@example.com", "#,
    );
    let Outcome::Closed(answer) = slow.wait_closed(Duration::from_secs(25)) else {
        panic!("no answer to a stalled body within 25 s (well before the 30 s request timeout)");
    };
    let (status, body) = parse_answer(&answer);
    assert_eq!(status, 408, "{answer}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("body"),
        "{body}"
    );
    // The node goes on serving.
    Api::new(&node).get("/health/live", None).expect(200);
}
