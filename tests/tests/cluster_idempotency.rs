//! `Idempotency-Key` across a three-node cluster, as behind a load balancer: the key's
//! records are replicated, so a retry sent to another node replays the first answer and
//! creates nothing more, and another body with the same key is refused on any node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::cluster::Cluster;
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Reply, product};
use commerce_tests::orders::{GOOD_CARD, order_body};
use commerce_tests::{TimeLimit, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

fn post_with_key(api: &Api, path: &str, token: &str, key: &str, body: &Value) -> Reply {
    api.send(
        api.request(Method::POST, path, Some(token))
            .header("Idempotency-Key", key)
            .json(body),
    )
}

#[test]
fn a_retry_on_another_node_replays_the_first_answer_and_another_body_is_refused() {
    let _limit = TimeLimit::new("cluster_idempotency", Duration::from_secs(300));
    let mut cluster = Cluster::start_with_env(
        3,
        &[
            ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
            ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"),
        ],
    );
    let apis: Vec<Api> = (1..=3).map(|id| Api::new(cluster.node(id))).collect();
    for (api, id) in apis.iter().zip(1..) {
        wait_for(&format!("node {id} ready"), Duration::from_secs(60), || {
            (api.get("/health/ready", None).status == 200).then_some(())
        });
    }
    let (one, two, three) = (&apis[0], &apis[1], &apis[2]);
    let admin = one.token(ADMIN_EMAIL, ADMIN_PASSWORD);

    // A product created with a key on 1, retried on 2 and 3: one product.
    let kettle = product("KETTLE-1", "Kettle", "kitchen", 3999);
    let created =
        post_with_key(one, "/api/catalog/products", &admin, "product-1", &kettle).expect(201);
    for retry_on in [two, three] {
        let again = post_with_key(
            retry_on,
            "/api/catalog/products",
            &admin,
            "product-1",
            &kettle,
        )
        .expect(201);
        assert_eq!(again.body, created.body, "the replay is the first answer");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    let product_id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        two.get("/api/catalog/products", None).expect(200).body["total"],
        1
    );
    one.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": 10}),
    )
    .expect(200);

    // An order placed with a key on 1 and retried on 2 is one order, with one id.
    let customer = {
        one.register("ada@example.com", "customer-password-1", "Ada");
        two.token("ada@example.com", "customer-password-1")
    };
    let order = order_body(&product_id, 1, GOOD_CARD);
    let placed = post_with_key(one, "/api/orders", &customer, "order-1", &order).expect(202);
    let retried = post_with_key(two, "/api/orders", &customer, "order-1", &order).expect(202);
    assert_eq!(retried.body["id"], placed.body["id"]);
    assert_eq!(retried.body, placed.body);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));

    // Another body with the same key is refused on 3, and creates nothing either.
    let other = order_body(&product_id, 2, GOOD_CARD);
    let refused = post_with_key(three, "/api/orders", &customer, "order-1", &other);
    assert_eq!(
        (refused.status, refused.error_code()),
        (422, "idempotency_key_reused"),
        "{}",
        refused.text
    );
    for api in [one, two, three] {
        let listed = api.get("/api/orders", Some(&customer)).expect(200).body;
        assert_eq!(listed["total"], 1, "{listed}");
        assert_eq!(listed["items"][0]["id"], placed.body["id"], "{listed}");
    }
    // The one order's single unit is all the stock it took.
    let id = placed.body["id"].as_str().unwrap().to_string();
    wait_for(
        &format!("order {id} confirmed"),
        Duration::from_secs(60),
        || {
            let read = three.get(&format!("/api/orders/{id}"), Some(&customer));
            (read.status == 200 && read.body["status"] == "confirmed").then_some(())
        },
    );
    let stock = three
        .get(&format!("/api/inventory/{product_id}"), None)
        .expect(200)
        .body;
    assert_eq!(
        (stock["available"].as_u64(), stock["reserved"].as_u64()),
        (Some(9), Some(1)),
        "{stock}"
    );
}
