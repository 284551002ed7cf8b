//! Helpers for order tests: a node set up for orders, products, customers, order bodies,
//! placing and polling orders, and finding the commands the saga sent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, events, product, wait_for_event};
use crate::{Node, wait_for};

pub const GOOD_CARD: &str = "4242424242424242";
pub const DECLINED_CARD: &str = "4000000000000002";

/// A node with the test admin, a generous rate limit, and this saga step timeout.
pub fn start(step_timeout_ms: &str) -> Node {
    Node::start_with_env(&[
        ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
        ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("COMMERCE_SAGA_STEP_TIMEOUT_MS", step_timeout_ms),
        ("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"),
    ])
}

/// An admin-created product (12.99 USD, 250 g); its id.
pub fn create_product(api: &Api, sku: &str) -> String {
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let created = api
        .post(
            "/api/catalog/products",
            Some(&admin),
            &product(sku, "Blue mug", "kitchen", 1299),
        )
        .expect(201);
    created.body["id"].as_str().unwrap().to_string()
}

/// A registered, signed-in customer: (user id, access token).
pub fn customer(api: &Api, email: &str) -> (String, String) {
    let user = api.register(email, "customer-password-1", "Ada Lovelace");
    let id = user["id"].as_str().unwrap().to_string();
    (id, api.token(email, "customer-password-1"))
}

/// A `POST /api/orders` body for one product.
pub fn order_body(product_id: &str, quantity: i64, card: &str) -> Value {
    json!({
        "items": [{"product_id": product_id, "quantity": quantity}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin",
            "postal_code": "10115", "country": "DE"},
        "payment": {"card_number": card},
    })
}

/// Places an order (202, pending); its id.
pub fn place(api: &Api, token: &str, body: &Value) -> String {
    let placed = api.post("/api/orders", Some(token), body).expect(202);
    assert_eq!(placed.body["status"], "pending");
    placed.body["id"].as_str().unwrap().to_string()
}

pub fn order(api: &Api, token: &str, id: &str) -> Value {
    api.get(&format!("/api/orders/{id}"), Some(token))
        .expect(200)
        .body
}

/// Polls the order until its status is `status`.
pub fn wait_for_status(api: &Api, token: &str, id: &str, status: &str) -> Value {
    wait_for(
        &format!("order {id} {status}"),
        Duration::from_secs(60),
        || {
            let order = order(api, token, id);
            (order["status"] == status).then_some(order)
        },
    )
}

/// Waits for the command or event `event_type` about `order_id` on `topic`; returns it.
pub fn wait_for_command(node: &Node, topic: &str, event_type: &str, order_id: &str) -> Value {
    let all = wait_for_event(node, topic, event_type, |event| {
        event["type"] == event_type && event["aggregate_id"] == order_id
    });
    all.into_iter()
        .find(|event| event["type"] == event_type && event["aggregate_id"] == order_id)
        .unwrap()
}

/// How many `event_type` about `order_id` are on `topic` now.
pub fn count_of(node: &Node, topic: &str, event_type: &str, order_id: &str) -> usize {
    events(node, topic)
        .iter()
        .filter(|event| event["type"] == event_type && event["aggregate_id"] == order_id)
        .count()
}

/// `name:status` of every step of an order's timeline.
pub fn step_names(order: &Value) -> Vec<String> {
    order["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            format!(
                "{}:{}",
                step["name"].as_str().unwrap(),
                step["status"].as_str().unwrap()
            )
        })
        .collect()
}
