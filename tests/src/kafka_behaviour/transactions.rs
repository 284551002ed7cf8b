//! Transactions: what read_committed and read_uncommitted consumers see of committed,
//! aborted and open transactions (a read_committed consumer reads past an aborted one to
//! the committed records behind it; the last stable offset stops at the open one), and the
//! fatal error of a producer fenced by a newer instance with its transactional id.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use super::{create_topic, values};
use crate::kafka::{self, TestProducer};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
const READ_LIMIT: Duration = Duration::from_secs(60);

fn transactional_producer(bootstrap: &str, id: &str) -> TestProducer {
    let producer = kafka::producer(bootstrap, &[("transactional.id", id)]);
    producer
        .init_transactions(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("init_transactions for {id}: {error}"));
    producer
}

/// Sends `<prefix>-0..count` to partition 0 of `topic`.
fn send_numbered(producer: &TestProducer, topic: &str, prefix: &str, count: usize) {
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        kafka::send(producer, topic, Some(&value), &value, Some(0), None);
    }
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Partition 0 of `topic` as a consumer with `isolation` reads it, in offset order.
fn read(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    values(&kafka::read_all_with(
        bootstrap,
        topic,
        &[0],
        READ_LIMIT,
        &[("isolation.level", isolation)],
    ))
}

/// ListOffsets latest for partition 0: the last stable offset for read_committed, the high
/// watermark for read_uncommitted.
fn latest(bootstrap: &str, topic: &str, isolation: &str) -> i64 {
    kafka::consumer_with(bootstrap, &[("isolation.level", isolation)])
        .fetch_watermarks(topic, 0, kafka::REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("ListOffsets {topic}/0 ({isolation}) failed: {error}"))
        .1
}

/// A committed transaction, an aborted one written in several batches, another committed
/// one, then an open one. read_committed reads the two committed ones, past the aborted
/// records between them, and stops at the open one (the last stable offset); each marker
/// takes one offset, so the numbers are exact; once the open transaction commits,
/// read_committed sees it too.
pub fn read_committed_reads_past_aborted_transactions(bootstrap: &str) {
    const TOPIC: &str = "behaviour-txn-visibility";
    const FIRST: usize = 5;
    const ABORTED_BATCHES: usize = 3;
    const PER_ABORTED_BATCH: usize = 5;
    const SECOND: usize = 5;
    const OPEN: usize = 2;
    create_topic(bootstrap, TOPIC, 1, &[]);
    let producer = transactional_producer(bootstrap, "behaviour-visibility");

    producer.begin_transaction().expect("begin the first");
    send_numbered(&producer, TOPIC, "first", FIRST);
    producer
        .commit_transaction(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit the first transaction: {error}"));

    // Flushed batch by batch, so the aborted records are several batches in the log.
    producer.begin_transaction().expect("begin the aborted");
    for batch in 0..ABORTED_BATCHES {
        send_numbered(
            &producer,
            TOPIC,
            &format!("aborted{batch}"),
            PER_ABORTED_BATCH,
        );
        producer
            .flush(TXN_TIMEOUT)
            .unwrap_or_else(|error| panic!("flush aborted batch {batch}: {error}"));
    }
    producer
        .abort_transaction(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("abort: {error}"));

    producer.begin_transaction().expect("begin the second");
    send_numbered(&producer, TOPIC, "second", SECOND);
    producer
        .commit_transaction(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit the second transaction: {error}"));

    producer.begin_transaction().expect("begin the open");
    send_numbered(&producer, TOPIC, "open", OPEN);
    producer
        .flush(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("flush the open transaction: {error}"));

    // Each transaction's records, then its marker (one offset each).
    let aborted = ABORTED_BATCHES * PER_ABORTED_BATCH;
    let open_at = i64::try_from(FIRST + 1 + aborted + 1 + SECOND + 1).unwrap_or(-1);
    let open_end = open_at + i64::try_from(OPEN).unwrap_or(0);
    let acked_open = producer.context().acked();
    let first_open = acked_open
        .iter()
        .find(|record| record.value_str() == "open-0")
        .expect("the open transaction's first record is acknowledged");
    assert_eq!(
        first_open.offset, open_at,
        "offset of the open transaction's first record: each record and each marker take one"
    );
    assert_eq!(
        latest(bootstrap, TOPIC, "read_committed"),
        open_at,
        "the last stable offset stops at the open transaction"
    );
    assert_eq!(
        latest(bootstrap, TOPIC, "read_uncommitted"),
        open_end,
        "the high watermark covers the open transaction"
    );

    let mut committed = numbered("first", FIRST);
    committed.extend(numbered("second", SECOND));
    assert_eq!(
        read(bootstrap, TOPIC, "read_committed"),
        committed,
        "read_committed reads past the aborted transaction, up to the open one"
    );
    let mut everything = numbered("first", FIRST);
    for batch in 0..ABORTED_BATCHES {
        everything.extend(numbered(&format!("aborted{batch}"), PER_ABORTED_BATCH));
    }
    everything.extend(numbered("second", SECOND));
    everything.extend(numbered("open", OPEN));
    assert_eq!(
        read(bootstrap, TOPIC, "read_uncommitted"),
        everything,
        "read_uncommitted reads every stored record"
    );

    producer
        .commit_transaction(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit the open transaction: {error}"));
    committed.extend(numbered("open", OPEN));
    assert_eq!(
        read(bootstrap, TOPIC, "read_committed"),
        committed,
        "read_committed once the open transaction committed"
    );
    assert_eq!(
        latest(bootstrap, TOPIC, "read_committed"),
        open_end + 1,
        "the last stable offset is the high watermark once no transaction is open"
    );
}

/// Two producers with one transactional.id: once the newer one has called
/// init_transactions, the older one's commit fails with a fatal fencing error, whether it
/// produced again after the fence or not; nothing of it is visible, and the newer one
/// carries on. What librdkafka's own test suite asks (0103, `do_test_fenced_txn`): the
/// commit itself returns the fatal `_FENCED`, not an abortable error first. So a produce
/// with the stale epoch must be refused as Kafka refuses it, INVALID_PRODUCER_EPOCH, which
/// librdkafka takes for fencing (PRODUCER_FENCED on a produce only makes it abort).
pub fn fenced_transactional_producer_gets_a_fatal_error(bootstrap: &str) {
    for produce_after_fence in [false, true] {
        fence_one(bootstrap, produce_after_fence);
    }
}

fn fence_one(bootstrap: &str, produce_after_fence: bool) {
    let variant = if produce_after_fence {
        "produce after the fence"
    } else {
        "commit right after the fence"
    };
    let topic = if produce_after_fence {
        "behaviour-txn-fencing-produce"
    } else {
        "behaviour-txn-fencing-commit"
    };
    create_topic(bootstrap, topic, 1, &[]);

    let old = transactional_producer(bootstrap, topic);
    old.begin_transaction().expect("begin the old producer's");
    send_numbered(&old, topic, "old", 5);
    old.flush(TXN_TIMEOUT)
        .unwrap_or_else(|error| panic!("{variant}: flush the old producer: {error}"));

    // The newer instance takes over: the old one's open transaction is aborted.
    let new = transactional_producer(bootstrap, topic);

    if produce_after_fence {
        send_numbered(&old, topic, "old-late", 2);
        // Delivery fails; what matters is the error the commit then gets.
        let _ = old.flush(TXN_TIMEOUT);
    }
    let error = match old.commit_transaction(TXN_TIMEOUT) {
        Err(KafkaError::Transaction(error)) => error,
        other => panic!("{variant}: the fenced producer's commit: {other:?}"),
    };
    assert!(
        error.is_fatal() && !error.txn_requires_abort() && !error.is_retriable(),
        "{variant}: the fenced producer's commit must fail fatally (not abortable, not \
         retriable): {error} (fatal {}, requires abort {}, retriable {})",
        error.is_fatal(),
        error.txn_requires_abort(),
        error.is_retriable()
    );
    assert_eq!(
        error.code(),
        RDKafkaErrorCode::Fenced,
        "{variant}: the commit's error is fencing: {error}"
    );
    assert!(
        old.client().fatal_error().is_some(),
        "{variant}: the fenced producer raised a fatal error"
    );

    new.begin_transaction().expect("begin the new producer's");
    send_numbered(&new, topic, "new", 5);
    new.commit_transaction(TXN_TIMEOUT).unwrap_or_else(|error| {
        panic!("{variant}: commit the new producer's transaction: {error}")
    });
    assert_eq!(
        read(bootstrap, topic, "read_committed"),
        numbered("new", 5),
        "{variant}: only the newer producer's transaction is visible"
    );
}
