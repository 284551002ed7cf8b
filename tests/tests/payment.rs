//! Payment through its public interfaces: ProcessPayment and RefundPayment produced with
//! librdkafka onto `payment-commands` as the order saga sends them, answers read from
//! `payment-events`, the payment and the test provider's ledger read over HTTP. A replayed
//! command, a second refund and a kill -9 right after the command all charge exactly once.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, events, wait_for_event};
use commerce_tests::kafka::{self, Record, TestProducer};
use commerce_tests::{Node, TimeLimit, wait_for};
use serde_json::{Value, json};

const COMMANDS: &str = "payment-commands";
const EVENTS: &str = "payment-events";
const GOOD_CARD: &str = "4242424242424242";

/// A command envelope as the order saga sends it, keyed by the order id.
fn envelope(id: &str, command_type: &str, order_id: &str, data: Value) -> String {
    json!({
        "id": id,
        "type": command_type,
        "aggregate_id": order_id,
        "occurred_at": "2026-11-25T12:00:00.000Z",
        "correlation_id": format!("corr-{order_id}"),
        "causation_id": null,
        "version": 1,
        "data": data,
    })
    .to_string()
}

/// ProcessPayment as the saga sends it: the card as the provider's token (`tokenize`) and its
/// last four digits, never the number.
fn process_payment(id: &str, order_id: &str, customer_id: &str, card: &Value) -> String {
    envelope(
        id,
        "ProcessPayment",
        order_id,
        json!({
            "order_id": order_id,
            "customer_id": customer_id,
            "amount": {"amount": 4999, "currency": "USD"},
            "payment_token": card["token"],
            "card_last4": card["card_last4"],
            "idempotency_key": format!("order:{order_id}"),
        }),
    )
}

/// The test provider's token for a card (`POST /api/payments/tokens`).
fn tokenize(api: &Api, token: &str, card: &str) -> Value {
    let tokenized = api
        .post(
            "/api/payments/tokens",
            Some(token),
            &json!({"card_number": card}),
        )
        .expect(201)
        .body;
    assert!(tokenized["token"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(tokenized["card_last4"], &card[card.len() - 4..]);
    assert!(!tokenized.to_string().contains(card));
    tokenized
}

fn refund_payment(id: &str, order_id: &str) -> String {
    envelope(
        id,
        "RefundPayment",
        order_id,
        json!({"order_id": order_id, "reason": "shipment_failed", "idempotency_key": format!("refund:{order_id}")}),
    )
}

/// Sends `value` keyed by `order_id` and returns the acknowledged record.
fn send(producer: &TestProducer, order_id: &str, value: &str) -> Record {
    kafka::send(producer, COMMANDS, Some(order_id), value, None, None);
    kafka::flush_all_acked(producer)
        .into_iter()
        .rev()
        .find(|record| record.value_str() == value)
        .expect("the record was acknowledged")
}

/// Payment events about `order_id`, in order.
fn events_of(node: &Node, order_id: &str) -> Vec<Value> {
    events(node, EVENTS)
        .into_iter()
        .filter(|event| event["aggregate_id"] == order_id)
        .collect()
}

fn count(events: &[Value], event_type: &str) -> usize {
    events
        .iter()
        .filter(|event| event["type"] == event_type)
        .count()
}

/// Waits until the payment consumer's committed offset is past `record`: it has handled it.
fn wait_handled(node: &Node, record: &Record) {
    wait_for(
        "the payment consumer past the record",
        Duration::from_secs(60),
        || {
            commerce_tests::group::committed(
                &node.bootstrap(),
                "payment",
                COMMANDS,
                record.partition,
            )
            .filter(|offset| *offset > record.offset)
        },
    );
}

/// The provider's ledger entries for an order.
fn ledger(api: &Api, admin: &str, order_id: &str) -> Vec<Value> {
    api.get(
        &format!("/api/payments/provider/charges?order_id={order_id}"),
        Some(admin),
    )
    .expect(200)
    .body["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn wait_status(api: &Api, admin: &str, order_id: &str, status: &str) -> Value {
    wait_for(
        &format!("payment of {order_id} {status}"),
        Duration::from_secs(60),
        || {
            let reply = api.get(&format!("/api/payments/orders/{order_id}"), Some(admin));
            (reply.status == 200 && reply.body["status"] == status).then_some(reply.body)
        },
    )
}

#[test]
fn each_test_card_gets_its_answer() {
    let _limit = TimeLimit::new("each_test_card_gets_its_answer", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);
    let cases = [
        ("ord-good", GOOD_CARD, None),
        ("ord-declined", "4000000000000002", Some("card_declined")),
        ("ord-funds", "4000000000009995", Some("insufficient_funds")),
        ("ord-typo", "4242424242424241", Some("invalid_card")),
        ("ord-other", "5555555555554444", None),
    ];
    for (order_id, card, failure) in cases {
        let tokenized = if failure == Some("invalid_card") {
            // A number that is no card gets no token; a token the provider never issued is
            // what reaches payment then, and is declined the same way.
            let refused = api.post(
                "/api/payments/tokens",
                Some(&admin),
                &json!({"card_number": card}),
            );
            assert_eq!(refused.status, 400, "{}", refused.text);
            assert_eq!(refused.error_code(), "invalid_card");
            json!({"token": "tok_never_issued", "card_last4": &card[card.len() - 4..]})
        } else {
            tokenize(&api, &admin, card)
        };
        send(
            &producer,
            order_id,
            &process_payment(&format!("cmd-{order_id}"), order_id, "cust-1", &tokenized),
        );
    }
    for (order_id, card, failure) in cases {
        let answer = if failure.is_some() {
            "PaymentFailed"
        } else {
            "PaymentProcessed"
        };
        wait_for_event(&node, EVENTS, answer, |event| {
            event["aggregate_id"] == order_id && event["type"] == answer
        });
        let seen = events_of(&node, order_id);
        let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["PaymentInitiated", answer], "{order_id}");
        let reply = &seen[1];
        assert_eq!(reply["correlation_id"], format!("corr-{order_id}"));
        assert_eq!(reply["causation_id"], format!("cmd-{order_id}"));
        assert_eq!(reply["data"]["order_id"], order_id);
        assert_eq!(reply["data"]["customer_id"], "cust-1");
        assert_eq!(
            reply["data"]["amount"],
            json!({"amount": 4999, "currency": "USD"})
        );
        match failure {
            Some(reason) => {
                assert_eq!(reply["data"]["reason"], reason, "{order_id}");
                assert!(ledger(&api, &admin, order_id).is_empty(), "{order_id}");
            }
            None => {
                assert_eq!(reply["data"]["card_last4"], &card[12..]);
                assert_eq!(ledger(&api, &admin, order_id).len(), 1, "{order_id}");
            }
        }
        assert!(
            !reply.to_string().contains(card),
            "no event carries the card number: {reply}"
        );
    }
    let failed = api
        .get("/api/payments/orders/ord-funds", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_reason"], "insufficient_funds");
}

#[test]
fn a_replayed_process_payment_charges_once() {
    let _limit = TimeLimit::new("replayed_process_payment", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);
    let card = tokenize(&api, &admin, GOOD_CARD);

    send(
        &producer,
        "ord-r",
        &process_payment("cmd-r-1", "ord-r", "cust-1", &card),
    );
    wait_status(&api, &admin, "ord-r", "captured");
    // The same command in a new envelope (a saga retry after a timeout), twice.
    send(
        &producer,
        "ord-r",
        &process_payment("cmd-r-2", "ord-r", "cust-1", &card),
    );
    let last = send(
        &producer,
        "ord-r",
        &process_payment("cmd-r-3", "ord-r", "cust-1", &card),
    );
    wait_handled(&node, &last);

    let seen = events_of(&node, "ord-r");
    assert_eq!(count(&seen, "PaymentInitiated"), 1, "{seen:#?}");
    assert_eq!(count(&seen, "PaymentProcessed"), 1, "{seen:#?}");
    assert_eq!(ledger(&api, &admin, "ord-r").len(), 1);
    let payment = wait_status(&api, &admin, "ord-r", "captured");
    assert_eq!(payment["card_last4"], "4242");
    assert!(!payment.to_string().contains(GOOD_CARD));
}

#[test]
fn refund_payment_twice_refunds_once() {
    let _limit = TimeLimit::new("refund_twice_refunds_once", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);

    send(
        &producer,
        "ord-f",
        &process_payment(
            "cmd-f-1",
            "ord-f",
            "cust-1",
            &tokenize(&api, &admin, GOOD_CARD),
        ),
    );
    let captured = wait_status(&api, &admin, "ord-f", "captured");
    send(&producer, "ord-f", &refund_payment("cmd-f-2", "ord-f"));
    let last = send(&producer, "ord-f", &refund_payment("cmd-f-3", "ord-f"));
    wait_handled(&node, &last);
    let refunded = wait_status(&api, &admin, "ord-f", "refunded");
    assert_eq!(refunded["refunds"].as_array().unwrap().len(), 1);

    // An admin's refund of the same payment refunds nothing more.
    let payment_id = captured["payment_id"].as_str().unwrap();
    let again = api
        .post(
            &format!("/api/payments/{payment_id}/refund"),
            Some(&admin),
            &json!({}),
        )
        .expect(200)
        .body;
    assert_eq!(again["refunds"].as_array().unwrap().len(), 1);

    let seen = events_of(&node, "ord-f");
    assert_eq!(count(&seen, "RefundProcessed"), 1, "{seen:#?}");
    let refund = seen
        .iter()
        .find(|event| event["type"] == "RefundProcessed")
        .unwrap();
    assert_eq!(refund["causation_id"], "cmd-f-2");
    assert_eq!(refund["data"]["amount"]["amount"], 4999);
    let charges = ledger(&api, &admin, "ord-f");
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["refunded"], 4999);
}

#[test]
fn an_admin_refund_over_http_refunds_once() {
    let _limit = TimeLimit::new("admin_refund_once", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);
    send(
        &producer,
        "ord-a",
        &process_payment(
            "cmd-a-1",
            "ord-a",
            "cust-1",
            &tokenize(&api, &admin, GOOD_CARD),
        ),
    );
    let payment_id = wait_status(&api, &admin, "ord-a", "captured")["payment_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        api.post(
            &format!("/api/payments/{payment_id}/refund"),
            Some(&admin),
            &json!({}),
        )
        .expect(200);
    }
    wait_status(&api, &admin, "ord-a", "refunded");
    wait_for_event(&node, EVENTS, "RefundProcessed", |event| {
        event["aggregate_id"] == "ord-a" && event["type"] == "RefundProcessed"
    });
    assert_eq!(count(&events_of(&node, "ord-a"), "RefundProcessed"), 1);
    assert_eq!(ledger(&api, &admin, "ord-a")[0]["refunded"], 4999);

    // A declined payment has nothing to refund.
    send(
        &producer,
        "ord-d",
        &process_payment(
            "cmd-d-1",
            "ord-d",
            "cust-1",
            &tokenize(&api, &admin, "4000000000000002"),
        ),
    );
    let declined = wait_status(&api, &admin, "ord-d", "failed");
    let refused = api.post(
        &format!(
            "/api/payments/{}/refund",
            declined["payment_id"].as_str().unwrap()
        ),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.error_code(), "not_refundable");
}

#[test]
fn payment_routes_answer_the_owner_and_admins_only() {
    let _limit = TimeLimit::new("payment_routes_owner_admin", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let owner = api.register("payer@example.com", "payer-password-1", "Pay Er");
    let owner_id = owner["id"].as_str().unwrap();
    api.register("other@example.com", "other-password-1", "Oth Er");
    let owner_token = api.token("payer@example.com", "payer-password-1");
    let other_token = api.token("other@example.com", "other-password-1");
    let producer = kafka::platform_producer(&node, &[]);
    send(
        &producer,
        "ord-o",
        &process_payment(
            "cmd-o-1",
            "ord-o",
            owner_id,
            &tokenize(&api, &admin, GOOD_CARD),
        ),
    );
    let payment = wait_status(&api, &admin, "ord-o", "captured");
    let payment_id = payment["payment_id"].as_str().unwrap();

    for path in [
        "/api/payments/orders/ord-o".to_string(),
        format!("/api/payments/{payment_id}"),
    ] {
        let mine = api.get(&path, Some(&owner_token)).expect(200).body;
        assert_eq!(mine["payment_id"], payment_id);
        assert_eq!(mine["order_id"], "ord-o");
        assert_eq!(mine["status"], "captured");
        assert_eq!(mine["amount"], json!({"amount": 4999, "currency": "USD"}));
        assert_eq!(mine["card_last4"], "4242");
        assert_eq!(mine["refunds"], json!([]));
        // Another customer's payment answers as a missing one (as orders do).
        assert_eq!(api.get(&path, Some(&other_token)).status, 404, "{path}");
        assert_eq!(api.get(&path, None).status, 401, "{path}");
        api.get(&path, Some(&admin)).expect(200);
    }
    assert_eq!(
        api.get("/api/payments/orders/no-such-order", Some(&admin))
            .status,
        404
    );
    // Refunds and the provider's books are for admins.
    let refund = api.post(
        &format!("/api/payments/{payment_id}/refund"),
        Some(&owner_token),
        &json!({}),
    );
    assert_eq!(refund.status, 403, "{}", refund.text);
    assert_eq!(
        api.get(
            "/api/payments/provider/charges?order_id=ord-o",
            Some(&owner_token)
        )
        .status,
        403
    );
    assert_eq!(
        api.get("/api/payments/provider/charges", Some(&admin))
            .status,
        400
    );
}

#[test]
fn kill_right_after_process_payment_still_charges_once() {
    let _limit = TimeLimit::new("kill_after_process_payment", Duration::from_secs(180));
    let mut node = Node::start_with_env(&ADMIN_ENV);
    let card = {
        let api = Api::new(&node);
        tokenize(&api, &api.token(ADMIN_EMAIL, ADMIN_PASSWORD), GOOD_CARD)
    };
    let producer = kafka::platform_producer(&node, &[]);
    let orders: Vec<String> = (0..5).map(|n| format!("ord-k{n}")).collect();
    for order_id in &orders {
        kafka::send(
            &producer,
            COMMANDS,
            Some(order_id),
            &process_payment(&format!("cmd-{order_id}"), order_id, "cust-1", &card),
            None,
            None,
        );
    }
    kafka::flush_all_acked(&producer);
    drop(producer);
    node.kill();
    node.restart();

    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    for order_id in &orders {
        wait_status(&api, &admin, order_id, "captured");
        assert_eq!(ledger(&api, &admin, order_id).len(), 1, "{order_id}");
    }
    for order_id in &orders {
        let seen = events_of(&node, order_id);
        assert_eq!(count(&seen, "PaymentProcessed"), 1, "{order_id}: {seen:#?}");
    }
}
