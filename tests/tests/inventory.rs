//! Inventory with real clients: an admin sets stock over HTTP, the saga's commands are
//! produced with librdkafka onto `inventory-commands` (JSON envelopes keyed by order id), and
//! the answers are read from `inventory-events`. Never oversell, duplicates answered from
//! what was done, release/commit/expiry arithmetic, low-stock alerts, and the HTTP errors.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_tests::envelopes::{self, envelope, envelope_at, fresh_id, rfc3339};
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, events, wait_for_events};
use commerce_tests::kafka::{self, TestProducer};
use commerce_tests::{Node, TimeLimit, wait_for};
use serde_json::{Value, json};

const COMMANDS: &str = "inventory-commands";
const EVENTS: &str = "inventory-events";
const NEVER: &str = "2099-01-01T00:00:00.000Z";
const LONG_AGO: &str = "2000-01-01T00:00:00.000Z";

fn start() -> (Node, Api, String) {
    let mut env = ADMIN_ENV.to_vec();
    env.push(("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"));
    let node = Node::start_with_env(&env);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    (node, api, admin)
}

fn set_stock(api: &Api, admin: &str, product: &str, body: Value) -> Value {
    api.put(&format!("/api/inventory/{product}"), Some(admin), &body)
        .expect(200)
        .body
}

fn stock(api: &Api, product: &str) -> (u64, u64) {
    let body = api
        .get(&format!("/api/inventory/{product}"), None)
        .expect(200)
        .body;
    (
        body["available"].as_u64().unwrap(),
        body["reserved"].as_u64().unwrap(),
    )
}

fn command(producer: &TestProducer, event_type: &str, order_id: &str, data: Value) -> Value {
    let command = envelope(event_type, order_id, data);
    envelopes::send(producer, COMMANDS, &command);
    kafka::flush_all_acked(producer);
    command
}

fn reserve(producer: &TestProducer, order_id: &str, items: Value, expires_at: &str) -> Value {
    command(
        producer,
        "ReserveInventory",
        order_id,
        json!({"order_id": order_id, "items": items, "expires_at": expires_at}),
    )
}

fn of_order<'a>(all: &'a [Value], order_id: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|event| event["data"]["order_id"] == order_id)
        .collect()
}

fn count_of(all: &[Value], order_id: &str, event_type: &str) -> usize {
    of_order(all, order_id)
        .iter()
        .filter(|event| event["type"] == event_type)
        .count()
}

/// Waits until `order_id` has `n` events of `event_type`; returns every event.
fn wait_for_reply(node: &Node, order_id: &str, event_type: &str, n: usize) -> Vec<Value> {
    wait_for_events(
        node,
        EVENTS,
        &format!("{n} {event_type} for {order_id}"),
        |all| count_of(all, order_id, event_type) >= n,
    )
}

/// A command after everything sent so far (one partition: commands apply in order), whose
/// answer proves the earlier ones were applied: a reservation of an unknown product fails.
fn barrier(node: &Node, producer: &TestProducer) -> Vec<Value> {
    let order_id = format!("barrier-{}", fresh_id());
    reserve(
        producer,
        &order_id,
        json!([{"product_id": "no-such-product", "quantity": 1}]),
        NEVER,
    );
    wait_for_reply(node, &order_id, "InventoryReservationFailed", 1)
}

#[test]
fn thirty_orders_for_ten_units_reserve_exactly_ten() {
    let _limit = TimeLimit::new("thirty_orders_for_ten_units", Duration::from_secs(180));
    let (node, api, admin) = start();
    let set = set_stock(&api, &admin, "widget", json!({"available": 10}));
    assert_eq!(set["available"], 10);
    assert_eq!(set["reserved"], 0);
    assert_eq!(
        set["warehouses"],
        json!([{"name": "main", "available": 10, "reserved": 0}])
    );
    assert_eq!(set["low_stock_threshold"], 5);

    let producer = kafka::platform_producer(&node, &[]);
    let orders: Vec<String> = (0..30).map(|n| format!("order-{n}")).collect();
    let mut commands = Vec::new();
    for order_id in &orders {
        let command = envelope(
            "ReserveInventory",
            order_id,
            json!({"order_id": order_id, "items": [{"product_id": "widget", "quantity": 1}], "expires_at": NEVER}),
        );
        envelopes::send(&producer, COMMANDS, &command);
        commands.push(command);
    }
    kafka::flush_all_acked(&producer);

    let all = wait_for_events(&node, EVENTS, "an answer to each of 30 orders", |all| {
        orders
            .iter()
            .all(|order_id| !of_order(all, order_id).is_empty())
    });
    let reserved: Vec<&Value> = all
        .iter()
        .filter(|event| event["type"] == "InventoryReserved")
        .collect();
    let failed: Vec<&Value> = all
        .iter()
        .filter(|event| event["type"] == "InventoryReservationFailed")
        .collect();
    assert_eq!(reserved.len(), 10, "{reserved:#?}");
    assert_eq!(failed.len(), 20);
    for event in &failed {
        assert_eq!(event["data"]["reason"], "insufficient_stock");
        assert_eq!(event["data"]["product_id"], "widget");
    }
    // Replies are keyed by the order, and name the command they answer.
    for command in &commands {
        let order_id = command["aggregate_id"].as_str().unwrap();
        let reply = of_order(&all, order_id)[0];
        assert_eq!(reply["aggregate_id"], order_id);
        assert_eq!(reply["correlation_id"], command["correlation_id"]);
        assert_eq!(reply["causation_id"], command["id"]);
    }
    let first_reserved = reserved[0]["data"]["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        reserved[0]["data"]["items"],
        json!([{"product_id": "widget", "quantity": 1}])
    );
    assert_eq!(reserved[0]["data"]["expires_at"], NEVER);
    assert_eq!(stock(&api, "widget"), (0, 10));
    let levels: Vec<&Value> = all
        .iter()
        .filter(|event| event["type"] == "StockLevelChanged")
        .collect();
    assert_eq!(levels.len(), 11, "the set, then one per reservation");
    assert_eq!(
        levels.last().unwrap()["data"],
        json!({"product_id": "widget", "available": 0, "reserved": 10})
    );

    // A repeated ReserveInventory (a new envelope id) reserves nothing more and answers as
    // before; the very same envelope again is dropped by the inbox.
    reserve(
        &producer,
        &first_reserved,
        json!([{"product_id": "widget", "quantity": 1}]),
        NEVER,
    );
    let all = wait_for_reply(&node, &first_reserved, "InventoryReserved", 2);
    let answers: Vec<&Value> = of_order(&all, &first_reserved);
    assert_eq!(answers[0]["data"], answers[1]["data"]);
    envelopes::send(&producer, COMMANDS, &commands[0]);
    kafka::flush_all_acked(&producer);
    let all = barrier(&node, &producer);
    assert_eq!(count_of(&all, &first_reserved, "InventoryReserved"), 2);
    assert_eq!(stock(&api, "widget"), (0, 10));
    let reservation = api
        .get(
            &format!("/api/inventory/reservations/{first_reserved}"),
            Some(&admin),
        )
        .expect(200)
        .body;
    assert_eq!(reservation["status"], "held");
    assert_eq!(
        reservation["allocations"],
        json!([{"product_id": "widget", "warehouse": "main", "quantity": 1}])
    );
    // A failed order's repeat fails again, without taking the unit a release frees.
    let failed_order = failed[0]["data"]["order_id"].as_str().unwrap().to_string();
    command(
        &producer,
        "ReleaseInventory",
        &first_reserved,
        json!({"order_id": first_reserved, "reason": "payment_failed"}),
    );
    wait_for_reply(&node, &first_reserved, "InventoryReleased", 1);
    assert_eq!(stock(&api, "widget"), (1, 9));
    reserve(
        &producer,
        &failed_order,
        json!([{"product_id": "widget", "quantity": 1}]),
        NEVER,
    );
    wait_for_reply(&node, &failed_order, "InventoryReservationFailed", 2);
    assert_eq!(stock(&api, "widget"), (1, 9));
}

#[test]
fn release_commit_and_expiry_move_the_numbers() {
    let _limit = TimeLimit::new("release_commit_and_expiry", Duration::from_secs(180));
    let (node, api, admin) = start();
    set_stock(&api, &admin, "lamp", json!({"available": 5}));
    let body = set_stock(
        &api,
        &admin,
        "lamp",
        json!({"available": 3, "warehouse": "east"}),
    );
    assert_eq!(body["available"], 8);
    assert_eq!(
        body["warehouses"],
        json!([
            {"name": "east", "available": 3, "reserved": 0},
            {"name": "main", "available": 5, "reserved": 0},
        ])
    );
    let producer = kafka::platform_producer(&node, &[]);
    let lamps = |n: u64| json!([{"product_id": "lamp", "quantity": n}]);

    // Warehouses in name order: east first.
    reserve(&producer, "A", lamps(2), NEVER);
    wait_for_reply(&node, "A", "InventoryReserved", 1);
    reserve(&producer, "B", lamps(3), NEVER);
    wait_for_reply(&node, "B", "InventoryReserved", 1);
    assert_eq!(stock(&api, "lamp"), (3, 5));
    let b = api
        .get("/api/inventory/reservations/B", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(
        b["allocations"],
        json!([
            {"product_id": "lamp", "warehouse": "east", "quantity": 1},
            {"product_id": "lamp", "warehouse": "main", "quantity": 2},
        ])
    );

    // Release gives units back where they came from; a repeat releases nothing more.
    command(
        &producer,
        "ReleaseInventory",
        "A",
        json!({"order_id": "A", "reason": "payment_failed"}),
    );
    let all = wait_for_reply(&node, "A", "InventoryReleased", 1);
    let released = of_order(&all, "A")
        .into_iter()
        .find(|event| event["type"] == "InventoryReleased")
        .unwrap();
    assert_eq!(
        released["data"],
        json!({"order_id": "A", "reason": "payment_failed", "items": [{"product_id": "lamp", "quantity": 2}]})
    );
    assert_eq!(stock(&api, "lamp"), (5, 3));
    command(
        &producer,
        "ReleaseInventory",
        "A",
        json!({"order_id": "A", "reason": "payment_failed"}),
    );
    let all = barrier(&node, &producer);
    assert_eq!(count_of(&all, "A", "InventoryReleased"), 1);
    assert_eq!(stock(&api, "lamp"), (5, 3));

    // Commit: the reserved units leave stock, once.
    command(&producer, "CommitInventory", "B", json!({"order_id": "B"}));
    wait_for_reply(&node, "B", "InventoryCommitted", 1);
    assert_eq!(stock(&api, "lamp"), (5, 0));
    command(&producer, "CommitInventory", "B", json!({"order_id": "B"}));
    let all = barrier(&node, &producer);
    assert_eq!(count_of(&all, "B", "InventoryCommitted"), 1);
    assert_eq!(stock(&api, "lamp"), (5, 0));
    let b = api
        .get("/api/inventory/reservations/B", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(b["status"], "committed");

    // A reservation past its expiry is released by the worker.
    reserve(&producer, "C", lamps(1), LONG_AGO);
    let all = wait_for_reply(&node, "C", "InventoryReleased", 1);
    let expired = of_order(&all, "C")
        .into_iter()
        .find(|event| event["type"] == "InventoryReleased")
        .unwrap();
    assert_eq!(expired["data"]["reason"], "expired");
    assert_eq!(count_of(&all, "C", "InventoryReserved"), 1);
    assert_eq!(stock(&api, "lamp"), (5, 0));

    // A confirmed reservation does not expire.
    let soon_ms = now_ms() + 2_000;
    reserve(&producer, "D", lamps(1), &rfc3339(soon_ms));
    command(
        &producer,
        "ConfirmReservation",
        "D",
        json!({"order_id": "D"}),
    );
    wait_for_reply(&node, "D", "InventoryReserved", 1);
    wait_for("D's expiry to pass", Duration::from_secs(10), || {
        (now_ms() > soon_ms + 100).then_some(())
    });
    // E is reserved after D's expiry passed, so the sweep that releases E also saw D due.
    reserve(&producer, "E", lamps(1), LONG_AGO);
    let all = wait_for_reply(&node, "E", "InventoryReleased", 1);
    assert_eq!(count_of(&all, "D", "InventoryReleased"), 0);
    let d = api
        .get("/api/inventory/reservations/D", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(d["status"], "confirmed");
    assert_eq!(stock(&api, "lamp"), (4, 1));
    command(&producer, "CommitInventory", "D", json!({"order_id": "D"}));
    wait_for_reply(&node, "D", "InventoryCommitted", 1);
    assert_eq!(stock(&api, "lamp"), (4, 0));

    // Low stock (threshold 5): one alert per crossing below it.
    let all = events(&node, EVENTS);
    let alerts: Vec<u64> = all
        .iter()
        .filter(|event| event["type"] == "LowStockAlert")
        .map(|event| {
            assert_eq!(event["data"]["threshold"], 5);
            assert_eq!(event["aggregate_id"], "lamp");
            event["data"]["available"].as_u64().unwrap()
        })
        .collect();
    // 8 -> 6 -> 3 (alert) -> 5 -> 4 (C, alert) -> 5 (expired) -> 4 (D, alert) -> 3 (E) -> 4.
    assert_eq!(alerts, [3, 4, 4]);
    let low = api
        .get("/api/inventory/low-stock", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(low.as_array().unwrap().len(), 1);
    assert_eq!(low[0]["product_id"], "lamp");
}

#[test]
fn http_errors_change_nothing() {
    let _limit = TimeLimit::new("inventory_http_errors", Duration::from_secs(120));
    let (node, api, admin) = start();
    api.register("cust@example.com", "customer password", "Cust");
    let customer = api.token("cust@example.com", "customer password");
    let body = json!({"available": 4});

    assert_eq!(api.put("/api/inventory/p1", None, &body).status, 401);
    let forbidden = api.put("/api/inventory/p1", Some(&customer), &body);
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.error_code(), "forbidden");
    let negative = api.put("/api/inventory/p1", Some(&admin), &json!({"available": -1}));
    assert_eq!(negative.status, 400, "{}", negative.text);
    assert_eq!(negative.body["error"]["field"], "available");
    for bad in [
        json!({"available": 1, "warehouse": "no spaces"}),
        json!({"available": 1, "low_stock_threshold": -2}),
        json!({"available": "many"}),
        json!({"available": 1, "colour": "red"}),
    ] {
        let reply = api.put("/api/inventory/p1", Some(&admin), &bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
    }
    let missing = api.get("/api/inventory/p1", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "not_found");

    // Anyone reads stock; only admins adjust it, and never below zero.
    set_stock(&api, &admin, "p1", body);
    assert_eq!(stock(&api, "p1"), (4, 0));
    let adjust = json!({"delta": 3, "reason": "delivery"});
    assert_eq!(
        api.post("/api/inventory/p1/adjust", Some(&customer), &adjust)
            .status,
        403
    );
    let adjusted = api
        .post("/api/inventory/p1/adjust", Some(&admin), &adjust)
        .expect(200)
        .body;
    assert_eq!(adjusted["available"], 7);
    let too_much = api.post(
        "/api/inventory/p1/adjust",
        Some(&admin),
        &json!({"delta": -8, "reason": "count"}),
    );
    assert_eq!(too_much.status, 409, "{}", too_much.text);
    assert_eq!(too_much.error_code(), "insufficient_stock");
    assert_eq!(
        api.post(
            "/api/inventory/p1/adjust",
            Some(&admin),
            &json!({"delta": -1, "reason": ""})
        )
        .status,
        400
    );
    assert_eq!(
        api.post("/api/inventory/ghost/adjust", Some(&admin), &adjust)
            .status,
        404
    );
    assert_eq!(stock(&api, "p1"), (7, 0));

    // Admin-only reads.
    assert_eq!(
        api.get("/api/inventory/reservations/o1", Some(&customer))
            .status,
        403
    );
    assert_eq!(api.get("/api/inventory/low-stock", None).status, 401);
    assert_eq!(
        api.get("/api/inventory/reservations/o1", Some(&admin))
            .status,
        404
    );

    // Only the accepted writes reached the topic: the set (4, below the default threshold
    // of 5, so also an alert) and the +3.
    let is_level = |event: &Value| event["type"] == "StockLevelChanged";
    let all = wait_for_events(&node, EVENTS, "two stock changes", |all| {
        all.iter().filter(|event| is_level(event)).count() >= 2
    });
    let levels: Vec<u64> = all
        .iter()
        .filter(|event| is_level(event))
        .map(|event| event["data"]["available"].as_u64().unwrap())
        .collect();
    assert_eq!(levels, [4, 7]);
    let types: Vec<&str> = all
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["StockLevelChanged", "LowStockAlert", "StockLevelChanged"]
    );
    // A reservation with a bad quantity is not a command inventory can use: dead-lettered.
    let producer = kafka::platform_producer(&node, &[]);
    let poison = envelope_at(
        &fresh_id(),
        "ReserveInventory",
        "bad",
        LONG_AGO,
        json!({"order_id": "bad", "items": [{"product_id": "p1", "quantity": 0}], "expires_at": NEVER}),
    );
    envelopes::send(&producer, COMMANDS, &poison);
    kafka::flush_all_acked(&producer);
    wait_for(
        "the poison command in the DLQ",
        Duration::from_secs(60),
        || {
            let partitions = kafka::partitions_of(&node.bootstrap(), "inventory-commands.dlq")?;
            let records = kafka::read_all(
                &node.bootstrap(),
                "inventory-commands.dlq",
                &partitions,
                Duration::from_secs(30),
            );
            (!records.is_empty()).then_some(())
        },
    );
    assert_eq!(stock(&api, "p1"), (7, 0));
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
