//! Issue 15, item 3: the services' topics accept only what the services wrote. Anyone who
//! reaches the Kafka port can write to `inventory-commands`; a `ReleaseInventory` written
//! there by hand used to release a paid order's reservation. Now every record the services
//! publish carries a `commerce-signature` header, and a record without a valid one is not
//! applied: it is dead-lettered with the reason, with one warning per kind of refusal.
//!
//! The forgeries start from a genuine `ReleaseInventory` read off the topic (a declined
//! order's compensation), changed only as an attacker would: the same JSON pointed at the
//! paid order and written with `commerce produce`; the genuine record, signature header
//! kept, with its payload altered; the genuine bytes replayed without the header; and the
//! genuine record, header and all, copied to another command topic.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::Duration;

use commerce_tests::cli::run_ok;
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, event_headers};
use commerce_tests::kafka::{self, TestProducer};
use commerce_tests::orders::{
    DECLINED_CARD, GOOD_CARD, create_product, customer, order_body, place, start, wait_for_command,
    wait_for_status,
};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use serde_json::{Value, json};

const COMMANDS: &str = "inventory-commands";
const SIGNATURE: &str = "commerce-signature";
const REFUSED: &str = "refused: not written by this platform's services";
const WARNING: &str = "refused a record not written by this platform's services; sending it";

/// One record as stored, raw: key, value and headers.
#[derive(Debug, Clone)]
struct RawRecord {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl RawRecord {
    fn envelope(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap()
    }
}

/// Every record of partition 0 of `topic` (the node's topics have one partition).
fn raw_records(node: &Node, topic: &str) -> Vec<RawRecord> {
    let (_, end) = kafka::watermarks(&node.bootstrap(), topic, 0);
    let consumer = kafka::consumer(&node.bootstrap());
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while i64::try_from(records.len()).unwrap() < end {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let headers = message
                .headers()
                .map(|all| {
                    all.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            records.push(RawRecord {
                key: message.key().unwrap_or_default().to_vec(),
                value: message.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    records
}

/// Writes a record with exactly these headers, as any Kafka client can.
fn write_raw(producer: &TestProducer, topic: &str, record: &RawRecord) {
    let mut headers = OwnedHeaders::new();
    for (name, value) in &record.headers {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_slice()),
        });
    }
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers),
        )
        .map_err(|(error, _)| error)
        .unwrap();
    kafka::flush_all_acked(producer);
}

/// `genuine`'s envelope pointed at `order_id` under a new event id: what an attacker who
/// read the topic writes to release another order's stock.
fn retargeted(genuine: &Value, order_id: &str, new_id: &str) -> Value {
    let mut forged = genuine.clone();
    forged["id"] = json!(new_id);
    forged["aggregate_id"] = json!(order_id);
    forged["data"]["order_id"] = json!(order_id);
    forged
}

fn stock(api: &Api, product: &str) -> (u64, u64) {
    let body = api
        .get(&format!("/api/inventory/{product}"), None)
        .expect(200)
        .body;
    (
        body["available"].as_u64().unwrap(),
        body["reserved"].as_u64().unwrap(),
    )
}

/// The dead letters of `topic` written by `group`: their `dlq-error` headers.
fn dead_letter_reasons(node: &Node, topic: &str, group: &str) -> Vec<String> {
    let dlq = format!("{topic}.dlq");
    if kafka::partitions_of(&node.bootstrap(), &dlq).is_none_or(|p| p.is_empty()) {
        return Vec::new();
    }
    event_headers(node, &dlq)
        .into_iter()
        .map(|(_, headers): (String, HashMap<String, String>)| headers)
        .filter(|headers| headers.get("dlq-consumer-group").map(String::as_str) == Some(group))
        .map(|headers| headers.get("dlq-error").cloned().unwrap_or_default())
        .collect()
}

#[test]
fn forged_commands_on_the_kafka_port_change_no_stock_and_are_dead_lettered() {
    let _limit = TimeLimit::new("forged_commands", Duration::from_secs(240));
    let node = start("30000");
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(&api, "FORGE-1");
    api.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": 5}),
    )
    .expect(200);
    let (_, token) = customer(&api, "mallory-target@example.com");

    // A paid order holds 2 units; a declined one releases its unit: a genuine release.
    let paid = place(&api, &token, &order_body(&product_id, 2, GOOD_CARD));
    wait_for_status(&api, &token, &paid, "confirmed");
    let declined = place(&api, &token, &order_body(&product_id, 1, DECLINED_CARD));
    wait_for_status(&api, &token, &declined, "cancelled");
    wait_for_command(&node, COMMANDS, "ReleaseInventory", &declined);
    wait_for(
        "the declined order's unit released",
        Duration::from_secs(30),
        || (stock(&api, &product_id) == (3, 2)).then_some(()),
    );

    let genuine = raw_records(&node, COMMANDS)
        .into_iter()
        .find(|record| {
            let envelope = record.envelope();
            envelope["type"] == "ReleaseInventory" && envelope["aggregate_id"] == declined.as_str()
        })
        .expect("the genuine ReleaseInventory");
    let genuine_envelope = genuine.envelope();

    // 1. The same JSON pointed at the paid order, three times, with `commerce produce`.
    let lines: String = (1..=3)
        .map(|n| {
            let forged = retargeted(&genuine_envelope, &paid, &format!("forged-{n}-{paid}"));
            format!("{paid}|{forged}\n")
        })
        .collect();
    run_ok(
        &[
            "produce",
            COMMANDS,
            "--key-separator",
            "|",
            "--brokers",
            &node.bootstrap(),
        ],
        lines.as_bytes(),
        Duration::from_secs(60),
    );

    let producer = kafka::producer(&node.bootstrap(), &[]);
    // 2. The genuine record, signature kept, its payload pointed at the paid order.
    let altered = RawRecord {
        key: paid.as_bytes().to_vec(),
        value: retargeted(&genuine_envelope, &paid, &format!("altered-{paid}"))
            .to_string()
            .into_bytes(),
        headers: genuine.headers.clone(),
    };
    write_raw(&producer, COMMANDS, &altered);
    // 3. The genuine bytes replayed without the signature header.
    let stripped = RawRecord {
        headers: genuine
            .headers
            .iter()
            .filter(|(name, _)| name != SIGNATURE)
            .cloned()
            .collect(),
        ..genuine.clone()
    };
    write_raw(&producer, COMMANDS, &stripped);
    // 4. The genuine record, header and all, copied to another service's command topic.
    write_raw(&producer, "payment-commands", &genuine);

    // A genuine order after the forgeries: its reservation queues behind them on the one
    // partition, so once it is confirmed the forgeries have been dealt with.
    let later = place(&api, &token, &order_body(&product_id, 1, GOOD_CARD));
    wait_for_status(&api, &token, &later, "confirmed");
    assert_eq!(
        stock(&api, &product_id),
        (2, 3),
        "(available, reserved): the paid order still holds its 2 units and the later order 1; \
         a forged release would have returned the paid order's units"
    );
    assert_eq!(
        wait_for_status(&api, &token, &paid, "confirmed")["status"],
        "confirmed"
    );

    assert!(
        genuine.headers.iter().any(|(name, _)| name == SIGNATURE),
        "the service signs what it publishes: {:?}",
        genuine.headers
    );

    // Every forgery is dead-lettered with its reason.
    let reasons = wait_for(
        "5 refusals in inventory-commands.dlq",
        Duration::from_secs(30),
        || {
            let reasons = dead_letter_reasons(&node, COMMANDS, "inventory");
            (reasons.len() >= 5).then_some(reasons)
        },
    );
    assert_eq!(reasons.len(), 5, "{reasons:#?}");
    assert!(
        reasons.iter().all(|reason| reason.starts_with(REFUSED)),
        "{reasons:#?}"
    );
    let unsigned = reasons.iter().filter(|r| r.contains("unsigned")).count();
    let mismatched = reasons
        .iter()
        .filter(|r| r.contains("does not match"))
        .count();
    assert_eq!((unsigned, mismatched), (4, 1), "{reasons:#?}");
    let copied = wait_for(
        "the copy in payment-commands.dlq",
        Duration::from_secs(30),
        || {
            let reasons = dead_letter_reasons(&node, "payment-commands", "payment");
            (!reasons.is_empty()).then_some(reasons)
        },
    );
    assert_eq!(copied.len(), 1, "{copied:#?}");
    assert!(
        copied[0].starts_with(REFUSED) && copied[0].contains("does not match"),
        "{copied:#?}"
    );

    // One warning per kind of refusal and topic, not one per record.
    let log = node.log();
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains(WARNING)).collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");

    // And orders keep flowing.
    let last = place(&api, &token, &order_body(&product_id, 1, GOOD_CARD));
    wait_for_status(&api, &token, &last, "confirmed");
    assert_eq!(stock(&api, &product_id), (1, 4));
}
