//! Records produced with acks=all come back complete, in order per partition, at the
//! offsets they were acknowledged at, and are the same after a graceful restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::Duration;

use commerce_tests::kafka::{self, Record};
use commerce_tests::{Node, TimeLimit};

const RECORDS: usize = 10_000;
const KEYS: usize = 50;

#[test]
fn keyed_records_keep_per_partition_order_and_survive_restart() {
    let _limit = TimeLimit::new(
        "keyed_records_keep_per_partition_order_and_survive_restart",
        Duration::from_secs(240),
    );
    let mut node = Node::start();
    let topic = "orders-keyed";
    kafka::create_topic(&node.bootstrap(), topic, 3, &[]);
    assert_eq!(
        kafka::partitions_of(&node.bootstrap(), topic),
        Some(vec![0, 1, 2])
    );

    // Value = key + a sequence number per key, so order within a key is checkable.
    let producer = kafka::producer(&node.bootstrap(), &[]);
    for i in 0..RECORDS {
        let key = format!("customer-{:02}", i % KEYS);
        let value = format!("{key}#{:05}", i / KEYS);
        kafka::send(&producer, topic, Some(&key), &value, None, None);
    }
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(acked.len(), RECORDS, "every record is acknowledged");

    let records = kafka::read_all(
        &node.bootstrap(),
        topic,
        &[0, 1, 2],
        Duration::from_secs(60),
    );
    assert_log_is_consistent(&records, &acked);

    // Graceful restart on the same data directory: the same log, byte for byte.
    let stopped = node.terminate();
    node.restart();
    let after_restart = kafka::read_all(
        &node.bootstrap(),
        topic,
        &[0, 1, 2],
        Duration::from_secs(60),
    );
    assert_eq!(
        after_restart.len(),
        records.len(),
        "record count after restart"
    );
    assert!(after_restart == records, "the log differs after a restart");
    assert!(
        stopped.success(),
        "SIGTERM should stop the node cleanly, but it exited with {stopped}"
    );
}

/// The records read equal the records acknowledged: all there, each at its acked offset,
/// offsets dense from 0 in every partition, a key's records in one partition in send order.
fn assert_log_is_consistent(records: &[Record], acked: &[Record]) {
    assert_eq!(records.len(), RECORDS, "records read back");
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    for record in records {
        let expected = next_offset.entry(record.partition).or_insert(0);
        assert_eq!(
            record.offset, *expected,
            "offsets of partition {} are dense from 0",
            record.partition
        );
        *expected += 1;
    }
    assert_eq!(
        next_offset.len(),
        3,
        "keys spread over all 3 partitions: {next_offset:?}"
    );

    let mut per_key: HashMap<&str, (i32, Vec<u32>)> = HashMap::new();
    for record in records {
        let (key, sequence) = record
            .value_str()
            .split_once('#')
            .expect("value is key#seq");
        assert_eq!(
            record.key_str(),
            key,
            "key and value belong together at {}/{}",
            record.partition,
            record.offset
        );
        let entry = per_key
            .entry(record.key_str())
            .or_insert((record.partition, Vec::new()));
        assert_eq!(
            entry.0, record.partition,
            "key {key} stays in one partition"
        );
        entry.1.push(sequence.parse().expect("numeric sequence"));
    }
    assert_eq!(per_key.len(), KEYS);
    for (key, (_, sequences)) in &per_key {
        let expected: Vec<u32> = (0..sequences.len() as u32).collect();
        assert!(
            sequences == &expected,
            "records of {key} are out of order or missing: {sequences:?}"
        );
    }

    let by_position: HashMap<(i32, i64), &Record> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for ack in acked {
        let stored = by_position
            .get(&(ack.partition, ack.offset))
            .unwrap_or_else(|| panic!("acked record {}/{} is missing", ack.partition, ack.offset));
        assert_eq!(
            (&stored.key, &stored.value),
            (&ack.key, &ack.value),
            "content at {}/{}",
            ack.partition,
            ack.offset
        );
    }
}
