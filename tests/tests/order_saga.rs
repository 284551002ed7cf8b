//! The order saga's side of the contract through the gateway: the commands it sends (read
//! from inventory-, payment- and shipping-commands with rdkafka) and what it does with
//! replies the real participants send, plus replies the test injects on their event topics —
//! duplicates, replays, and successes that come after the order was cancelled — and the
//! refusal of bad input.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commerce_tests::TimeLimit;
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, events};
use commerce_tests::kafka::{TestProducer, flush_all_acked, platform_producer, send};
use commerce_tests::orders::{
    GOOD_CARD, count_of, create_product, customer, order, order_body, place, start, step_names,
    wait_for_command, wait_for_status,
};
use serde_json::{Value, json};

fn set_stock(api: &Api, product_id: &str, available: u64) {
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    api.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": available}),
    )
    .expect(200);
}

/// An admin's shipment status change (`dispatch` or `deliver`).
fn shipment_status(api: &Api, order_id: &str, change: &str) {
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    api.post(
        &format!("/api/shipping/orders/{order_id}/{change}"),
        Some(&admin),
        &json!({}),
    )
    .expect(200);
}

static NEXT_EVENT: AtomicU64 = AtomicU64::new(1);

/// A participant's reply envelope about `order_id`.
fn reply(event_type: &str, order_id: &str, data: Value) -> Value {
    let n = NEXT_EVENT.fetch_add(1, Ordering::Relaxed);
    json!({
        "id": format!("test-reply-{n}-{order_id}"),
        "type": event_type,
        "aggregate_id": order_id,
        "occurred_at": "2026-01-01T00:00:00.000Z",
        "correlation_id": "test",
        "causation_id": null,
        "version": 1,
        "data": data,
    })
}

fn publish(producer: &TestProducer, topic: &str, envelope: &Value) {
    let key = envelope["aggregate_id"].as_str().unwrap();
    send(
        producer,
        topic,
        Some(key),
        &envelope.to_string(),
        None,
        None,
    );
    flush_all_acked(producer);
}

#[test]
fn saga_sends_the_contract_commands_and_applies_each_reply_once() {
    let _limit = TimeLimit::new("saga_sends_the_contract_commands", Duration::from_secs(180));
    let node = start("60000");
    let api = Api::new(&node);
    let product_id = create_product(&api, "SAGA-1");
    set_stock(&api, &product_id, 10);
    let (customer_id, token) = customer(&api, "ada@example.com");
    let kafka = platform_producer(&node, &[]);

    let id = place(&api, &token, &order_body(&product_id, 2, GOOD_CARD));
    let pending = order(&api, &token, &id);
    assert_eq!(pending["total"], json!({"amount": 2598, "currency": "USD"}));
    assert_eq!(pending["items"][0]["unit_price"]["amount"], 1299);
    assert_eq!(pending["items"][0]["sku"], "SAGA-1");
    assert_eq!(pending["customer_id"], customer_id.as_str());
    let confirmed = wait_for_status(&api, &token, &id, "confirmed");
    let tracking = confirmed["tracking_number"].as_str().unwrap().to_string();
    assert_eq!(
        step_names(&confirmed),
        [
            "reserve_inventory:requested",
            "reserve_inventory:succeeded",
            "process_payment:requested",
            "process_payment:succeeded",
            "create_shipment:requested",
            "create_shipment:succeeded",
            "confirm_reservation:requested",
        ]
    );
    for step in confirmed["steps"].as_array().unwrap() {
        assert!(step["at"].as_str().unwrap().ends_with('Z'), "{step}");
    }

    let created = wait_for_command(&node, "order-events", "OrderCreated", &id);
    assert_eq!(created["data"]["total"]["amount"], 2598);
    assert_eq!(created["data"]["lines"][0]["weight_grams"], 250);
    assert_eq!(created["data"]["shipping_address"]["country"], "DE");
    let reserve = wait_for_command(&node, "inventory-commands", "ReserveInventory", &id);
    assert_eq!(
        reserve["data"]["items"],
        json!([{"product_id": product_id, "quantity": 2}])
    );
    assert!(
        reserve["data"]["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(reserve["correlation_id"], created["correlation_id"]);
    let pay = wait_for_command(&node, "payment-commands", "ProcessPayment", &id);
    assert_eq!(
        pay["data"]["amount"],
        json!({"amount": 2598, "currency": "USD"})
    );
    // The card travels as the provider's token and its last four digits, never the number.
    assert!(pay["data"].get("card_number").is_none());
    assert!(
        pay["data"]["payment_token"]
            .as_str()
            .unwrap()
            .starts_with("tok_")
    );
    assert_eq!(pay["data"]["card_last4"], "4242");
    assert!(!pay.to_string().contains(GOOD_CARD));
    assert_eq!(pay["data"]["customer_id"], customer_id.as_str());
    assert_eq!(pay["data"]["idempotency_key"], format!("order:{id}"));
    assert_eq!(pay["correlation_id"], created["correlation_id"]);
    let ship = wait_for_command(&node, "shipping-commands", "CreateShipment", &id);
    assert_eq!(ship["data"]["address"]["city"], "Berlin");
    assert_eq!(ship["data"]["method"], "standard");
    assert_eq!(
        ship["data"]["items"],
        json!([{"product_id": product_id, "quantity": 2, "weight_grams": 250}])
    );
    wait_for_command(&node, "inventory-commands", "ConfirmReservation", &id);
    let confirmed_event = wait_for_command(&node, "order-events", "OrderConfirmed", &id);
    assert_eq!(
        confirmed_event["data"]["tracking_number"],
        tracking.as_str()
    );
    assert_eq!(confirmed_event["correlation_id"], created["correlation_id"]);

    // The shipment's reply redelivered as is, and replayed under a new event id: the order
    // applies neither again.
    let shipment_created = wait_for_command(&node, "shipping-events", "ShipmentCreated", &id);
    publish(&kafka, "shipping-events", &shipment_created);
    let mut replayed = shipment_created.clone();
    replayed["id"] = json!(format!("replayed-{id}"));
    publish(&kafka, "shipping-events", &replayed);

    shipment_status(&api, &id, "dispatch");
    wait_for_command(&node, "inventory-commands", "CommitInventory", &id);
    let cancel = api.post(
        &format!("/api/orders/{id}/cancel"),
        Some(&token),
        &json!({}),
    );
    assert_eq!(cancel.status, 409, "{}", cancel.text);
    assert_eq!(cancel.error_code(), "invalid_state");
    shipment_status(&api, &id, "deliver");
    let completed = wait_for_status(&api, &token, &id, "completed");
    wait_for_command(&node, "order-events", "OrderCompleted", &id);
    let steps = step_names(&completed);
    assert_eq!(
        steps
            .iter()
            .filter(|s| *s == "create_shipment:succeeded")
            .count(),
        1,
        "{steps:?}"
    );
    assert!(
        steps.contains(&"dispatch_shipment:succeeded".to_string()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"deliver_shipment:succeeded".to_string()),
        "{steps:?}"
    );
    assert_eq!(count_of(&node, "order-events", "OrderConfirmed", &id), 1);
    assert_eq!(
        count_of(&node, "inventory-commands", "ConfirmReservation", &id),
        1
    );
}

#[test]
fn a_success_after_the_order_was_cancelled_is_undone_once() {
    let _limit = TimeLimit::new("a_late_success_is_undone", Duration::from_secs(180));
    let node = start("60000");
    let api = Api::new(&node);
    // No stock: inventory refuses the reservation and the order ends cancelled.
    let product_id = create_product(&api, "SAGA-2");
    set_stock(&api, &product_id, 0);
    let (customer_id, token) = customer(&api, "bob@example.com");
    let kafka = platform_producer(&node, &[]);

    let id = place(&api, &token, &order_body(&product_id, 1, GOOD_CARD));
    let cancelled = wait_for_status(&api, &token, &id, "cancelled");
    let reason = cancelled["cancel_reason"].as_str().unwrap().to_string();
    assert_eq!(reason, "insufficient_stock");
    assert!(step_names(&cancelled).contains(&"reserve_inventory:failed".to_string()));
    let event = wait_for_command(&node, "order-events", "OrderCancelled", &id);
    assert_eq!(event["data"]["reason"], "insufficient_stock");
    assert_eq!(
        count_of(&node, "inventory-commands", "ReleaseInventory", &id),
        0
    );
    assert_eq!(
        count_of(&node, "payment-commands", "ProcessPayment", &id),
        0
    );

    // Successes that come after all (a reservation, a payment, a shipment): each undone once.
    let reserved = reply(
        "InventoryReserved",
        &id,
        json!({"order_id": id, "items": [{"product_id": product_id, "quantity": 1}],
               "expires_at": "2030-01-01T00:00:00.000Z"}),
    );
    publish(&kafka, "inventory-events", &reserved);
    let release = wait_for_command(&node, "inventory-commands", "ReleaseInventory", &id);
    assert_eq!(release["data"]["reason"], "insufficient_stock");
    publish(
        &kafka,
        "payment-events",
        &reply(
            "PaymentProcessed",
            &id,
            json!({"payment_id": "pay-late", "order_id": id, "customer_id": customer_id,
                   "amount": {"amount": 1299, "currency": "USD"}, "card_last4": "4242"}),
        ),
    );
    let refund = wait_for_command(&node, "payment-commands", "RefundPayment", &id);
    assert_eq!(refund["data"]["idempotency_key"], format!("refund:{id}"));
    publish(
        &kafka,
        "shipping-events",
        &reply(
            "ShipmentCreated",
            &id,
            json!({"shipment_id": "ship-late", "order_id": id, "customer_id": customer_id,
                   "tracking_number": "TRK-LATE", "cost": {"amount": 500, "currency": "USD"},
                   "method": "standard"}),
        ),
    );
    wait_for_command(&node, "shipping-commands", "CancelShipment", &id);
    let mut again = reserved.clone();
    again["id"] = json!(format!("again-{id}"));
    publish(&kafka, "inventory-events", &again);
    // A later order's whole flow, after the replayed reservation was consumed.
    set_stock(&api, &product_id, 1);
    let later = place(&api, &token, &order_body(&product_id, 1, GOOD_CARD));
    wait_for_status(&api, &token, &later, "confirmed");
    assert_eq!(
        count_of(&node, "inventory-commands", "ReleaseInventory", &id),
        1
    );
    assert_eq!(count_of(&node, "payment-commands", "RefundPayment", &id), 1);
    assert_eq!(order(&api, &token, &id)["status"], "cancelled");
}

#[test]
fn bad_orders_are_refused_and_leave_nothing_behind() {
    let _limit = TimeLimit::new("bad_orders_leave_nothing", Duration::from_secs(180));
    let node = start("60000");
    let api = Api::new(&node);
    let product_id = create_product(&api, "SAGA-3");
    let (_, token) = customer(&api, "eve@example.com");

    let mut bad_address = order_body(&product_id, 1, GOOD_CARD);
    bad_address["shipping_address"]["country"] = json!("XX");
    let mut empty_city = order_body(&product_id, 1, GOOD_CARD);
    empty_city["shipping_address"]["city"] = json!(" ");
    let mut no_items = order_body(&product_id, 1, GOOD_CARD);
    no_items["items"] = json!([]);
    let cases = [
        (
            order_body("no-such-product", 1, GOOD_CARD),
            404,
            "unknown_product",
            "items[0].product_id",
        ),
        (
            order_body(&product_id, 0, GOOD_CARD),
            400,
            "validation_failed",
            "items[0].quantity",
        ),
        (
            order_body(&product_id, 1001, GOOD_CARD),
            400,
            "validation_failed",
            "items[0].quantity",
        ),
        (
            order_body(&product_id, 1, "4242424242424241"),
            400,
            "invalid_card",
            "payment.card_number",
        ),
        (
            order_body(&product_id, 1, "1234"),
            400,
            "invalid_card",
            "payment.card_number",
        ),
        (
            bad_address,
            400,
            "validation_failed",
            "shipping_address.country",
        ),
        (
            empty_city,
            400,
            "validation_failed",
            "shipping_address.city",
        ),
        (no_items, 400, "validation_failed", "items"),
    ];
    for (body, status, code, field) in &cases {
        let answer = api.post("/api/orders", Some(&token), body);
        assert_eq!(answer.status, *status, "{body}: {}", answer.text);
        assert_eq!(answer.error_code(), *code, "{}", answer.text);
        assert_eq!(answer.body["error"]["field"], *field, "{}", answer.text);
    }
    // Not signed in.
    assert_eq!(
        api.post("/api/orders", None, &order_body(&product_id, 1, GOOD_CARD))
            .status,
        401
    );
    assert_eq!(
        api.get("/api/orders", Some(&token)).expect(200).body["total"],
        0
    );

    // Duplicate lines are merged into one.
    let mut twice = order_body(&product_id, 2, GOOD_CARD);
    twice["items"] = json!([{"product_id": product_id, "quantity": 2},
                            {"product_id": product_id, "quantity": 3}]);
    let id = place(&api, &token, &twice);
    let placed = order(&api, &token, &id);
    assert_eq!(placed["items"].as_array().unwrap().len(), 1);
    assert_eq!(placed["items"][0]["quantity"], 5);
    // The one good order's events are the only ones: the refused ones left none.
    wait_for_command(&node, "inventory-commands", "ReserveInventory", &id);
    let created: Vec<Value> = events(&node, "order-events")
        .into_iter()
        .filter(|event| event["type"] == "OrderCreated")
        .collect();
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(events(&node, "inventory-commands").len(), 1);
    assert_eq!(
        api.get("/api/orders", Some(&token)).expect(200).body["total"],
        1
    );
}

#[test]
fn orders_are_private_replays_create_one_and_customers_can_cancel() {
    let _limit = TimeLimit::new("orders_are_private", Duration::from_secs(180));
    let node = start("60000");
    let api = Api::new(&node);
    let product_id = create_product(&api, "SAGA-4");
    let (_, ada) = customer(&api, "ada@example.com");
    let (_, bob) = customer(&api, "bob@example.com");
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);

    let body = order_body(&product_id, 1, GOOD_CARD);
    let post = |key: &str| {
        api.send(
            api.request(reqwest::Method::POST, "/api/orders", Some(&ada))
                .header("Idempotency-Key", key)
                .json(&body),
        )
    };
    let first = post("order-key-1").expect(202);
    let replay = post("order-key-1").expect(202);
    assert_eq!(first.body["id"], replay.body["id"]);
    let id = first.body["id"].as_str().unwrap().to_string();
    let listed = api.get("/api/orders", Some(&ada)).expect(200).body;
    assert_eq!(listed["total"], 1, "{listed}");

    // Someone else's order does not exist for them; an admin sees it.
    assert_eq!(
        api.get(&format!("/api/orders/{id}"), Some(&bob)).status,
        404
    );
    assert_eq!(
        api.post(&format!("/api/orders/{id}/cancel"), Some(&bob), &json!({}))
            .status,
        404
    );
    assert_eq!(
        api.get("/api/orders", Some(&bob)).expect(200).body["total"],
        0
    );
    assert_eq!(api.get("/api/orders?all=true", Some(&bob)).status, 403);
    order(&api, &admin, &id);
    assert_eq!(
        api.get("/api/orders?all=true", Some(&admin))
            .expect(200)
            .body["total"],
        1
    );

    // Newest first.
    let second = place(&api, &ada, &order_body(&product_id, 3, GOOD_CARD));
    let listed = api
        .get("/api/orders?page_size=1", Some(&ada))
        .expect(200)
        .body;
    assert_eq!(listed["items"][0]["id"], second.as_str());
    assert_eq!(listed["total"], 2);

    // Cancel a confirmed order: the shipment, the payment and the reservation are undone,
    // once each.
    let product_id = create_product(&api, "SAGA-5");
    set_stock(&api, &product_id, 5);
    let id = place(&api, &ada, &order_body(&product_id, 2, GOOD_CARD));
    wait_for_status(&api, &ada, &id, "confirmed");
    let cancelled = api
        .post(&format!("/api/orders/{id}/cancel"), Some(&ada), &json!({}))
        .expect(200)
        .body;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "customer_cancelled");
    for (topic, command) in [
        ("shipping-commands", "CancelShipment"),
        ("payment-commands", "RefundPayment"),
        ("inventory-commands", "ReleaseInventory"),
    ] {
        let sent = wait_for_command(&node, topic, command, &id);
        assert_eq!(sent["data"]["reason"], "customer_cancelled", "{sent}");
    }
    let again = api.post(&format!("/api/orders/{id}/cancel"), Some(&ada), &json!({}));
    assert_eq!(again.status, 409);
    let event = wait_for_command(&node, "order-events", "OrderCancelled", &id);
    assert_eq!(event["data"]["reason"], "customer_cancelled");
    assert_eq!(count_of(&node, "order-events", "OrderCancelled", &id), 1);
}
