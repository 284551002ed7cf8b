//! The order flow end to end through the gateway on one real node, with every participant
//! (inventory, payment, shipping, notification) answering for real: issue 6's acceptance
//! tests. Each asserts what breaks if the flow breaks: final states, stock, payments,
//! shipments, notifications, and that nothing leaks across a kill -9.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, event_headers, events};
use commerce_tests::kafka::{flush_all_acked, platform_producer, send};
use commerce_tests::orders::{
    DECLINED_CARD, GOOD_CARD, count_of, create_product, customer, order, order_body, place, start,
    step_names, wait_for_status,
};
use commerce_tests::{TimeLimit, wait_for};
use serde_json::{Value, json};

fn set_stock(api: &Api, admin: &str, product_id: &str, available: u64) {
    api.put(
        &format!("/api/inventory/{product_id}"),
        Some(admin),
        &json!({"available": available}),
    )
    .expect(200);
}

/// (available, reserved) of a product.
fn stock(api: &Api, product_id: &str) -> (u64, u64) {
    let stock = api
        .get(&format!("/api/inventory/{product_id}"), None)
        .expect(200)
        .body;
    (
        stock["available"].as_u64().unwrap(),
        stock["reserved"].as_u64().unwrap(),
    )
}

fn wait_for_stock(api: &Api, product_id: &str, expected: (u64, u64)) {
    wait_for(
        &format!("stock {expected:?} of {product_id}"),
        Duration::from_secs(60),
        || (stock(api, product_id) == expected).then_some(()),
    );
}

/// Every order (admin view), all pages.
fn all_orders(api: &Api, admin: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let body = api
            .get(
                &format!("/api/orders?all=true&page={page}&page_size=100"),
                Some(admin),
            )
            .expect(200)
            .body;
        let items = body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        all.extend(items);
    }
    all
}

fn is_final(order: &Value) -> bool {
    order["status"] == "confirmed" || order["status"] == "cancelled"
}

#[test]
fn a_good_card_confirms_with_stock_payment_shipment_and_notifications() {
    let _limit = TimeLimit::new("a_good_card_confirms", Duration::from_secs(240));
    let node = start("30000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-1");
    set_stock(&api, &admin, &product_id, 5);
    let (customer_id, token) = customer(&api, "ada@example.com");

    let id = place(&api, &token, &order_body(&product_id, 2, GOOD_CARD));
    let confirmed = wait_for_status(&api, &token, &id, "confirmed");
    assert_eq!(confirmed["customer_id"], customer_id.as_str());
    let tracking = confirmed["tracking_number"].as_str().unwrap().to_string();
    assert!(!tracking.is_empty());
    let steps = step_names(&confirmed);
    let position = |step: &str| {
        steps
            .iter()
            .position(|s| s == step)
            .unwrap_or_else(|| panic!("no {step} in {steps:?}"))
    };
    assert!(position("reserve_inventory:succeeded") < position("process_payment:requested"));
    assert!(position("process_payment:succeeded") < position("create_shipment:requested"));
    assert!(position("create_shipment:succeeded") > position("process_payment:succeeded"));
    for step in confirmed["steps"].as_array().unwrap() {
        assert!(step["at"].as_str().unwrap().ends_with('Z'), "{step}");
    }

    // Reserved (committed only on dispatch): 2 fewer available.
    wait_for_stock(&api, &product_id, (3, 2));
    let payment = api
        .get(&format!("/api/payments/orders/{id}"), Some(&token))
        .expect(200)
        .body;
    assert_eq!(payment["status"], "captured", "{payment}");
    assert_eq!(
        payment["amount"],
        json!({"amount": 2598, "currency": "USD"})
    );
    let shipment = api
        .get(&format!("/api/shipping/orders/{id}"), Some(&token))
        .expect(200)
        .body;
    assert_eq!(shipment["tracking_number"], tracking.as_str(), "{shipment}");
    let notifications = wait_for(
        "the customer's notifications",
        Duration::from_secs(60),
        || {
            let body = api.get("/api/notifications", Some(&token)).expect(200).body;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= 2).then_some(items)
        },
    );
    assert!(!notifications.is_empty());
}

#[test]
fn a_declined_card_cancels_releases_the_stock_and_ships_nothing() {
    let _limit = TimeLimit::new("a_declined_card_cancels", Duration::from_secs(240));
    let node = start("30000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-2");
    set_stock(&api, &admin, &product_id, 5);
    let (_, token) = customer(&api, "bob@example.com");

    let id = place(&api, &token, &order_body(&product_id, 2, DECLINED_CARD));
    let cancelled = wait_for_status(&api, &token, &id, "cancelled");
    assert_eq!(cancelled["cancel_reason"], "payment_failed");
    assert!(step_names(&cancelled).contains(&"process_payment:failed".to_string()));
    wait_for_stock(&api, &product_id, (5, 0));
    assert_eq!(
        api.get(&format!("/api/shipping/orders/{id}"), Some(&token))
            .status,
        404
    );
    let payment = api
        .get(&format!("/api/payments/orders/{id}"), Some(&token))
        .expect(200)
        .body;
    assert_eq!(payment["status"], "failed", "{payment}");
}

#[test]
fn two_hundred_concurrent_orders_for_ten_in_stock_confirm_exactly_ten() {
    let _limit = TimeLimit::new("two_hundred_concurrent_orders", Duration::from_secs(600));
    let node = start("120000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-3");
    set_stock(&api, &admin, &product_id, 10);
    let tokens: Vec<String> = (0..4)
        .map(|n| customer(&api, &format!("buyer{n}@example.com")).1)
        .collect();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let url = api.url("/api/orders");
    let body = order_body(&product_id, 1, GOOD_CARD);
    let statuses: Vec<u16> = runtime.block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let request = client
                    .post(&url)
                    .bearer_auth(&tokens[n % tokens.len()])
                    .json(&body);
                tokio::spawn(async move {
                    request
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        statuses
    });
    assert!(statuses.iter().all(|status| *status == 202), "{statuses:?}");

    let orders = wait_for("200 final orders", Duration::from_secs(300), || {
        let orders = all_orders(&api, &admin);
        assert!(stock(&api, &product_id).0 <= 10);
        (orders.len() == 200 && orders.iter().all(is_final)).then_some(orders)
    });
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    let cancelled: Vec<&Value> = orders
        .iter()
        .filter(|o| o["status"] == "cancelled")
        .collect();
    assert_eq!(confirmed, 10);
    assert_eq!(cancelled.len(), 190);
    assert!(
        cancelled
            .iter()
            .all(|o| o["cancel_reason"] == "insufficient_stock")
    );
    // Confirmed orders keep their units reserved until the shipment is dispatched.
    wait_for_stock(&api, &product_id, (0, 10));
}

#[test]
fn refused_orders_leave_stock_orders_and_events_untouched() {
    let _limit = TimeLimit::new("refused_orders_leave_nothing", Duration::from_secs(240));
    let node = start("30000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-4");
    set_stock(&api, &admin, &product_id, 7);
    let (_, token) = customer(&api, "eve@example.com");

    let mut bad_address = order_body(&product_id, 1, GOOD_CARD);
    bad_address["shipping_address"]["postal_code"] = json!("");
    for (body, status) in [
        (order_body("no-such-product", 1, GOOD_CARD), 404),
        (order_body(&product_id, 0, GOOD_CARD), 400),
        (bad_address, 400),
        (order_body(&product_id, 1, "4242424242424243"), 400),
    ] {
        let answer = api.post("/api/orders", Some(&token), &body);
        assert_eq!(answer.status, status, "{}", answer.text);
        assert!(answer.body["error"]["code"].is_string(), "{}", answer.text);
    }
    // A good order afterwards proves the events below were readable at all.
    let id = place(&api, &token, &order_body(&product_id, 1, GOOD_CARD));
    wait_for_status(&api, &token, &id, "confirmed");
    let listed = api.get("/api/orders", Some(&token)).expect(200).body;
    assert_eq!(listed["total"], 1, "{listed}");
    let created: Vec<Value> = events(&node, "order-events")
        .into_iter()
        .filter(|event| event["type"] == "OrderCreated")
        .collect();
    assert_eq!(created.len(), 1);
    wait_for_stock(&api, &product_id, (6, 1));
}

#[test]
fn every_order_reaches_a_final_state_after_kill_9_and_stock_adds_up() {
    let _limit = TimeLimit::new("orders_survive_kill_9", Duration::from_secs(600));
    let mut node = start("10000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-5");
    const INITIAL: u64 = 30;
    set_stock(&api, &admin, &product_id, INITIAL);
    let (_, token) = customer(&api, "kim@example.com");

    let mut ids = Vec::new();
    for n in 0..20 {
        let card = if n % 4 == 0 { DECLINED_CARD } else { GOOD_CARD };
        ids.push(place(
            &api,
            &token,
            &order_body(&product_id, 1 + (n % 3), card),
        ));
    }
    node.kill();
    node.restart();

    let orders = wait_for("every order final", Duration::from_secs(300), || {
        let orders: Vec<Value> = ids.iter().map(|id| order(&api, &token, id)).collect();
        orders.iter().all(is_final).then_some(orders)
    });
    let confirmed_units: u64 = orders
        .iter()
        .filter(|o| o["status"] == "confirmed")
        .map(|o| o["items"][0]["quantity"].as_u64().unwrap())
        .sum();
    assert!(orders.iter().any(|o| o["status"] == "confirmed"));
    assert!(orders.iter().any(|o| o["status"] == "cancelled"));
    // Nothing dispatched: confirmed units are exactly the reserved ones, and every cancelled
    // order's reservation is gone.
    wait_for_stock(
        &api,
        &product_id,
        (INITIAL - confirmed_units, confirmed_units),
    );
    for order in orders.iter().filter(|o| o["status"] == "cancelled") {
        let id = order["id"].as_str().unwrap();
        let reservation = api.get(&format!("/api/inventory/reservations/{id}"), Some(&admin));
        if reservation.status == 200 {
            let status = reservation.body["status"].as_str().unwrap_or("");
            assert!(
                status == "released" || status == "failed",
                "a cancelled order holds a reservation: {}",
                reservation.text
            );
        }
    }
}

#[test]
fn a_customer_cancel_of_a_confirmed_order_refunds_and_releases() {
    let _limit = TimeLimit::new("customer_cancel_refunds", Duration::from_secs(240));
    let node = start("30000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-6");
    set_stock(&api, &admin, &product_id, 4);
    let (_, token) = customer(&api, "cat@example.com");

    let id = place(&api, &token, &order_body(&product_id, 3, GOOD_CARD));
    wait_for_status(&api, &token, &id, "confirmed");
    wait_for_stock(&api, &product_id, (1, 3));
    let cancelled = api
        .post(
            &format!("/api/orders/{id}/cancel"),
            Some(&token),
            &json!({}),
        )
        .expect(200)
        .body;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "customer_cancelled");
    wait_for_stock(&api, &product_id, (4, 0));
    let payment = wait_for("the refund", Duration::from_secs(60), || {
        let payment = api
            .get(&format!("/api/payments/orders/{id}"), Some(&token))
            .expect(200)
            .body;
        (!payment["refunds"].as_array().unwrap().is_empty()).then_some(payment)
    });
    assert_eq!(payment["refunds"][0]["amount"]["amount"], 3 * 1299);
    let shipment = api
        .get(&format!("/api/shipping/orders/{id}"), Some(&token))
        .expect(200)
        .body;
    assert_eq!(shipment["status"], "cancelled", "{shipment}");
    // Once cancelled, it cannot be cancelled again.
    let again = api.post(
        &format!("/api/orders/{id}/cancel"),
        Some(&token),
        &json!({}),
    );
    assert_eq!(again.status, 409);
}

#[test]
fn a_poison_reply_is_dead_lettered_and_later_orders_still_complete() {
    let _limit = TimeLimit::new("a_poison_reply_is_dead_lettered", Duration::from_secs(240));
    let node = start("30000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-7");
    set_stock(&api, &admin, &product_id, 3);
    let (_, token) = customer(&api, "dan@example.com");

    // An InventoryReserved that names no order: the saga cannot match it to anything.
    let poison = json!({
        "id": "poison-1", "type": "InventoryReserved", "aggregate_id": "poison",
        "occurred_at": "2026-01-01T00:00:00.000Z", "correlation_id": "poison",
        "causation_id": null, "version": 1, "data": {"items": []},
    });
    let kafka = platform_producer(&node, &[]);
    send(
        &kafka,
        "inventory-events",
        Some("poison"),
        &poison.to_string(),
        None,
        None,
    );
    flush_all_acked(&kafka);
    wait_for(
        "the order group's dead letter",
        Duration::from_secs(60),
        || {
            commerce_tests::kafka::partitions_of(&node.bootstrap(), "inventory-events.dlq")?;
            event_headers(&node, "inventory-events.dlq")
                .into_iter()
                .find(|(key, headers)| {
                    key == "poison"
                        && headers.get("dlq-consumer-group").map(String::as_str) == Some("order")
                })
        },
    );

    let id = place(&api, &token, &order_body(&product_id, 1, GOOD_CARD));
    wait_for_status(&api, &token, &id, "confirmed");
    wait_for_stock(&api, &product_id, (2, 1));
}

/// The saga's clock for real: poison commands queued ahead of the order's ReserveInventory
/// keep inventory busy retrying them (about 0.7 s each before the dead letter), so the
/// reservation step passes its 2 s timeout and the order is cancelled; the reservation that
/// inventory makes afterwards is a late success the saga releases.
#[test]
fn a_step_that_does_not_answer_in_time_cancels_and_a_late_reservation_is_released() {
    let _limit = TimeLimit::new(
        "a_step_that_does_not_answer_in_time",
        Duration::from_secs(240),
    );
    let node = start("2000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FLOW-8");
    set_stock(&api, &admin, &product_id, 5);
    let (_, token) = customer(&api, "eve@example.com");

    let kafka = platform_producer(&node, &[]);
    for n in 0..10 {
        // One partition (the node's default), so these stand in line before the order.
        send(
            &kafka,
            "inventory-commands",
            Some(&format!("stall-{n}")),
            "not an envelope",
            None,
            None,
        );
    }
    flush_all_acked(&kafka);
    let id = place(&api, &token, &order_body(&product_id, 2, GOOD_CARD));
    let cancelled = wait_for_status(&api, &token, &id, "cancelled");
    assert_eq!(
        cancelled["cancel_reason"], "timeout:reserve_inventory",
        "{cancelled}"
    );
    assert!(
        step_names(&cancelled).contains(&"reserve_inventory:timed_out".to_string()),
        "{cancelled}"
    );
    // Inventory reserves once it reaches the command (after the poison is dead-lettered),
    // and the saga's release undoes that hold: both are on inventory-events.
    wait_for(
        "the late reservation to be made and released",
        Duration::from_secs(60),
        || {
            (count_of(&node, "inventory-events", "InventoryReserved", &id) == 1
                && count_of(&node, "inventory-events", "InventoryReleased", &id) == 1)
                .then_some(())
        },
    );
    wait_for_stock(&api, &product_id, (5, 0));
    assert_eq!(order(&api, &token, &id)["status"], "cancelled");
}
