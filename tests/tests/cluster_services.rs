//! One platform across a three-node cluster: every service's state is replicated, so any
//! node gives the same answer. A customer registered on one node logs in on another and
//! its token works on the third; a product created on one node is there on the next
//! request to another; an order placed on one node completes its saga and reads the same
//! everywhere, also after the leader of the order service's group is killed with -9.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_tests::cluster::Cluster;
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, product};
use commerce_tests::orders::{GOOD_CARD, order_body};
use commerce_tests::shop::service_leader;
use commerce_tests::{commerce_bin, wait_for};
use serde_json::{Value, json};

fn start() -> Cluster {
    start_with(&[])
}

fn start_with(env: &[(&str, &str)]) -> Cluster {
    let mut all = vec![
        ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
        ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"),
    ];
    all.extend_from_slice(env);
    Cluster::start_with_env(3, &all)
}

fn api(cluster: &mut Cluster, id: u64) -> Api {
    Api::new(cluster.node(id))
}

/// Waits until `/health/ready` answers 200 on every node in `ids`.
fn wait_ready(cluster: &mut Cluster, ids: &[u64]) {
    for &id in ids {
        let api = api(cluster, id);
        wait_for(&format!("node {id} ready"), Duration::from_secs(60), || {
            (api.get("/health/ready", None).status == 200).then_some(())
        });
    }
}

/// Places an order on `api` and waits (reading through `reader`) until it is confirmed. A
/// 503 (the order group electing a new leader) is retried: the node answers it before it
/// submits anything.
fn order_confirmed(api: &Api, reader: &Api, token: &str, product_id: &str) -> Value {
    let body = order_body(product_id, 1, GOOD_CARD);
    let placed = wait_for("an order accepted", Duration::from_secs(30), || {
        let placed = api.post("/api/orders", Some(token), &body);
        match placed.status {
            202 => Some(placed),
            503 => None,
            _ => panic!("unexpected answer: {} {}", placed.status, placed.text),
        }
    });
    let id = placed.body["id"].as_str().unwrap().to_string();
    wait_for(
        &format!("order {id} confirmed"),
        Duration::from_secs(60),
        || {
            let order = reader.get(&format!("/api/orders/{id}"), Some(token));
            (order.status == 200 && order.body["status"] == "confirmed").then_some(order.body)
        },
    )
}

/// What must read the same on every node: the order without its per-request fields.
/// How many of the services' groups each node leads, as node `id` sees it.
fn service_leaders(status: &Value) -> BTreeMap<u64, usize> {
    let mut led = BTreeMap::new();
    for group in status["groups"].as_array().into_iter().flatten() {
        let service_group = group["group"].as_u64().is_some_and(|id| id > 1 << 48);
        if let (true, Some(leader)) = (service_group, group["leader"].as_u64()) {
            *led.entry(leader).or_default() += 1;
        }
    }
    led
}

fn comparable(order: &Value) -> Value {
    json!({
        "id": order["id"], "status": order["status"], "items": order["items"],
        "total": order["total"], "steps": order["steps"],
    })
}

#[test]
fn any_node_gives_the_same_answer_and_an_order_survives_its_leader_being_killed() {
    let mut cluster = start();
    wait_ready(&mut cluster, &[1, 2, 3]);
    // The services' eleven groups are led round the nodes, not all by the first one up.
    cluster.wait_until(
        "the services' leaders spread 4, 4, 3",
        &[1, 2, 3],
        Duration::from_secs(60),
        |statuses| {
            statuses.iter().all(|(_, status)| {
                status.as_ref().is_some_and(|status| {
                    let led = service_leaders(status);
                    led.len() == 3 && led.values().all(|count| (3..=4).contains(count))
                })
            })
        },
    );
    let (one, two, three) = (
        api(&mut cluster, 1),
        api(&mut cluster, 2),
        api(&mut cluster, 3),
    );

    // Identity: register on 1, log in on 2, the token works on 3; the email is taken on 3.
    let user = one.register("ada@example.com", "customer-password-1", "Ada");
    let token = two.token("ada@example.com", "customer-password-1");
    let me = three.get("/api/identity/me", Some(&token)).expect(200);
    assert_eq!(me.body["id"], user["id"]);
    let again = three.post(
        "/api/identity/register",
        None,
        &json!({"email": "ada@example.com", "password": "customer-password-2", "name": "Ada"}),
    );
    // Answered as a new account would be (so the answer does not tell which emails have
    // accounts), but nothing is created: the second password signs in on no node.
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(again.body["id"], user["id"]);
    let second = one.post(
        "/api/identity/login",
        None,
        &json!({"email": "ada@example.com", "password": "customer-password-2"}),
    );
    assert_eq!(
        second.status, 401,
        "the same email registered twice: {}",
        second.text
    );
    one.token("ada@example.com", "customer-password-1");
    // One signing key: the JWKS is the same on every node.
    let jwks = one.get("/.well-known/jwks.json", None).expect(200).body;
    assert_eq!(
        two.get("/.well-known/jwks.json", None).expect(200).body,
        jwks
    );
    assert_eq!(
        three.get("/.well-known/jwks.json", None).expect(200).body,
        jwks
    );

    // Catalog: created on 3, readable on 1 in the very next request; stock set on 1.
    let admin = three.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let created = three
        .post(
            "/api/catalog/products",
            Some(&admin),
            &product("MUG-1", "Blue mug", "kitchen", 1299),
        )
        .expect(201);
    let product_id = created.body["id"].as_str().unwrap().to_string();
    let read = one
        .get(&format!("/api/catalog/products/{product_id}"), None)
        .expect(200);
    assert_eq!(read.body["sku"], "MUG-1");
    one.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": 50}),
    )
    .expect(200);

    // Orders: placed on 2, confirmed, the same on 1 and 3.
    let confirmed = order_confirmed(&two, &two, &token, &product_id);
    let id = confirmed["id"].as_str().unwrap();
    for reader in [&one, &three] {
        let read = reader
            .get(&format!("/api/orders/{id}"), Some(&token))
            .expect(200);
        assert_eq!(comparable(&read.body), comparable(&confirmed));
    }

    // The leader of the order group killed -9: the others elect a new one and take orders.
    let leader = service_leader(&cluster, &[1, 2, 3], "order");
    cluster.node(leader).kill();
    let alive: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    wait_ready(&mut cluster, &alive);
    let (first, second) = (api(&mut cluster, alive[0]), api(&mut cluster, alive[1]));
    let after = order_confirmed(&first, &second, &token, &product_id);

    // Back with the same command line, the killed node serves both orders as they are.
    cluster.node(leader).restart();
    wait_ready(&mut cluster, &[leader]);
    let back = api(&mut cluster, leader);
    for order in [&confirmed, &after] {
        let id = order["id"].as_str().unwrap();
        let read = back
            .get(&format!("/api/orders/{id}"), Some(&token))
            .expect(200);
        assert_eq!(comparable(&read.body), comparable(order));
    }
    let stock = back
        .get(&format!("/api/inventory/{product_id}"), None)
        .expect(200);
    // Confirmed orders keep their units reserved until dispatch.
    assert_eq!(
        (
            stock.body["available"].as_u64(),
            stock.body["reserved"].as_u64()
        ),
        (Some(48), Some(2))
    );

    // `commerce demo` against the cluster: through the node that came back.
    let url = format!("http://{}", cluster.node(leader).http_addr());
    let demo = std::process::Command::new(commerce_bin())
        .args(["demo", "--url", &url, "--admin-email", ADMIN_EMAIL])
        .args(["--admin-password", ADMIN_PASSWORD])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success(),
        "commerce demo --url {url} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(
        (stdout.contains(": CONFIRMED") || stdout.contains(": COMPLETED"))
            && stdout.contains(": CANCELLED"),
        "{stdout}"
    );
}

#[test]
fn a_node_whose_data_directory_was_wiped_is_rebuilt_and_answers_as_the_others() {
    // Groups snapshot every 20 entries and keep 2 behind: the catalog's 30 products below
    // are past its leader's log start, so the wiped node is rebuilt by snapshot.
    let mut cluster = start_with(&[
        ("COMMERCE_RAFT_SNAPSHOT_EVERY", "20"),
        ("COMMERCE_RAFT_LOG_KEPT", "2"),
    ]);
    wait_ready(&mut cluster, &[1, 2, 3]);
    let one = api(&mut cluster, 1);
    let admin = one.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    for n in 0..30 {
        let sku = format!("BULK-{n}");
        one.post(
            "/api/catalog/products",
            Some(&admin),
            &product(&sku, "Bulk item", "bulk", 100 + n),
        )
        .expect(201);
    }
    let created = one
        .post(
            "/api/catalog/products",
            Some(&admin),
            &product("LAMP-1", "Desk lamp", "home", 4599),
        )
        .expect(201);
    let product_id = created.body["id"].as_str().unwrap().to_string();
    one.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": 10}),
    )
    .expect(200);
    one.register("grace@example.com", "customer-password-1", "Grace");
    let token = one.token("grace@example.com", "customer-password-1");
    let confirmed = order_confirmed(&one, &one, &token, &product_id);
    let id = confirmed["id"].as_str().unwrap().to_string();

    // Node 2 loses its disk and comes back with the same command line.
    let node = cluster.node(2);
    node.kill();
    let data_dir = node.data_dir();
    std::fs::remove_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    node.restart();
    wait_ready(&mut cluster, &[2]);
    let two = api(&mut cluster, 2);

    // Everything reads as on node 1: the account, the product, the stock, the order.
    let me = two.get("/api/identity/me", Some(&token)).expect(200);
    assert_eq!(me.body["email"], "grace@example.com");
    let path = format!("/api/catalog/products/{product_id}");
    assert_eq!(
        two.get(&path, None).expect(200).body,
        one.get(&path, None).expect(200).body
    );
    let bulk = "/api/catalog/products?category=bulk&page_size=100";
    let listed = two.get(bulk, None).expect(200).body;
    assert_eq!(listed["total"], 30);
    assert_eq!(listed, one.get(bulk, None).expect(200).body);
    let stock = format!("/api/inventory/{product_id}");
    assert_eq!(
        two.get(&stock, None).expect(200).body,
        one.get(&stock, None).expect(200).body
    );
    let order = two
        .get(&format!("/api/orders/{id}"), Some(&token))
        .expect(200);
    assert_eq!(comparable(&order.body), comparable(&confirmed));
    // And it takes part again: an order placed through it completes.
    order_confirmed(&two, &two, &token, &product_id);
}

#[test]
fn a_node_without_a_majority_says_it_is_not_ready() {
    let mut cluster = start();
    wait_ready(&mut cluster, &[1, 2, 3]);
    cluster.node(2).kill();
    cluster.node(3).kill();
    let one = api(&mut cluster, 1);
    // Its service groups' leaders are gone or it leads without a majority: 503, and why.
    let answer = wait_for("node 1 unready", Duration::from_secs(30), || {
        let answer = one.get("/health/ready", None);
        (answer.status == 503).then_some(answer)
    });
    assert!(
        answer.text.contains("majority") || answer.text.contains("leader"),
        "{}",
        answer.text
    );
    // A write is refused rather than accepted and lost.
    let admin = one.post(
        "/api/identity/login",
        None,
        &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
    );
    assert_ne!(admin.status, 200, "{}", admin.text);
    // One peer back: a majority again, ready again.
    cluster.node(2).restart();
    wait_ready(&mut cluster, &[1, 2]);
}
