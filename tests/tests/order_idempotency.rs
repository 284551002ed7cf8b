//! Issue 15, item 2: an `Idempotency-Key` retry after kill -9 never makes a second order or a
//! second charge. Many orders are placed at once, each with its own key; the node is killed
//! with -9 while they are in flight and restarted on the same data directory; every request
//! is then retried with its key and body until it is answered. Each key must come to one
//! order, each order to at most one charge, and the stock must be taken once per order.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api};
use commerce_tests::orders::{GOOD_CARD, create_product, customer, order, order_body, start};
use commerce_tests::{TimeLimit, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const ORDERS: usize = 40;
const STOCK: u64 = 1000;

fn post_order(api: &Api, token: &str, key: &str, body: &Value) -> Option<(u16, Value)> {
    let request = api
        .request(Method::POST, "/api/orders", Some(token))
        .header("Idempotency-Key", key)
        .json(body);
    api.try_send(request)
        .ok()
        .map(|reply| (reply.status, reply.body))
}

/// Sends the request until it is answered with an order: a 409 (the key still in flight from
/// before the crash, until its lease runs out), a 503 (the node still starting) or a
/// connection error is retried with the same key and body. Returns the order id and whether
/// the key was found in flight.
fn retry_until_placed(api: &Api, token: &str, key: &str, body: &Value) -> (String, bool) {
    let mut in_flight = false;
    let id = wait_for(
        &format!("an answer for {key}"),
        Duration::from_secs(300),
        || match post_order(api, token, key, body) {
            Some((202, answer)) => Some(answer["id"].as_str().unwrap().to_string()),
            Some((409 | 503, _)) | None => {
                in_flight = true;
                std::thread::sleep(Duration::from_millis(500));
                None
            }
            Some((status, answer)) => panic!("{key}: unexpected {status} {answer}"),
        },
    );
    (id, in_flight)
}

/// The customer's orders, every page.
fn orders_of(api: &Api, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let body = api
            .get(
                &format!("/api/orders?page={page}&page_size=100"),
                Some(token),
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

#[test]
fn retries_after_kill_9_place_each_order_once_and_charge_it_once() {
    let _limit = TimeLimit::new("retries_after_kill_9", Duration::from_secs(600));
    let mut node = start("120000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "KEYED-1");
    api.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": STOCK}),
    )
    .expect(200);
    let (_, token) = customer(&api, "keyed@example.com");
    let body = order_body(&product_id, 1, GOOD_CARD);
    let keys: Vec<String> = (0..ORDERS).map(|i| format!("crash-order-{i}")).collect();

    // Every request at once; the node is killed once a quarter of them are answered, so
    // the rest are in flight (some placed, not yet answered; some not yet placed).
    let answered = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = keys
        .iter()
        .map(|key| {
            let (api, token, key, body) =
                (Api::new(&node), token.clone(), key.clone(), body.clone());
            let answered = answered.clone();
            std::thread::spawn(move || {
                let answer = post_order(&api, &token, &key, &body);
                answered.fetch_add(1, Ordering::SeqCst);
                answer
            })
        })
        .collect();
    wait_for(
        "a quarter of the orders answered",
        Duration::from_secs(120),
        || (answered.load(Ordering::SeqCst) >= ORDERS / 4).then_some(()),
    );
    node.kill();
    let first_answers: Vec<Option<(u16, Value)>> = senders
        .into_iter()
        .map(|sender| sender.join().unwrap())
        .collect();
    node.restart();

    // Every request again, same key, same body, until answered.
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    let answered_first = first_answers.iter().filter(|a| a.is_some()).count();
    let mut waited = 0;
    for (key, first) in keys.iter().zip(&first_answers) {
        let (id, in_flight) = retry_until_placed(&api, &token, key, &body);
        waited += usize::from(in_flight);
        if let Some((202, answer)) = first {
            assert_eq!(
                answer["id"],
                id.as_str(),
                "{key}: a retry answers the first order"
            );
        }
        placed.insert(key.clone(), id);
    }
    eprintln!(
        "{answered_first} of {ORDERS} answered before the kill; {waited} retries waited for \
         their key (in flight at the kill)"
    );
    let distinct: BTreeSet<&String> = placed.values().collect();
    assert_eq!(distinct.len(), ORDERS, "one order per key: {placed:?}");

    // The same key with another request is refused, and places nothing.
    let other = order_body(&product_id, 2, GOOD_CARD);
    let (status, answer) = post_order(&api, &token, &keys[0], &other).unwrap();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "idempotency_key_reused");

    // Exactly the keyed orders exist.
    let listed: BTreeSet<String> = orders_of(&api, &token)
        .iter()
        .map(|order| order["id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = placed.values().cloned().collect();
    assert_eq!(
        listed, expected,
        "the customer has one order per key, no more"
    );

    // Each order ends, with at most one charge (exactly one if confirmed).
    let mut confirmed: u64 = 0;
    for id in placed.values() {
        let status = wait_for(
            &format!("order {id} final"),
            Duration::from_secs(180),
            || {
                let status = order(&api, &token, id)["status"].as_str()?.to_string();
                (status == "confirmed" || status == "cancelled").then_some(status)
            },
        );
        let charges = api
            .get(
                &format!("/api/payments/provider/charges?order_id={id}"),
                Some(&admin),
            )
            .expect(200)
            .body["items"]
            .as_array()
            .unwrap()
            .len();
        if status == "confirmed" {
            confirmed += 1;
            assert_eq!(charges, 1, "order {id} is charged once");
        } else {
            assert!(charges <= 1, "order {id} is charged at most once");
        }
    }
    assert!(confirmed > 0, "the orders go through");

    // The stock is taken once per confirmed order; cancelled ones gave theirs back.
    let stock = wait_for("the stock settled", Duration::from_secs(60), || {
        let stock = api
            .get(&format!("/api/inventory/{product_id}"), None)
            .expect(200)
            .body;
        let reserved = stock["reserved"].as_u64().unwrap();
        (reserved == confirmed).then_some(stock)
    });
    assert_eq!(stock["available"].as_u64().unwrap(), STOCK - confirmed);
}
