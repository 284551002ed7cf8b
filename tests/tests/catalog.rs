//! Catalog over HTTP with real clients: admin writes, public browsing, validation, the events
//! on `catalog-events` (read with librdkafka), and what survives restarts and kill -9.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::Duration;

use commerce_tests::http::{
    ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, event_headers, product, wait_for_events,
};
use commerce_tests::{Node, TimeLimit};
use serde_json::{Value, json};

#[test]
fn product_events_appear_once_with_the_request_correlation_id() {
    let _limit = TimeLimit::new("product_events_appear_once", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);

    let created = api.send(
        api.request(reqwest::Method::POST, "/api/catalog/products", Some(&admin))
            .header("X-Correlation-Id", "corr-create-1")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .json(&product("MUG-1", "Blue mug", "kitchen", 1299)),
    );
    let created = created.expect(201).body;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["price"], json!({"amount": 1299, "currency": "USD"}));
    assert_eq!(created["weight_grams"], 250);

    let repriced = api.send(
        api.request(
            reqwest::Method::PUT,
            &format!("/api/catalog/products/{id}/price"),
            Some(&admin),
        )
        .header("X-Correlation-Id", "corr-price-1")
        .json(&json!({"amount": 999, "currency": "USD"})),
    );
    assert_eq!(repriced.expect(200).body["price"]["amount"], 999);

    let events = wait_for_events(
        &node,
        "catalog-events",
        "ProductCreated and PriceChanged",
        |all| all.iter().any(|event| event["type"] == "PriceChanged"),
    );
    let of_product: Vec<&Value> = events
        .iter()
        .filter(|event| event["aggregate_id"] == id.as_str())
        .collect();
    assert_eq!(of_product.len(), 2, "{of_product:#?}");
    let (created_event, price_event) = (of_product[0], of_product[1]);
    assert_eq!(created_event["type"], "ProductCreated");
    assert_eq!(created_event["correlation_id"], "corr-create-1");
    assert_eq!(created_event["data"]["sku"], "MUG-1");
    assert_eq!(price_event["type"], "PriceChanged");
    assert_eq!(price_event["correlation_id"], "corr-price-1");
    assert_eq!(price_event["data"]["old_price"]["amount"], 1299);
    assert_eq!(price_event["data"]["new_price"]["amount"], 999);
    assert_ne!(created_event["id"], price_event["id"]);
    // The request's W3C trace travels with its event as a record header.
    let headers = event_headers(&node, "catalog-events");
    let (key, created_headers) = &headers[0];
    assert_eq!(key, &id);
    let traceparent = created_headers
        .get("traceparent")
        .expect("a traceparent header");
    assert!(
        traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{traceparent}"
    );

    // Update and delete publish too; a deleted product is gone.
    api.put(
        &format!("/api/catalog/products/{id}"),
        Some(&admin),
        &json!({"name": "Navy mug"}),
    )
    .expect(200);
    assert_eq!(
        api.get(&format!("/api/catalog/products/{id}"), None)
            .expect(200)
            .body["name"],
        "Navy mug"
    );
    api.delete(&format!("/api/catalog/products/{id}"), Some(&admin))
        .expect(204);
    assert_eq!(
        api.get(&format!("/api/catalog/products/{id}"), None).status,
        404
    );
    let events = wait_for_events(&node, "catalog-events", "ProductDeleted", |all| {
        all.iter().any(|event| event["type"] == "ProductDeleted")
    });
    let types: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ProductCreated",
            "PriceChanged",
            "ProductUpdated",
            "ProductDeleted"
        ]
    );
    // The SKU is free again once its product is deleted.
    api.post(
        "/api/catalog/products",
        Some(&admin),
        &product("MUG-1", "Blue mug", "kitchen", 1299),
    )
    .expect(201);
}

#[test]
fn writes_are_validated_and_reads_are_public() {
    let _limit = TimeLimit::new("writes_are_validated", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    api.register("carol@example.com", "carols password", "Carol");
    let customer = api.token("carol@example.com", "carols password");

    let body = product("TEA-1", "Green tea", "grocery", 450);
    assert_eq!(api.post("/api/catalog/products", None, &body).status, 401);
    assert_eq!(
        api.post("/api/catalog/products", Some(&customer), &body)
            .status,
        403
    );

    for (bad, field) in [
        (
            json!({"sku": "", "name": "x", "category": "c", "price": {"amount": 1, "currency": "USD"}}),
            "sku",
        ),
        (
            json!({"sku": "has space", "name": "x", "category": "c", "price": {"amount": 1, "currency": "USD"}}),
            "sku",
        ),
        (
            json!({"sku": "A1", "name": " ", "category": "c", "price": {"amount": 1, "currency": "USD"}}),
            "name",
        ),
        (
            json!({"sku": "A1", "name": "x", "category": "", "price": {"amount": 1, "currency": "USD"}}),
            "category",
        ),
        (
            json!({"sku": "A1", "name": "x", "category": "c", "price": {"amount": -1, "currency": "USD"}}),
            "price",
        ),
        (
            json!({"sku": "A1", "name": "x", "category": "c", "price": {"amount": 1, "currency": "usd"}}),
            "price",
        ),
    ] {
        let reply = api.post("/api/catalog/products", Some(&admin), &bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert_eq!(reply.body["error"]["field"], field, "{bad}");
    }
    let missing = api.post("/api/catalog/products", Some(&admin), &json!({"sku": "A1"}));
    assert_eq!(
        (missing.status, missing.error_code()),
        (400, "invalid_body")
    );

    api.post("/api/catalog/products", Some(&admin), &body)
        .expect(201);
    let duplicate = api.post("/api/catalog/products", Some(&admin), &body);
    assert_eq!(
        (duplicate.status, duplicate.error_code()),
        (409, "sku_taken")
    );
    let unknown = api.put(
        "/api/catalog/products/nope/price",
        Some(&admin),
        &json!({"amount": 1, "currency": "USD"}),
    );
    assert_eq!((unknown.status, unknown.error_code()), (404, "not_found"));

    for i in 0..7 {
        let category = if i % 2 == 0 { "kitchen" } else { "garden" };
        api.post(
            "/api/catalog/products",
            Some(&admin),
            &product(
                &format!("SKU-{i}"),
                &format!("Widget {i}"),
                category,
                100 + i,
            ),
        )
        .expect(201);
    }
    // Nothing rejected was written: 8 products in all.
    let all = api
        .get("/api/catalog/products?page_size=100", None)
        .expect(200)
        .body;
    assert_eq!(all["total"], 8);
    let kitchen = api
        .get("/api/catalog/products?category=kitchen", None)
        .expect(200)
        .body;
    assert_eq!(kitchen["total"], 4);
    let search = api
        .get("/api/catalog/products?q=WIDGET&page=2&page_size=3", None)
        .expect(200)
        .body;
    assert_eq!(
        (search["total"].as_u64(), search["page"].as_u64()),
        (Some(7), Some(2))
    );
    let names: Vec<&str> = search["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Widget 3", "Widget 4", "Widget 5"]);
    let tea = api
        .get("/api/catalog/products?q=green", None)
        .expect(200)
        .body;
    assert_eq!(tea["items"][0]["sku"], "TEA-1");
    assert_eq!(api.get("/api/catalog/products?page=0", None).status, 400);
    assert_eq!(
        api.get("/api/catalog/products?page_size=1000", None).status,
        400
    );
    assert_eq!(api.get("/api/catalog/products?page=abc", None).status, 400);
    let categories = api.get("/api/catalog/categories", None).expect(200).body;
    assert_eq!(
        categories,
        json!([{"name": "garden", "products": 3}, {"name": "grocery", "products": 1}, {"name": "kitchen", "products": 4}])
    );
    // A cached list is invalidated by a write.
    api.put(
        &format!(
            "/api/catalog/products/{}/price",
            tea["items"][0]["id"].as_str().unwrap()
        ),
        Some(&admin),
        &json!({"amount": 500, "currency": "EUR"}),
    )
    .expect(200);
    let tea = api
        .get("/api/catalog/products?q=green", None)
        .expect(200)
        .body;
    assert_eq!(
        tea["items"][0]["price"],
        json!({"amount": 500, "currency": "EUR"})
    );
}

#[test]
fn a_restart_keeps_users_and_products() {
    let _limit = TimeLimit::new(
        "a_restart_keeps_users_and_products",
        Duration::from_secs(120),
    );
    let mut node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    api.register("dave@example.com", "daves password", "Dave");
    let id = api
        .post(
            "/api/catalog/products",
            Some(&admin),
            &product("LAMP-1", "Desk lamp", "home", 2999),
        )
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old_token = api.token("dave@example.com", "daves password");

    assert!(node.terminate().success());
    node.restart();
    // The signing key survived: a token issued before the restart still works.
    api.get("/api/identity/me", Some(&old_token)).expect(200);
    api.token("dave@example.com", "daves password");
    assert_eq!(
        api.get(&format!("/api/catalog/products/{id}"), None)
            .expect(200)
            .body["sku"],
        "LAMP-1"
    );

    node.kill();
    node.restart();
    api.token("dave@example.com", "daves password");
    assert_eq!(
        api.get(&format!("/api/catalog/products/{id}"), None)
            .expect(200)
            .body["sku"],
        "LAMP-1"
    );
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let users = api
        .get("/api/identity/users", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(users.as_array().unwrap().len(), 2);
}

/// Writes from several clients, kill -9 right after the last answer (so events are likely
/// still in the outbox), restart: every acknowledged product has exactly one ProductCreated
/// event, none lost, none twice.
#[test]
fn kill_9_after_a_burst_of_writes_loses_and_duplicates_no_event() {
    let _limit = TimeLimit::new("kill_9_after_a_burst_of_writes", Duration::from_secs(180));
    let mut node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let mut acknowledged: Vec<String> = Vec::new();

    for round in 0..3 {
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (api, admin) = (api.clone(), admin.clone());
                std::thread::spawn(move || {
                    (0..15)
                        .map(|i| {
                            let sku = format!("R{round}-W{writer}-{i}");
                            api.post(
                                "/api/catalog/products",
                                Some(&admin),
                                &product(&sku, &sku, "burst", 100),
                            )
                            .expect(201)
                            .body["id"]
                                .as_str()
                                .unwrap()
                                .to_string()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        for writer in writers {
            acknowledged.extend(writer.join().expect("a writer panicked"));
        }
        node.kill();
        node.restart();
    }

    // A sentinel written after the last restart: the relay publishes in outbox order, so once
    // its event is on the topic every earlier one is too.
    let sentinel = api
        .post(
            "/api/catalog/products",
            Some(&admin),
            &product("SENTINEL", "sentinel", "burst", 1),
        )
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = wait_for_events(
        &node,
        "catalog-events",
        "the sentinel's ProductCreated",
        |all| {
            all.iter()
                .any(|event| event["aggregate_id"] == sentinel.as_str())
        },
    );
    let mut per_product: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        assert_eq!(event["type"], "ProductCreated");
        *per_product
            .entry(event["aggregate_id"].as_str().unwrap())
            .or_default() += 1;
        *ids.entry(event["id"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(acknowledged.len(), 180);
    for id in &acknowledged {
        assert_eq!(
            per_product.get(id.as_str()),
            Some(&1),
            "events of product {id}"
        );
    }
    assert_eq!(
        events.len(),
        acknowledged.len() + 1,
        "no event for anything not acknowledged"
    );
    assert!(
        ids.values().all(|count| *count == 1),
        "event ids are unique"
    );
    let listed = api
        .get("/api/catalog/products?category=burst&page_size=1", None)
        .expect(200)
        .body;
    assert_eq!(listed["total"], 181);
    // Whether a crash landed between apply and publish is up to timing; say how often it did.
    let log = node.log();
    eprintln!(
        "restarts that found unpublished outbox events: {}; already-published events skipped: {}",
        log.matches("outbox relay resuming").count(),
        log.matches("already on the topic").count()
    );
}

/// With three partitions per topic, a product's events all land on one partition (keyed by
/// product id, murmur2 as Kafka's Java client) and the products spread over partitions.
#[test]
fn a_products_events_stay_on_one_partition_of_a_partitioned_topic() {
    let _limit = TimeLimit::new(
        "a_products_events_stay_on_one_partition",
        Duration::from_secs(120),
    );
    let node =
        Node::start_with_env(&[ADMIN_ENV[0], ADMIN_ENV[1], ("COMMERCE_NUM_PARTITIONS", "3")]);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let mut ids = Vec::new();
    for i in 0..12 {
        let id = api
            .post(
                "/api/catalog/products",
                Some(&admin),
                &product(&format!("P-{i}"), "part", "p", 10),
            )
            .expect(201)
            .body["id"]
            .as_str()
            .unwrap()
            .to_string();
        api.put(
            &format!("/api/catalog/products/{id}/price"),
            Some(&admin),
            &json!({"amount": 20, "currency": "USD"}),
        )
        .expect(200);
        ids.push(id);
    }
    wait_for_events(&node, "catalog-events", "24 events", |all| all.len() >= 24);
    let records = commerce_tests::kafka::read_all(
        &node.bootstrap(),
        "catalog-events",
        &[0, 1, 2],
        Duration::from_secs(30),
    );
    assert_eq!(records.len(), 24);
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for record in &records {
        let previous = partition_of.insert(record.key_str().to_string(), record.partition);
        assert!(
            previous.is_none_or(|p| p == record.partition),
            "one partition per product"
        );
        let event: Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(event["aggregate_id"], record.key_str());
    }
    assert_eq!(partition_of.len(), 12);
    let used: std::collections::HashSet<i32> = partition_of.values().copied().collect();
    assert!(used.len() > 1, "12 products all on one partition: {used:?}");
    // Per partition, a product's ProductCreated comes before its PriceChanged.
    for id in &ids {
        let types: Vec<String> = records
            .iter()
            .filter(|record| record.key_str() == id)
            .map(|record| {
                serde_json::from_slice::<Value>(&record.value).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(types, ["ProductCreated", "PriceChanged"]);
    }
}
