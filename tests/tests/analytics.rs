//! Analytics with real clients: order, payment and inventory events produced with librdkafka
//! onto their topics (as the services publish them), the admin summary polled until it
//! shows the exact expected figures; an event delivered twice counts once; admins only.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::envelopes::{self, envelope};
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, events};
use commerce_tests::kafka;
use commerce_tests::{Node, TimeLimit, wait_for};
use serde_json::{Value, json};

fn usd(amount: i64) -> Value {
    json!({"amount": amount, "currency": "USD"})
}

fn line(product_id: &str, quantity: i64, unit: i64) -> Value {
    json!({
        "product_id": product_id,
        "sku": format!("SKU-{product_id}"),
        "name": format!("Product {product_id}"),
        "quantity": quantity,
        "unit_price": usd(unit),
        "line_total": usd(unit * quantity),
        "weight_grams": 100,
    })
}

fn total(lines: &[Value]) -> i64 {
    lines
        .iter()
        .map(|line| line["line_total"]["amount"].as_i64().unwrap())
        .sum()
}

fn order_created(order_id: &str, lines: &[Value]) -> Value {
    envelope(
        "OrderCreated",
        order_id,
        json!({"order_id": order_id, "customer_id": "c1", "lines": lines, "total": usd(total(lines)),
               "shipping_address": {"name": "A", "line1": "B", "city": "C", "postal_code": "D", "country": "US"}}),
    )
}

fn order_confirmed(order_id: &str, lines: &[Value]) -> Value {
    envelope(
        "OrderConfirmed",
        order_id,
        json!({"order_id": order_id, "customer_id": "c1", "lines": lines, "total": usd(total(lines)),
               "tracking_number": "DC0123456789AB"}),
    )
}

#[test]
fn the_summary_shows_exact_figures_and_counts_a_duplicate_once() {
    let _limit = TimeLimit::new("analytics_summary", Duration::from_secs(180));
    let mut env = ADMIN_ENV.to_vec();
    env.push(("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"));
    let node = Node::start_with_env(&env);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    api.register("cust@example.com", "customer password", "Cust");
    let customer = api.token("cust@example.com", "customer password");

    // Admins only.
    for path in [
        "/api/analytics/summary",
        "/api/analytics/series?minutes=5",
        "/api/analytics/top-products",
    ] {
        assert_eq!(api.get(path, None).status, 401, "{path}");
        assert_eq!(api.get(path, Some(&customer)).status, 403, "{path}");
    }

    let o1 = [line("a", 2, 1000), line("b", 1, 1500)];
    let o2 = [line("a", 1, 1000)];
    let o3 = [line("c", 5, 500)];
    let o4 = [line("b", 2, 1500)];
    let producer = kafka::platform_producer(&node, &[]);
    let send = |topic: &str, envelope: &Value| envelopes::send(&producer, topic, envelope);
    send(
        "payment-events",
        &envelope(
            "RefundProcessed",
            "o2",
            json!({"payment_id": "pay-2", "order_id": "o2", "customer_id": "c1", "amount": usd(400)}),
        ),
    );
    send(
        "payment-events",
        &envelope(
            "PaymentProcessed",
            "o1",
            json!({"payment_id": "pay-1", "order_id": "o1", "customer_id": "c1", "amount": usd(3500), "card_last4": "4242"}),
        ),
    );
    send(
        "inventory-events",
        &envelope(
            "LowStockAlert",
            "a",
            json!({"product_id": "a", "available": 2, "threshold": 5}),
        ),
    );
    for (order_id, lines) in [("o1", &o1[..]), ("o2", &o2), ("o3", &o3), ("o4", &o4)] {
        send("order-events", &order_created(order_id, lines));
    }
    let first_confirmed = order_confirmed("o1", &o1);
    send("order-events", &first_confirmed);
    // The same envelope again (a redelivery), and the same fact under a new envelope id.
    send("order-events", &first_confirmed);
    send("order-events", &order_confirmed("o1", &o1));
    send("order-events", &order_confirmed("o2", &o2));
    send("order-events", &order_confirmed("o3", &o3));
    send(
        "order-events",
        &envelope(
            "OrderCancelled",
            "o4",
            json!({"order_id": "o4", "customer_id": "c1", "lines": o4, "total": usd(3000), "reason": "payment_failed"}),
        ),
    );
    // Last on its topic (one partition, applied in order): once it counts, all above did.
    send(
        "order-events",
        &envelope(
            "OrderCompleted",
            "o1",
            json!({"order_id": "o1", "customer_id": "c1"}),
        ),
    );
    kafka::flush_all_acked(&producer);

    let summary = wait_for(
        "the summary to count everything",
        Duration::from_secs(60),
        || {
            let summary = api
                .get("/api/analytics/summary", Some(&admin))
                .expect(200)
                .body;
            let done = summary["orders_completed"] == 1
                && summary["refunds"]["amount"] == 400
                && summary["low_stock_alerts"] == 1
                && summary["payments_processed"] == 1;
            done.then_some(summary)
        },
    );
    assert_eq!(summary["orders_created"], 4);
    assert_eq!(summary["orders_confirmed"], 3, "{summary:#}");
    assert_eq!(summary["orders_cancelled"], 1);
    assert_eq!(summary["orders_completed"], 1);
    // Confirmed: 3500 + 1000 + 2500; minus the 400 refund.
    assert_eq!(summary["revenue"], usd(6600));
    assert_eq!(summary["refunds"], usd(400));
    assert_eq!(summary["conversion_rate"], 0.75);
    assert_eq!(
        summary["top_products"],
        json!([
            {"product_id": "c", "sku": "SKU-c", "name": "Product c", "quantity": 5, "revenue": 2500},
            {"product_id": "a", "sku": "SKU-a", "name": "Product a", "quantity": 3, "revenue": 3000},
            {"product_id": "b", "sku": "SKU-b", "name": "Product b", "quantity": 1, "revenue": 1500},
        ])
    );
    // Users come from identity-events: the admin and the customer registered above.
    let registered = events(&node, "identity-events")
        .iter()
        .filter(|event| event["type"] == "UserRegistered")
        .count();
    assert!(registered >= 2);
    let users = wait_for("registered users counted", Duration::from_secs(30), || {
        let summary = api
            .get("/api/analytics/summary", Some(&admin))
            .expect(200)
            .body;
        (summary["registered_users"] == registered).then_some(summary["registered_users"].clone())
    });
    assert_eq!(users, registered);

    let top = api
        .get("/api/analytics/top-products?limit=2", Some(&admin))
        .expect(200)
        .body;
    let ids: Vec<&str> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|product| product["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "a"]);
    assert_eq!(
        api.get("/api/analytics/top-products?limit=0", Some(&admin))
            .status,
        400
    );

    // The series: the events occurred just now, so the last minutes hold them all.
    let series = api
        .get("/api/analytics/series?minutes=10", Some(&admin))
        .expect(200)
        .body;
    let buckets = series["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 10);
    let sum = |field: &str| -> i64 {
        buckets
            .iter()
            .map(|bucket| {
                if field == "revenue" {
                    bucket["revenue"]["amount"].as_i64().unwrap()
                } else {
                    bucket[field].as_i64().unwrap()
                }
            })
            .sum()
    };
    assert_eq!(sum("orders_created"), 4);
    assert_eq!(sum("orders_confirmed"), 3);
    assert_eq!(sum("orders_cancelled"), 1);
    assert_eq!(sum("revenue"), 6600);
    assert!(buckets[0]["minute"].as_str().unwrap() < buckets[9]["minute"].as_str().unwrap());
    for bad in ["minutes=0", "minutes=1441", "minutes=lots"] {
        assert_eq!(
            api.get(&format!("/api/analytics/series?{bad}"), Some(&admin))
                .status,
            400,
            "{bad}"
        );
    }
}
