//! Consume-transform-produce with the consumer's offsets committed inside the producer's
//! transaction (sendOffsetsToTransaction) is exactly-once across a crash: the node is killed
//! with -9 in the middle of a transaction, a new worker with the same transactional.id takes
//! over, and the output holds every input record transformed exactly once.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commerce_tests::kafka::{self, TestConsumer, TestProducer};
use commerce_tests::{Node, TimeLimit};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const GROUP: &str = "eos-group";
const TRANSACTIONAL_ID: &str = "eos-worker";
const RECORDS: usize = 2_000;
const PER_TRANSACTION: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(30);

fn worker(bootstrap: &str) -> (TestConsumer, TestProducer) {
    let consumer = kafka::consumer_with(
        bootstrap,
        &[
            ("group.id", GROUP),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    consumer.subscribe(&[INPUT]).expect("subscribe");
    let producer = kafka::producer(bootstrap, &[("transactional.id", TRANSACTIONAL_ID)]);
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    (consumer, producer)
}

/// Up to `PER_TRANSACTION` input values; empty once no record arrives for a few seconds.
fn poll_some(consumer: &TestConsumer) -> Vec<String> {
    let mut values = Vec::new();
    let mut idle_since = Instant::now();
    while values.len() < PER_TRANSACTION && idle_since.elapsed() < Duration::from_secs(4) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                values.push(
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                );
                idle_since = Instant::now();
            }
            Some(Err(error)) => eprintln!("consumer error: {error}"),
            None if !values.is_empty() => break,
            None => {}
        }
    }
    values
}

/// Sends the transformed values in the open transaction.
fn transform(producer: &TestProducer, values: &[String]) {
    for value in values {
        kafka::send(
            producer,
            OUTPUT,
            Some(value),
            &format!("out-{value}"),
            None,
            None,
        );
    }
}

/// One whole transaction: transformed output plus the consumer's position as the group's
/// committed offsets. Returns how many input records it covered (0 at the end of input).
fn process_one(consumer: &TestConsumer, producer: &TestProducer) -> usize {
    let values = poll_some(consumer);
    if values.is_empty() {
        return 0;
    }
    producer.begin_transaction().expect("begin_transaction");
    transform(producer, &values);
    let position = consumer.position().expect("position");
    let metadata = consumer.group_metadata().expect("group metadata");
    producer
        .send_offsets_to_transaction(&position, &metadata, TIMEOUT)
        .expect("send_offsets_to_transaction");
    producer
        .commit_transaction(TIMEOUT)
        .expect("commit_transaction");
    values.len()
}

#[test]
fn consume_transform_produce_is_exactly_once_across_a_crash() {
    let _limit = TimeLimit::new(
        "consume_transform_produce_is_exactly_once",
        Duration::from_secs(240),
    );
    let mut node = Node::start();
    kafka::create_topic(&node.bootstrap(), INPUT, 1, &[]);
    kafka::create_topic(&node.bootstrap(), OUTPUT, 1, &[]);
    let input = kafka::producer(&node.bootstrap(), &[]);
    for i in 0..RECORDS {
        kafka::send(&input, INPUT, None, &format!("{i:05}"), None, None);
    }
    assert_eq!(kafka::flush_all_acked(&input).len(), RECORDS);
    drop(input);

    // The first worker commits a few transactions, then dies mid-transaction with its
    // output already in the log (flushed, not committed).
    {
        let (consumer, producer) = worker(&node.bootstrap());
        let mut done = 0;
        while done < 5 * PER_TRANSACTION {
            let covered = process_one(&consumer, &producer);
            assert!(covered > 0, "input ended early");
            done += covered;
        }
        let values = poll_some(&consumer);
        assert!(!values.is_empty());
        producer.begin_transaction().expect("begin_transaction");
        transform(&producer, &values);
        producer
            .flush(TIMEOUT)
            .expect("flush the doomed transaction's records");
        node.kill();
        node.restart();
        // Dropping the old clients must not commit anything: the broker never saw a commit.
    }

    // A new worker with the same transactional.id fences the old one (aborting its open
    // transaction) and resumes from the group's committed offset.
    let (consumer, producer) = worker(&node.bootstrap());
    while process_one(&consumer, &producer) > 0 {}

    let output = kafka::read_all_with(
        &node.bootstrap(),
        OUTPUT,
        &[0],
        TIMEOUT,
        &[("isolation.level", "read_committed")],
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in &output {
        *counts.entry(record.value_str().to_string()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..RECORDS)
        .filter(|i| !counts.contains_key(&format!("out-{i:05}")))
        .collect();
    let duplicated: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| v)
        .collect();
    assert!(
        missing.is_empty(),
        "{} input records never made it: {:?}…",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "{} output records duplicated: {:?}…",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(output.len(), RECORDS);
}
