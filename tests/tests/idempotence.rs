//! The idempotent producer: retries after a broker crash or restart are recognised and not
//! stored twice, and nothing acknowledged is lost or reordered.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use commerce_tests::kafka::{self, Record};
use commerce_tests::proxy::{PROXY_HOST, ResponseDropper};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::producer::Producer;

const KEYS: u64 = 8;

/// One idempotent producer sends `k<n>:<i>` records (i counting up, key = i % KEYS) while
/// the node is killed -9 twice and stopped with SIGTERM twice. Per key, the stored values
/// must be exactly the values sent, in order: no duplicate (a retry stored twice), no gap
/// (a record lost), and every acknowledged record at its acknowledged offset.
#[test]
fn idempotent_producer_stores_each_record_once_across_restarts() {
    let _limit = TimeLimit::new(
        "idempotent_producer_stores_each_record_once_across_restarts",
        Duration::from_secs(300),
    );
    let mut node = Node::start();
    let topic = "orders-idempotent";
    let partitions = [0, 1];
    kafka::create_topic(&node.bootstrap(), topic, 2, &[]);

    // A delivery timeout far longer than a restart, so every record is eventually
    // delivered; librdkafka retries the in-flight batches after each restart.
    let producer = Arc::new(kafka::producer(
        &node.bootstrap(),
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "120000"),
            ("retry.backoff.ms", "50"),
        ],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = std::thread::spawn({
        let (producer, stop, sent) = (Arc::clone(&producer), Arc::clone(&stop), Arc::clone(&sent));
        move || {
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let key = format!("k{}", i % KEYS);
                    kafka::send(&producer, topic, Some(&key), &i.to_string(), None, None);
                    i += 1;
                }
                sent.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            sent.store(i, Ordering::Relaxed);
        }
    });

    for round in 1..=4 {
        let target = round * 1_500;
        wait_for(
            &format!("{target} acknowledged records"),
            Duration::from_secs(90),
            || (producer.context().acked_count() >= target).then_some(()),
        );
        if round % 2 == 1 {
            node.kill();
        } else {
            node.terminate();
        }
        node.restart();
    }
    let target = producer.context().acked_count() + 500;
    wait_for(
        "acknowledgements after the last restart",
        Duration::from_secs(90),
        || (producer.context().acked_count() >= target).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("the sender thread panicked");
    let acked = kafka::flush_all_acked(&producer);
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(
        acked.len() as u64,
        sent,
        "every record sent is acknowledged"
    );

    let stored = kafka::read_all(
        &node.bootstrap(),
        topic,
        &partitions,
        Duration::from_secs(90),
    );
    eprintln!("{sent} records sent, {} stored", stored.len());

    assert_each_sent_once(&stored, sent);

    // Every acknowledgement names the offset where the record really is.
    let by_position: BTreeMap<(i32, i64), &Record> = stored
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for ack in &acked {
        let found = by_position.get(&(ack.partition, ack.offset));
        assert_eq!(
            found.map(|r| r.value_str()),
            Some(ack.value_str()),
            "acked at {}/{}",
            ack.partition,
            ack.offset
        );
    }
}

/// The node executes produce requests whose responses never reach the client (the proxy
/// swallows them and cuts the connection), so librdkafka retries batches that are already
/// stored. The retries must be recognised: each record stored once, in order.
#[test]
fn retried_batches_whose_ack_was_lost_are_not_stored_twice() {
    let _limit = TimeLimit::new(
        "retried_batches_whose_ack_was_lost_are_not_stored_twice",
        Duration::from_secs(240),
    );
    let node = Node::start_with_env(&[("COMMERCE_ADVERTISED_HOST", PROXY_HOST)]);
    let proxy = ResponseDropper::start(node.kafka_addr());
    let bootstrap = proxy.addr().to_string();
    let topic = "payments-lost-acks";
    kafka::create_topic(&bootstrap, topic, 2, &[]);

    let producer = kafka::producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "120000"),
            ("retry.backoff.ms", "20"),
        ],
    );
    // Each round: arm the proxy, then produce; the first response of the round (a produce
    // answer) is lost, and the round ends once librdkafka has had every record acknowledged.
    let rounds: u64 = 8;
    let per_round: u64 = 250;
    let total = rounds * per_round;
    for round in 0..rounds {
        proxy.drop_next_response();
        for i in round * per_round..(round + 1) * per_round {
            let key = format!("k{}", i % KEYS);
            kafka::send(&producer, topic, Some(&key), &i.to_string(), None, None);
        }
        let target = usize::try_from((round + 1) * per_round).unwrap();
        wait_for(
            "every record of the round acknowledged",
            Duration::from_secs(60),
            || (producer.context().acked_count() >= target).then_some(()),
        );
    }
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(acked.len() as u64, total);
    eprintln!("{} responses swallowed", proxy.dropped());
    assert!(
        proxy.dropped() >= 6,
        "too few responses were lost to test retries"
    );

    let stored = kafka::read_all(&bootstrap, topic, &[0, 1], Duration::from_secs(60));
    assert_each_sent_once(&stored, total);
}

/// Per key, the stored values in offset order must be exactly i = key, key+KEYS, ... < sent:
/// no duplicate, no gap, no reordering.
fn assert_each_sent_once(stored: &[Record], sent: u64) {
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in stored {
        per_key
            .entry(record.key_str().to_string())
            .or_default()
            .push(record.value_str().parse().expect("values are counters"));
    }
    for key in 0..KEYS {
        let expected: Vec<u64> = (key..sent).step_by(KEYS as usize).collect();
        let got = per_key.remove(&format!("k{key}")).unwrap_or_default();
        if got != expected {
            let surplus = got.len() as i64 - expected.len() as i64;
            let first_difference = got
                .iter()
                .zip(&expected)
                .position(|(got, expected)| got != expected);
            panic!(
                "key k{key}: {} stored, {} sent ({surplus:+}); first difference at index {first_difference:?}",
                got.len(),
                expected.len()
            );
        }
    }
    assert!(per_key.is_empty(), "unexpected keys: {:?}", per_key.keys());
}
