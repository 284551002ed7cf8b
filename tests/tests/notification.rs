//! Notification through its public interfaces: a user registered over HTTP gets a welcome
//! message; OrderConfirmed, PaymentProcessed and ShipmentDelivered envelopes produced with
//! librdkafka notify their customer once each with the variables filled in; an edited
//! template is used for the next message; a poison event goes to the dead-letter topic and
//! the next good event is still processed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, wait_for_event};
use commerce_tests::kafka::{self, TestProducer};
use commerce_tests::{Node, TimeLimit, wait_for};
use serde_json::{Value, json};

fn envelope(id: &str, event_type: &str, aggregate_id: &str, data: Value) -> String {
    json!({
        "id": id,
        "type": event_type,
        "aggregate_id": aggregate_id,
        "occurred_at": "2026-11-25T12:00:00.000Z",
        "correlation_id": format!("corr-{id}"),
        "causation_id": null,
        "version": 1,
        "data": data,
    })
    .to_string()
}

fn send(producer: &TestProducer, topic: &str, key: &str, value: &str) {
    kafka::send(producer, topic, Some(key), value, None, None);
    kafka::flush_all_acked(producer);
}

fn order_confirmed(id: &str, order_id: &str, customer_id: &str) -> String {
    envelope(
        id,
        "OrderConfirmed",
        order_id,
        json!({"order_id": order_id, "customer_id": customer_id, "lines": [],
               "total": {"amount": 12345, "currency": "USD"}, "tracking_number": "TRK-42"}),
    )
}

/// The caller's notifications.
fn mine(api: &Api, token: &str) -> Vec<Value> {
    api.get("/api/notifications", Some(token)).expect(200).body["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the caller has a notification from `template` matching `pred`.
fn wait_for_notification(
    api: &Api,
    token: &str,
    template: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(
        &format!("a {template} notification"),
        Duration::from_secs(60),
        || {
            mine(api, token)
                .into_iter()
                .find(|item| item["template"] == template && pred(item))
        },
    )
}

fn count(items: &[Value], template: &str) -> usize {
    items
        .iter()
        .filter(|item| item["template"] == template)
        .count()
}

#[test]
fn the_customer_is_notified_once_per_event_with_the_variables_filled() {
    let _limit = TimeLimit::new("notified_once_per_event", Duration::from_secs(180));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let user = api.register("ada@example.com", "ada-password-1", "Ada Lovelace");
    let user_id = user["id"].as_str().unwrap().to_string();
    let token = api.token("ada@example.com", "ada-password-1");
    api.register("bob@example.com", "bob-password-1", "Bob");
    let bob = api.token("bob@example.com", "bob-password-1");

    let welcome = wait_for_notification(&api, &token, "welcome", |_| true);
    assert_eq!(welcome["channel"], "email");
    assert!(
        welcome["subject"]
            .as_str()
            .unwrap()
            .contains("Ada Lovelace"),
        "{welcome}"
    );
    assert!(
        welcome["body"]
            .as_str()
            .unwrap()
            .contains("ada@example.com")
    );
    assert!(!welcome["at"].as_str().unwrap().is_empty());

    let producer = kafka::platform_producer(&node, &[]);
    let confirmed = order_confirmed("ev-oc-1", "ord-n1", &user_id);
    send(&producer, "order-events", "ord-n1", &confirmed);
    // Delivered twice: notifies once.
    send(&producer, "order-events", "ord-n1", &confirmed);
    send(
        &producer,
        "payment-events",
        "ord-n1",
        &envelope(
            "ev-pp-1",
            "PaymentProcessed",
            "ord-n1",
            json!({"payment_id": "pay-1", "order_id": "ord-n1", "customer_id": user_id,
                   "amount": {"amount": 12345, "currency": "USD"}, "card_last4": "4242"}),
        ),
    );
    send(
        &producer,
        "shipping-events",
        "ord-n1",
        &envelope(
            "ev-sd-1",
            "ShipmentDelivered",
            "ord-n1",
            json!({"shipment_id": "shp-1", "order_id": "ord-n1", "customer_id": user_id,
                   "tracking_number": "TRK-42"}),
        ),
    );
    // Events notification does not send anything for.
    send(
        &producer,
        "payment-events",
        "ord-n1",
        &envelope(
            "ev-pi-1",
            "PaymentInitiated",
            "ord-n1",
            json!({"payment_id": "pay-1", "order_id": "ord-n1", "customer_id": user_id,
                   "amount": {"amount": 12345, "currency": "USD"}}),
        ),
    );

    let order = wait_for_notification(&api, &token, "order_confirmed", |_| true);
    assert!(order["subject"].as_str().unwrap().contains("ord-n1"));
    let body = order["body"].as_str().unwrap();
    assert!(
        body.contains("ord-n1") && body.contains("123.45 USD") && body.contains("TRK-42"),
        "{body}"
    );
    let paid = wait_for_notification(&api, &token, "payment_received", |_| true);
    let body = paid["body"].as_str().unwrap();
    assert!(
        body.contains("123.45 USD") && body.contains("4242") && body.contains("ord-n1"),
        "{body}"
    );
    let delivered = wait_for_notification(&api, &token, "shipment_delivered", |_| true);
    assert!(delivered["body"].as_str().unwrap().contains("TRK-42"));

    // Each delivered message is announced on notification-events.
    wait_for_event(&node, "notification-events", "NotificationSent", |event| {
        event["type"] == "NotificationSent"
            && event["data"]["template"] == "shipment_delivered"
            && event["data"]["recipient_id"] == user_id.as_str()
    });

    // A later event on the duplicated order's partition is processed, so the duplicate was
    // seen: still one order_confirmed notification.
    send(
        &producer,
        "order-events",
        "ord-n1",
        &order_confirmed("ev-oc-2", "ord-n1", &user_id),
    );
    wait_for(
        "the second order_confirmed, delivered",
        Duration::from_secs(60),
        || {
            // The worker delivers after the consumer applied: wait for both.
            let items = mine(&api, &token);
            let delivered = items.iter().all(|item| item["status"] == "sent");
            (count(&items, "order_confirmed") >= 2 && delivered).then_some(())
        },
    );
    let items = mine(&api, &token);
    assert_eq!(count(&items, "order_confirmed"), 2, "{items:#?}");
    assert_eq!(count(&items, "welcome"), 1);
    assert_eq!(count(&items, "payment_received"), 1);
    assert_eq!(count(&items, "shipment_delivered"), 1);
    assert!(
        items.iter().all(|item| item["status"] == "sent"),
        "{items:#?}"
    );

    // Another user sees none of them; the admin sees them all.
    let bobs = mine(&api, &bob);
    assert_eq!(bobs.len(), 1, "only Bob's welcome: {bobs:#?}");
    assert!(
        bobs[0]["body"]
            .as_str()
            .unwrap()
            .contains("bob@example.com")
    );
    let all = api
        .get("/api/notifications/all", Some(&admin))
        .expect(200)
        .body;
    // Ada's and Bob's welcome at least.
    assert!(all["items"].as_array().unwrap().len() > items.len());
    assert_eq!(api.get("/api/notifications/all", Some(&token)).status, 403);
    assert_eq!(api.get("/api/notifications", None).status, 401);
}

#[test]
fn an_edited_template_is_used_for_the_next_message_and_unknown_variables_are_refused() {
    let _limit = TimeLimit::new("edited_template", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);

    let templates = api
        .get("/api/notifications/templates", Some(&admin))
        .expect(200)
        .body;
    let names: Vec<&str> = templates["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "welcome",
        "order_confirmed",
        "payment_received",
        "shipment_delivered",
    ] {
        assert!(names.contains(&name), "{name} is seeded: {names:?}");
    }

    let refused = api.put(
        "/api/notifications/templates/welcome",
        Some(&admin),
        &json!({"channels": {"email": {"subject": "Hi {{nickname}}", "body": "Welcome"}}}),
    );
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["field"], "channels.email.subject");
    assert_eq!(
        api.put(
            "/api/notifications/templates/no_such_template",
            Some(&admin),
            &json!({"channels": {"email": {"subject": "x", "body": "y"}}}),
        )
        .status,
        404
    );
    let edited = api
        .put(
            "/api/notifications/templates/welcome",
            Some(&admin),
            &json!({"channels": {
                "email": {"subject": "Ahoy {{name}}", "body": "Your id is {{user_id}}."},
                "sms": {"subject": "Ahoy", "body": "Ahoy {{name}}"}
            }}),
        )
        .expect(200)
        .body;
    assert_eq!(edited["channels"]["email"]["subject"], "Ahoy {{name}}");

    let user = api.register("cy@example.com", "cy-password-12", "Cy");
    let user_id = user["id"].as_str().unwrap();
    let token = api.token("cy@example.com", "cy-password-12");
    let email = wait_for_notification(&api, &token, "welcome", |item| {
        item["channel"] == "email" && item["status"] == "sent"
    });
    assert_eq!(email["subject"], "Ahoy Cy");
    assert_eq!(email["body"], format!("Your id is {user_id}."));
    // Nobody's phone number is known: the SMS fails, and says so.
    let sms = wait_for_notification(&api, &token, "welcome", |item| {
        item["channel"] == "sms" && item["status"] == "failed"
    });
    assert_eq!(sms["failure_reason"], "no_address");
    wait_for_event(
        &node,
        "notification-events",
        "NotificationFailed",
        |event| event["type"] == "NotificationFailed" && event["data"]["reason"] == "no_address",
    );
    let customer = api.put(
        "/api/notifications/templates/welcome",
        Some(&token),
        &json!({"channels": {"email": {"subject": "x", "body": "y"}}}),
    );
    assert_eq!(customer.status, 403);
}

#[test]
fn a_poison_event_goes_to_the_dead_letter_topic_and_the_next_is_processed() {
    let _limit = TimeLimit::new("notification_poison", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let user = api.register("dee@example.com", "dee-password-1", "Dee");
    let user_id = user["id"].as_str().unwrap();
    let token = api.token("dee@example.com", "dee-password-1");
    let producer = kafka::platform_producer(&node, &[]);

    let poison = envelope(
        "ev-poison",
        "OrderConfirmed",
        "ord-p",
        json!({"order_id": "ord-p", "lines": [], "total": {"amount": 1, "currency": "USD"}}),
    );
    send(&producer, "order-events", "ord-p", &poison);
    send(
        &producer,
        "order-events",
        "ord-p",
        &order_confirmed("ev-after", "ord-p", user_id),
    );

    let after = wait_for_notification(&api, &token, "order_confirmed", |_| true);
    assert!(after["body"].as_str().unwrap().contains("ord-p"));
    let dead = wait_for_event(
        &node,
        "order-events.dlq",
        "the poison in the DLQ",
        |event| event["id"] == "ev-poison",
    );
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(count(&mine(&api, &token), "order_confirmed"), 1);
}
