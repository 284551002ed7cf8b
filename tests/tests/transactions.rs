//! Transactions with librdkafka: what read_committed and read_uncommitted consumers see of
//! committed, aborted, open and abandoned transactions, and fencing of a producer by a newer
//! instance with the same transactional.id.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use commerce_tests::kafka::{self, TestProducer};
use commerce_tests::{Node, TimeLimit};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> TestProducer {
    let mut settings = vec![("transactional.id", id)];
    settings.extend_from_slice(extra);
    let producer = kafka::producer(bootstrap, &settings);
    producer
        .init_transactions(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("init_transactions for {id}: {error}"));
    producer
}

/// Values of `topic`'s partitions as a consumer with `isolation` sees them, offset order
/// within a partition.
fn values(bootstrap: &str, topic: &str, partitions: &[i32], isolation: &str) -> Vec<String> {
    kafka::read_all_with(
        bootstrap,
        topic,
        partitions,
        READ_TIMEOUT,
        &[("isolation.level", isolation)],
    )
    .iter()
    .map(|record| record.value_str().to_string())
    .collect()
}

fn send_all(producer: &TestProducer, topic: &str, prefix: &str, count: i32, partitions: i32) {
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        kafka::send(
            producer,
            topic,
            Some(&value),
            &value,
            Some(i % partitions),
            None,
        );
    }
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

fn named(prefix: &str, count: i32) -> Vec<String> {
    sorted((0..count).map(|i| format!("{prefix}-{i}")).collect())
}

#[test]
fn read_committed_sees_committed_transactions_only() {
    let _limit = TimeLimit::new(
        "read_committed_sees_committed_transactions_only",
        Duration::from_secs(180),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "orders-txn-visibility";
    let partitions = [0, 1];
    kafka::create_topic(&bootstrap, topic, 2, &[]);
    let producer = transactional_producer(&bootstrap, "visibility", &[]);

    // An aborted transaction, its records flushed to the log before the abort.
    producer.begin_transaction().unwrap();
    send_all(&producer, topic, "aborted", 10, 2);
    producer.flush(TXN_TIMEOUT).unwrap();
    producer.abort_transaction(TXN_TIMEOUT).unwrap();

    // A committed one.
    producer.begin_transaction().unwrap();
    send_all(&producer, topic, "committed", 10, 2);
    producer.commit_transaction(TXN_TIMEOUT).unwrap();

    // An open one: stored, but past the last stable offset.
    producer.begin_transaction().unwrap();
    send_all(&producer, topic, "open", 4, 2);
    producer.flush(TXN_TIMEOUT).unwrap();

    // Partition 0 holds 5 aborted records + marker, 5 committed + marker, then the open
    // transaction's 2 records at 12 and 13: the LSO is 12, the high watermark 14.
    let latest = |isolation: &str| {
        kafka::consumer_with(&bootstrap, &[("isolation.level", isolation)])
            .fetch_watermarks(topic, 0, kafka::REQUEST_TIMEOUT)
            .unwrap()
            .1
    };
    assert_eq!(
        latest("read_committed"),
        12,
        "ListOffsets latest, read_committed"
    );
    assert_eq!(
        latest("read_uncommitted"),
        14,
        "ListOffsets latest, read_uncommitted"
    );

    let committed = named("committed", 10);
    assert_eq!(
        sorted(values(&bootstrap, topic, &partitions, "read_committed")),
        committed,
        "read_committed while a transaction is open"
    );
    let mut everything = named("aborted", 10);
    everything.extend(named("committed", 10));
    everything.extend(named("open", 4));
    assert_eq!(
        sorted(values(&bootstrap, topic, &partitions, "read_uncommitted")),
        sorted(everything.clone()),
        "read_uncommitted sees every stored record"
    );

    producer.commit_transaction(TXN_TIMEOUT).unwrap();
    let mut visible = committed;
    visible.extend(named("open", 4));
    assert_eq!(
        sorted(values(&bootstrap, topic, &partitions, "read_committed")),
        sorted(visible.clone()),
        "read_committed after the open transaction committed"
    );
    drop(producer);

    // The aborted-transaction index is rebuilt from the log after a crash.
    node.kill();
    node.restart();
    assert_eq!(
        sorted(values(&bootstrap, topic, &partitions, "read_committed")),
        sorted(visible),
        "read_committed after kill -9 and restart"
    );
}

#[test]
fn a_transaction_left_open_by_a_crash_is_aborted_by_the_next_producer() {
    let _limit = TimeLimit::new(
        "a_transaction_left_open_by_a_crash_is_aborted_by_the_next_producer",
        Duration::from_secs(180),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "shipping-txn-crash";
    kafka::create_topic(&bootstrap, topic, 2, &[]);

    let first = transactional_producer(&bootstrap, "shipping-relay", &[]);
    first.begin_transaction().unwrap();
    send_all(&first, topic, "before-crash", 6, 2);
    first.flush(TXN_TIMEOUT).unwrap();
    // Leaked, not dropped: the instance simply vanishes, nothing it could say on the way
    // out (an abort) reaches the node.
    std::mem::forget(first);

    // The coordinator's record of the open transaction survives the crash, so the next
    // instance's InitProducerId aborts it instead of leaving it open for ever.
    node.kill();
    node.restart();
    let second = transactional_producer(&bootstrap, "shipping-relay", &[]);
    second.begin_transaction().unwrap();
    send_all(&second, topic, "after-crash", 6, 2);
    second.commit_transaction(TXN_TIMEOUT).unwrap();

    assert_eq!(
        sorted(values(&bootstrap, topic, &[0, 1], "read_committed")),
        named("after-crash", 6)
    );
}

#[test]
fn a_new_producer_with_the_same_transactional_id_fences_the_old_one() {
    let _limit = TimeLimit::new(
        "a_new_producer_with_the_same_transactional_id_fences_the_old_one",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "payments-txn-fencing";
    kafka::create_topic(&bootstrap, topic, 1, &[]);

    let old = transactional_producer(&bootstrap, "payments-relay", &[]);
    old.begin_transaction().unwrap();
    send_all(&old, topic, "old", 5, 1);
    old.flush(TXN_TIMEOUT).unwrap();

    // The newer instance takes over: the old one's open transaction is aborted.
    let new = transactional_producer(&bootstrap, "payments-relay", &[]);

    send_all(&old, topic, "old-late", 2, 1);
    // The stale epoch is refused on produce with INVALID_PRODUCER_EPOCH, as Kafka's leaders
    // refuse it: librdkafka takes that for fencing (fatal at once); a client that takes it
    // for abortable (KIP-588) is refused by the coordinator when it aborts: fatal too.
    let error = match old.commit_transaction(TXN_TIMEOUT) {
        Err(KafkaError::Transaction(error)) if error.is_fatal() => error,
        Err(KafkaError::Transaction(error)) if error.txn_requires_abort() => {
            match old.abort_transaction(TXN_TIMEOUT) {
                Err(KafkaError::Transaction(error)) => error,
                other => panic!("the fenced producer aborted cleanly: {other:?}"),
            }
        }
        other => panic!("the fenced producer committed: {other:?}"),
    };
    assert!(error.is_fatal(), "fencing must be fatal, got {error}");
    assert!(
        error.to_string().contains("fenced") || error.to_string().contains("newer producer"),
        "not a fencing error: {error}"
    );

    new.begin_transaction().unwrap();
    send_all(&new, topic, "new", 5, 1);
    new.commit_transaction(TXN_TIMEOUT).unwrap();

    assert_eq!(
        sorted(values(&bootstrap, topic, &[0], "read_committed")),
        named("new", 5)
    );
}

#[test]
fn an_abandoned_transaction_is_aborted_after_its_timeout() {
    let _limit = TimeLimit::new(
        "an_abandoned_transaction_is_aborted_after_its_timeout",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "inventory-txn-timeout";
    kafka::create_topic(&bootstrap, topic, 1, &[]);

    let abandoned = transactional_producer(
        &bootstrap,
        "inventory-abandoned",
        &[
            ("transaction.timeout.ms", "3000"),
            ("message.timeout.ms", "3000"),
        ],
    );
    abandoned.begin_transaction().unwrap();
    send_all(&abandoned, topic, "abandoned", 5, 1);
    abandoned.flush(TXN_TIMEOUT).unwrap();
    // From here on the producer goes quiet with its transaction open.

    let later = transactional_producer(&bootstrap, "inventory-later", &[]);
    later.begin_transaction().unwrap();
    send_all(&later, topic, "later", 5, 1);
    later.commit_transaction(TXN_TIMEOUT).unwrap();

    // The open transaction holds the last stable offset before the later data until the
    // coordinator aborts it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = values(&bootstrap, topic, &[0], "read_committed");
        if !seen.is_empty() || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(sorted(seen), named("later", 5));
    assert_eq!(
        values(&bootstrap, topic, &[0], "read_uncommitted").len(),
        10,
        "both transactions' records are stored"
    );
    drop(later);
    drop(abandoned);
}
