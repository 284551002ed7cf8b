//! Service consumers with real clients: catalog keeps a read model of identity's users from
//! `identity-events` (`GET /api/catalog/authors/{id}`). Events are produced with librdkafka
//! straight onto the topic, as any other producer could: a poison record goes to
//! `identity-events.dlq` after the retries and the following events still apply; an event
//! delivered twice applies once; kill -9 in the middle of a backlog loses and repeats nothing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api};
use commerce_tests::kafka::{self, TestProducer};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
use serde_json::{Value, json};

const TOPIC: &str = "identity-events";
const DLQ: &str = "identity-events.dlq";

/// An identity event envelope as identity publishes it.
fn envelope(id: &str, event_type: &str, user_id: &str, data: Value) -> String {
    json!({
        "id": id,
        "type": event_type,
        "aggregate_id": user_id,
        "occurred_at": "2026-11-25T12:00:00.000Z",
        "correlation_id": format!("corr-{id}"),
        "causation_id": null,
        "version": 1,
        "data": data,
    })
    .to_string()
}

fn registered(id: &str, user_id: &str, name: &str) -> String {
    envelope(
        id,
        "UserRegistered",
        user_id,
        json!({"user_id": user_id, "email": format!("{user_id}@example.com"), "name": name, "roles": ["customer"]}),
    )
}

fn roles_changed(id: &str, user_id: &str, roles: &[&str]) -> String {
    envelope(
        id,
        "UserRolesChanged",
        user_id,
        json!({"user_id": user_id, "roles": roles}),
    )
}

fn send(producer: &TestProducer, key: &str, value: &str) {
    kafka::send(producer, TOPIC, Some(key), value, None, None);
}

/// The author read model of `user_id`, once it exists.
fn author(api: &Api, admin: &str, user_id: &str) -> Option<Value> {
    let reply = api.get(&format!("/api/catalog/authors/{user_id}"), Some(admin));
    match reply.status {
        200 => Some(reply.body),
        404 => None,
        other => panic!("unexpected answer {other}: {}", reply.text),
    }
}

/// Waits until the author's version reaches `version` and returns the author.
fn wait_for_version(api: &Api, admin: &str, user_id: &str, version: u64) -> Value {
    wait_for(
        &format!("author {user_id} at version {version}"),
        Duration::from_secs(60),
        || author(api, admin, user_id).filter(|author| author["version"] == version),
    )
}

/// Every record of `topic` (all partitions) with its headers.
fn records_with_headers(node: &Node, topic: &str) -> Vec<(kafka::Record, HashMap<String, String>)> {
    let partitions = kafka::partitions_of(&node.bootstrap(), topic).unwrap_or_default();
    let consumer = kafka::consumer(&node.bootstrap());
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in &partitions {
        assignment
            .add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at_end = std::collections::HashSet::new();
    let mut out = Vec::new();
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let mut headers = HashMap::new();
                if let Some(all) = message.headers() {
                    for header in all.iter() {
                        let value = header.value.map(String::from_utf8_lossy);
                        headers.insert(header.key.to_string(), value.unwrap_or_default().into());
                    }
                }
                out.push((kafka::Record::of(&message), headers));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => eprintln!("consumer error while reading {topic}: {error}"),
        }
    }
    out
}

#[test]
fn registered_users_reach_the_catalog_read_model() {
    let _limit = TimeLimit::new("registered_users_reach_catalog", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let user = api.register("reader@example.com", "reader-password-1", "Rea Der");
    let user_id = user["id"].as_str().unwrap();

    let seen = wait_for_version(&api, &admin, user_id, 1);
    assert_eq!(seen["name"], "Rea Der");
    assert_eq!(seen["roles"], json!(["customer"]));
    assert!(
        seen.get("email").is_none(),
        "catalog keeps no email: {seen}"
    );

    // A product names its creator, whom the read model knows.
    let created = api
        .post(
            "/api/catalog/products",
            Some(&admin),
            &commerce_tests::http::product("AUTH-1", "Lamp", "home", 500),
        )
        .expect(201)
        .body;
    let creator = created["created_by"].as_str().unwrap();
    let creator = wait_for_version(&api, &admin, creator, 1);
    assert_eq!(creator["roles"], json!(["admin"]));

    // The read model is admin-only.
    let customer = api.token("reader@example.com", "reader-password-1");
    let refused = api.get(&format!("/api/catalog/authors/{user_id}"), Some(&customer));
    assert_eq!(refused.status, 403, "{}", refused.text);
}

#[test]
fn poison_event_goes_to_the_dead_letter_topic_and_consumption_goes_on() {
    let _limit = TimeLimit::new("poison_event_to_dlq", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);

    // Unparseable JSON, then an envelope whose data the handler rejects, then a good event on
    // the same key (so the same partition, behind the poison).
    send(&producer, "user-p", "{this is not json");
    send(
        &producer,
        "user-p",
        &envelope(
            "ev-bad-data",
            "UserRegistered",
            "user-p",
            json!({"name": 5}),
        ),
    );
    send(
        &producer,
        "user-p",
        &registered("ev-good-1", "user-p", "Pat"),
    );
    send(
        &producer,
        "user-q",
        &registered("ev-good-2", "user-q", "Quinn"),
    );
    let acked = kafka::flush_all_acked(&producer);
    let poison = acked
        .iter()
        .find(|record| record.value.starts_with(b"{this"))
        .unwrap()
        .clone();
    let bad_data = acked
        .iter()
        .find(|record| record.value_str().contains("ev-bad-data"))
        .unwrap()
        .clone();

    // The events behind the poison apply, once each.
    assert_eq!(wait_for_version(&api, &admin, "user-p", 1)["name"], "Pat");
    assert_eq!(wait_for_version(&api, &admin, "user-q", 1)["name"], "Quinn");

    // Other services' groups follow identity-events too and dead-letter the same records
    // under their own group name: catalog's are the ones this test is about.
    let dead = wait_for("two dead letters", Duration::from_secs(30), || {
        let all: Vec<_> = records_with_headers(&node, DLQ)
            .into_iter()
            .filter(|(_, headers)| headers["dlq-consumer-group"] == "catalog")
            .collect();
        (all.len() >= 2).then_some(all)
    });
    assert_eq!(dead.len(), 2, "{dead:#?}");
    for ((record, headers), source) in dead.iter().zip([&poison, &bad_data]) {
        assert_eq!(record.key.as_deref(), Some(&b"user-p"[..]));
        assert_eq!(
            record.value, source.value,
            "the dead letter keeps the value as sent"
        );
        assert_eq!(headers["dlq-source-topic"], TOPIC);
        assert_eq!(
            headers["dlq-source-partition"],
            source.partition.to_string()
        );
        assert_eq!(headers["dlq-source-offset"], source.offset.to_string());
        assert_eq!(headers["dlq-consumer-group"], "catalog");
        // Every attempt was made before giving up.
        assert_eq!(headers["dlq-attempts"], "4");
        assert!(!headers["dlq-error"].is_empty());
    }
    assert!(
        dead[0].1["dlq-error"].contains("not an event envelope"),
        "{:?}",
        dead[0].1
    );
    // The poison is behind the group's committed offset (the broker's own, as Kafka clients
    // and `commerce group describe catalog` see it): the consumer moved on.
    let committed = wait_for(
        "catalog's offset past the poison",
        Duration::from_secs(30),
        || {
            commerce_tests::group::committed(&node.bootstrap(), "catalog", TOPIC, poison.partition)
                .filter(|offset| *offset > bad_data.offset)
        },
    );
    assert!(committed > poison.offset);
}

#[test]
fn the_same_event_delivered_twice_applies_once() {
    let _limit = TimeLimit::new("same_event_twice_applies_once", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);

    let first = registered("ev-dup-1", "user-d", "Dee");
    send(&producer, "user-d", &first);
    send(&producer, "user-d", &first);
    send(
        &producer,
        "user-d",
        &roles_changed("ev-dup-2", "user-d", &["customer", "admin"]),
    );
    send(
        &producer,
        "user-d",
        &roles_changed("ev-dup-2", "user-d", &["customer", "admin"]),
    );
    kafka::flush_all_acked(&producer);
    // A marker event after the duplicates: once it is applied, so is everything before it.
    send(
        &producer,
        "user-d",
        &roles_changed("ev-dup-3", "user-d", &["customer"]),
    );
    kafka::flush_all_acked(&producer);

    let seen = wait_for_version(&api, &admin, "user-d", 3);
    assert_eq!(seen["name"], "Dee");
    assert_eq!(seen["roles"], json!(["customer"]));
    // And the same event again later, after a restart, still applies once.
    let mut node = node;
    node.terminate();
    node.restart();
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);
    send(&producer, "user-d", &first);
    send(
        &producer,
        "user-d",
        &roles_changed("ev-dup-4", "user-d", &["admin"]),
    );
    kafka::flush_all_acked(&producer);
    let seen = wait_for(
        "the event after the replayed one",
        Duration::from_secs(60),
        || author(&api, &admin, "user-d").filter(|author| author["roles"] == json!(["admin"])),
    );
    assert_eq!(seen["version"], 4, "{seen}");
}

#[test]
fn kill_during_consumption_loses_no_event_and_applies_none_twice() {
    let _limit = TimeLimit::new("kill_during_consumption", Duration::from_secs(240));
    const USERS: usize = 4;
    const EVENTS_PER_USER: usize = 150;
    let mut node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let producer = kafka::platform_producer(&node, &[]);
    for round in 0..EVENTS_PER_USER {
        for user in 0..USERS {
            let user_id = format!("user-k{user}");
            let role = if round % 2 == 0 { "customer" } else { "admin" };
            let event = roles_changed(&format!("ev-k{user}-{round}"), &user_id, &[role]);
            send(&producer, &user_id, &event);
        }
    }
    kafka::flush_all_acked(&producer);

    // Kill as soon as the consumer has made some progress (it may already be done on a fast
    // machine; the totals below hold either way).
    let progress = wait_for("consumption to start", Duration::from_secs(60), || {
        author(&api, &admin, "user-k0")
    });
    node.kill();
    eprintln!(
        "killed with user-k0 at version {} of {EVENTS_PER_USER}",
        progress["version"]
    );
    node.restart();
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    for user in 0..USERS {
        let user_id = format!("user-k{user}");
        let seen = wait_for_version(&api, &admin, &user_id, EVENTS_PER_USER as u64);
        assert_eq!(
            seen["roles"],
            json!(["admin"]),
            "the last event is applied last"
        );
    }
    // A duplicate applied anywhere would have carried a version past EVENTS_PER_USER before
    // the last event, and the wait above (for exactly that version) would have failed.
    assert!(records_with_headers(&node, DLQ).is_empty());
}
