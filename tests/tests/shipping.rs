//! Shipping with real clients: CreateShipment / CancelShipment produced with librdkafka onto
//! `shipping-commands`, answers read from `shipping-events`; the customer reads their
//! shipment over HTTP; admins and the carrier's webhook (its token read from the data dir)
//! move it along; illegal transitions and bad credentials change nothing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::envelopes::{self, envelope, fresh_id};
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, Reply, wait_for_events};
use commerce_tests::kafka::{self, TestProducer};
use commerce_tests::{Node, TimeLimit};
use reqwest::Method;
use serde_json::{Value, json};

const COMMANDS: &str = "shipping-commands";
const EVENTS: &str = "shipping-events";

fn start() -> (Node, Api, String) {
    let mut env = ADMIN_ENV.to_vec();
    env.push(("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"));
    let node = Node::start_with_env(&env);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    (node, api, admin)
}

/// Registers a customer; returns (user id, access token).
fn customer(api: &Api, email: &str) -> (String, String) {
    let user = api.register(email, "a customer password", "Customer");
    let token = api.token(email, "a customer password");
    (user["id"].as_str().unwrap().to_string(), token)
}

fn address(country: &str) -> Value {
    json!({"name": "Ada Lovelace", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": country})
}

fn create_shipment(
    producer: &TestProducer,
    order_id: &str,
    customer_id: &str,
    address: Value,
    method: &str,
) -> Value {
    let command = envelope(
        "CreateShipment",
        order_id,
        json!({
            "order_id": order_id,
            "customer_id": customer_id,
            "address": address,
            "items": [{"product_id": "p1", "quantity": 2, "weight_grams": 300}],
            "method": method,
        }),
    );
    envelopes::send(producer, COMMANDS, &command);
    kafka::flush_all_acked(producer);
    command
}

fn of_order<'a>(all: &'a [Value], order_id: &str, event_type: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|event| event["aggregate_id"] == order_id && event["type"] == event_type)
        .collect()
}

fn wait_for_reply(node: &Node, order_id: &str, event_type: &str, n: usize) -> Vec<Value> {
    wait_for_events(
        node,
        EVENTS,
        &format!("{n} {event_type} for {order_id}"),
        |all| of_order(all, order_id, event_type).len() >= n,
    )
}

/// A command after everything sent so far (one partition), whose answer proves the earlier
/// ones were applied: a shipment to nowhere fails.
fn barrier(node: &Node, producer: &TestProducer) -> Vec<Value> {
    let order_id = format!("barrier-{}", fresh_id());
    create_shipment(producer, &order_id, "nobody", address("XX"), "standard");
    wait_for_reply(node, &order_id, "ShipmentFailed", 1)
}

fn shipment(api: &Api, token: &str, order_id: &str) -> Value {
    api.get(&format!("/api/shipping/orders/{order_id}"), Some(token))
        .expect(200)
        .body
}

fn carrier(api: &Api, token: Option<&str>, body: Value) -> Reply {
    let mut request = api.request(Method::POST, "/api/shipping/webhooks/carrier", None);
    if let Some(token) = token {
        request = request.header("X-Carrier-Token", token);
    }
    api.send(request.json(&body))
}

#[test]
fn create_shipment_answers_with_tracking_and_cost_for_its_owner() {
    let _limit = TimeLimit::new("create_shipment_answers", Duration::from_secs(180));
    let (node, api, admin) = start();
    let (ada, ada_token) = customer(&api, "ada@example.com");
    let (_bob, bob_token) = customer(&api, "bob@example.com");
    let producer = kafka::platform_producer(&node, &[]);

    let command = create_shipment(&producer, "order-1", &ada, address("US"), "standard");
    let all = wait_for_reply(&node, "order-1", "ShipmentCreated", 1);
    let created = of_order(&all, "order-1", "ShipmentCreated")[0];
    let tracking = created["data"]["tracking_number"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tracking.len(), 14, "{tracking}");
    assert!(tracking.starts_with("DC"));
    assert!(
        tracking[2..]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "{tracking}"
    );
    // 2 x 300 g = 600 g: two 500 g steps, standard domestic: 500 + 100 cents.
    assert_eq!(
        created["data"]["cost"],
        json!({"amount": 600, "currency": "USD"})
    );
    assert_eq!(created["data"]["method"], "standard");
    assert_eq!(created["data"]["customer_id"], ada.as_str());
    assert_eq!(created["correlation_id"], command["correlation_id"]);
    assert_eq!(created["causation_id"], command["id"]);

    // The owner and an admin read it; another customer may not; nobody signed in gets 401.
    let view = shipment(&api, &ada_token, "order-1");
    assert_eq!(view["tracking_number"], tracking.as_str());
    assert_eq!(view["status"], "created");
    assert_eq!(view["cost"]["amount"], 600);
    assert_eq!(view["method"], "standard");
    assert_eq!(view["address"], address("US"));
    assert_eq!(view["history"].as_array().unwrap().len(), 1);
    assert_eq!(view["history"][0]["status"], "created");
    assert_eq!(view["shipment_id"], created["data"]["shipment_id"]);
    assert_eq!(
        shipment(&api, &admin, "order-1")["tracking_number"],
        tracking.as_str()
    );
    // Another customer's shipment answers as a missing one (as orders do).
    let other = api.get("/api/shipping/orders/order-1", Some(&bob_token));
    assert_eq!(other.status, 404);
    assert_eq!(other.error_code(), "not_found");
    assert_eq!(api.get("/api/shipping/orders/order-1", None).status, 401);
    assert_eq!(
        api.get("/api/shipping/orders/no-such-order", Some(&admin))
            .status,
        404
    );

    // A repeated command (new envelope id) makes no second shipment: the same answer again.
    create_shipment(&producer, "order-1", &ada, address("US"), "express");
    let all = wait_for_reply(&node, "order-1", "ShipmentCreated", 2);
    let answers = of_order(&all, "order-1", "ShipmentCreated");
    assert_eq!(answers[0]["data"], answers[1]["data"]);
    assert_eq!(shipment(&api, &admin, "order-1")["method"], "standard");

    // Zone 1 express; an unknown country fails the shipment, which then does not exist.
    create_shipment(&producer, "order-2", &ada, address("de"), "express");
    let all = wait_for_reply(&node, "order-2", "ShipmentCreated", 1);
    // 600 g express zone 1: 3500 + 600 cents.
    assert_eq!(
        of_order(&all, "order-2", "ShipmentCreated")[0]["data"]["cost"]["amount"],
        4100
    );
    assert_eq!(
        shipment(&api, &ada_token, "order-2")["address"]["country"],
        "DE"
    );
    create_shipment(&producer, "order-3", &ada, address("XX"), "standard");
    let all = wait_for_reply(&node, "order-3", "ShipmentFailed", 1);
    let failed = of_order(&all, "order-3", "ShipmentFailed")[0];
    assert_eq!(
        failed["data"],
        json!({"order_id": "order-3", "customer_id": ada, "reason": "invalid_address"})
    );
    assert_eq!(
        api.get("/api/shipping/orders/order-3", Some(&admin)).status,
        404
    );
    let mut blank = address("US");
    blank["city"] = json!("");
    create_shipment(&producer, "order-4", &ada, blank, "standard");
    let all = wait_for_reply(&node, "order-4", "ShipmentFailed", 1);
    assert_eq!(
        of_order(&all, "order-4", "ShipmentFailed")[0]["data"]["reason"],
        "invalid_address"
    );
    let all = barrier(&node, &producer);
    let created: Vec<&Value> = all
        .iter()
        .filter(|event| event["type"] == "ShipmentCreated")
        .collect();
    assert_eq!(
        created.len(),
        3,
        "order-1 twice (same shipment) and order-2"
    );

    // Quotes for anyone.
    let quote = api
        .post(
            "/api/shipping/quote",
            None,
            &json!({"address": address("US"), "weight_grams": 1200, "method": "express"}),
        )
        .expect(200)
        .body;
    assert_eq!(
        quote,
        json!({"cost": {"amount": 1900, "currency": "USD"}, "zone": "domestic"})
    );
    let quote = api
        .post(
            "/api/shipping/quote",
            None,
            &json!({"address": address("JP"), "weight_grams": 100, "method": "standard"}),
        )
        .expect(200)
        .body;
    assert_eq!(quote["zone"], "zone2");
    assert_eq!(quote["cost"]["amount"], 2500);
    for (bad, field) in [
        (
            json!({"address": address("XX"), "weight_grams": 100, "method": "standard"}),
            "address.country",
        ),
        (
            json!({"address": address("US"), "weight_grams": 100, "method": "teleport"}),
            "method",
        ),
        (
            json!({"address": address("US"), "weight_grams": 70_001, "method": "standard"}),
            "weight_grams",
        ),
    ] {
        let reply = api.post("/api/shipping/quote", None, &bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert_eq!(reply.body["error"]["field"], field);
    }
}

#[test]
fn admins_and_the_carrier_move_shipments_along_legal_transitions_only() {
    let _limit = TimeLimit::new("shipment_transitions", Duration::from_secs(180));
    let (node, api, admin) = start();
    let (ada, ada_token) = customer(&api, "ada@example.com");
    let producer = kafka::platform_producer(&node, &[]);
    for order_id in ["o1", "o2", "o3"] {
        create_shipment(&producer, order_id, &ada, address("US"), "standard");
    }
    wait_for_reply(&node, "o3", "ShipmentCreated", 1);

    // By an admin: no delivery before dispatch; customers may not move shipments.
    let early = api.post("/api/shipping/orders/o1/deliver", Some(&admin), &json!({}));
    assert_eq!(early.status, 409, "{}", early.text);
    assert_eq!(early.error_code(), "invalid_state");
    assert_eq!(
        api.post(
            "/api/shipping/orders/o1/dispatch",
            Some(&ada_token),
            &json!({})
        )
        .status,
        403
    );
    let dispatched = api.send(api.request(
        Method::POST,
        "/api/shipping/orders/o1/dispatch",
        Some(&admin),
    ));
    assert_eq!(dispatched.expect(200).body["status"], "dispatched");
    let twice = api.post("/api/shipping/orders/o1/dispatch", Some(&admin), &json!({}));
    assert_eq!(twice.status, 409);
    let delivered = api
        .post(
            "/api/shipping/orders/o1/deliver",
            Some(&admin),
            &json!({"location": "Front porch", "note": "left with a neighbour"}),
        )
        .expect(200)
        .body;
    assert_eq!(delivered["status"], "delivered");
    let history: Vec<&str> = delivered["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["created", "dispatched", "delivered"]);
    assert_eq!(delivered["history"][2]["location"], "Front porch");
    assert_eq!(
        api.post(
            "/api/shipping/orders/missing/dispatch",
            Some(&admin),
            &json!({})
        )
        .status,
        404
    );

    // By the carrier, with the token from the data directory.
    let token = std::fs::read_to_string(node.data_dir().join("services/shipping/carrier-token"))
        .unwrap()
        .trim()
        .to_string();
    let tracking = shipment(&api, &admin, "o2")["tracking_number"]
        .as_str()
        .unwrap()
        .to_string();
    let update = |status: &str, location: &str| json!({"tracking_number": tracking, "status": status, "location": location, "note": "scan"});
    for wrong in [None, Some("not-the-token"), Some(&token[1..])] {
        let reply = carrier(&api, wrong, update("dispatched", "Depot"));
        assert_eq!(reply.status, 401, "{}", reply.text);
    }
    assert_eq!(shipment(&api, &admin, "o2")["status"], "created");
    assert_eq!(
        carrier(&api, Some(&token), update("in_transit", "Depot")).status,
        409,
        "in transit before dispatch"
    );
    for (status, location) in [
        ("dispatched", "Depot"),
        ("in_transit", "Memphis"),
        ("in_transit", "Chicago"),
        ("delivered", "Springfield"),
    ] {
        let reply = carrier(&api, Some(&token), update(status, location));
        assert_eq!(reply.status, 200, "{status}: {}", reply.text);
    }
    let view = shipment(&api, &ada_token, "o2");
    assert_eq!(view["status"], "delivered");
    let locations: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|entry| entry["location"].as_str().unwrap())
        .collect();
    assert_eq!(locations, ["Depot", "Memphis", "Chicago", "Springfield"]);
    assert_eq!(
        carrier(&api, Some(&token), update("delivered", "Again")).status,
        409
    );
    let unknown = json!({"tracking_number": "DC000000000000", "status": "delivered"});
    assert_eq!(carrier(&api, Some(&token), unknown).status, 404);
    assert_eq!(
        carrier(&api, Some(&token), update("lost", "Nowhere")).status,
        400
    );

    // Cancel: only before dispatch; afterwards nothing moves.
    let cancel = |order_id: &str| {
        let command = envelope(
            "CancelShipment",
            order_id,
            json!({"order_id": order_id, "reason": "customer_cancelled"}),
        );
        envelopes::send(&producer, COMMANDS, &command);
        kafka::flush_all_acked(&producer);
    };
    cancel("o3");
    wait_for_reply(&node, "o3", "ShipmentCancelled", 1);
    assert_eq!(shipment(&api, &admin, "o3")["status"], "cancelled");
    let after_cancel = api.post("/api/shipping/orders/o3/dispatch", Some(&admin), &json!({}));
    assert_eq!(after_cancel.status, 409);
    cancel("o1");
    let all = barrier(&node, &producer);
    assert!(of_order(&all, "o1", "ShipmentCancelled").is_empty());
    assert_eq!(shipment(&api, &admin, "o1")["status"], "delivered");

    // Every status change is on the topic, in order, for each order.
    let types = |order_id: &str| -> Vec<String> {
        all.iter()
            .filter(|event| event["aggregate_id"] == order_id)
            .map(|event| {
                let kind = event["type"].as_str().unwrap();
                match event["data"]["status"].as_str() {
                    Some(status) => format!("{kind}:{status}"),
                    None => kind.to_string(),
                }
            })
            .collect()
    };
    assert_eq!(
        types("o1"),
        [
            "ShipmentCreated",
            "ShipmentDispatched",
            "TrackingUpdated:dispatched",
            "ShipmentDelivered",
            "TrackingUpdated:delivered",
        ]
    );
    assert_eq!(
        types("o2"),
        [
            "ShipmentCreated",
            "ShipmentDispatched",
            "TrackingUpdated:dispatched",
            "TrackingUpdated:in_transit",
            "TrackingUpdated:in_transit",
            "ShipmentDelivered",
            "TrackingUpdated:delivered",
        ]
    );
    assert_eq!(types("o3"), ["ShipmentCreated", "ShipmentCancelled"]);
    let memphis = all
        .iter()
        .find(|event| event["data"]["location"] == "Memphis")
        .unwrap();
    assert_eq!(memphis["data"]["tracking_number"], tracking.as_str());
    assert_eq!(memphis["data"]["note"], "scan");
}
