//! Retention on a three-node cluster: a partition's Raft log is its Kafka log, so old
//! segments go through a Raft purge on each replica rather than being deleted under the
//! group. Retention is set with AlterConfigs on the live topic (a controller command every
//! node applies); then the log start moves forward, and everything from it to the end is
//! still there.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use commerce_tests::cluster::Cluster;
use commerce_tests::{TimeLimit, kafka};
use rdkafka::admin::{AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};

const TOPIC: &str = "short-lived";
const RECORDS: usize = 3_000;

#[test]
fn retention_purges_old_segments_on_a_replicated_partition() {
    let _limit = TimeLimit::new(
        "retention_purges_old_segments_on_a_replicated_partition",
        Duration::from_secs(120),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap: String = (1..=3)
        .map(|id| cluster.node(id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("segment.bytes", "16384");
    let admin = kafka::admin(&bootstrap);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let results = kafka::block_on(admin.create_topics([&topic], &kafka::admin_options()));
        if results.is_ok_and(|results| results.iter().all(Result::is_ok)) {
            break;
        }
        assert!(Instant::now() < deadline, "cannot create {TOPIC}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // About 600 KiB in small batches: dozens of 16 KiB segments against a 64 KiB limit.
    let producer = kafka::producer(&bootstrap, &[("linger.ms", "1"), ("batch.size", "4096")]);
    let padding = "x".repeat(180);
    for value in 0..RECORDS {
        kafka::send(
            &producer,
            TOPIC,
            None,
            &format!("{value:06}-{padding}"),
            Some(0),
            None,
        );
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), RECORDS);
    assert_eq!(
        kafka::watermarks(&bootstrap, TOPIC, 0).0,
        0,
        "nothing is purged while retention keeps everything"
    );

    // AlterConfigs replaces the whole set: keep the segment size, cap the size.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
        .set("segment.bytes", "16384")
        .set("retention.bytes", "65536");
    kafka::block_on(admin.alter_configs([&alter], &kafka::admin_options())).unwrap();
    for id in 1..=3 {
        assert_eq!(
            kafka::topic_config(&cluster.node(id).bootstrap(), TOPIC, "retention.bytes").as_deref(),
            Some("65536"),
            "node {id} describes the new config"
        );
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let (start, end) = loop {
        let (start, end) = kafka::watermarks(&bootstrap, TOPIC, 0);
        if start > 0 {
            break (start, end);
        }
        assert!(
            Instant::now() < deadline,
            "retention did not move the log start (watermarks {start}..{end})"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let records = kafka::read_all(&bootstrap, TOPIC, &[0], Duration::from_secs(60));
    let values: Vec<usize> = records
        .iter()
        .map(|record| String::from_utf8_lossy(&record.value)[..6].parse().unwrap())
        .collect();
    assert!(
        values.len() < RECORDS,
        "old records were purged (log {start}..{end})"
    );
    assert!(
        values.len() * 200 >= 40_000,
        "retention keeps about retention.bytes: {} records left",
        values.len()
    );
    let first = values[0];
    let expected: Vec<usize> = (first..RECORDS).collect();
    assert_eq!(
        values, expected,
        "from the log start on, every record is there, in order"
    );
}

/// CreatePartitions on a cluster: the new partitions are placed and replicated like a new
/// topic's, every node lists them, and they take acks=all writes.
#[test]
fn partitions_added_to_a_replicated_topic_are_replicated() {
    let _limit = TimeLimit::new(
        "partitions_added_to_a_replicated_topic_are_replicated",
        Duration::from_secs(120),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap: String = (1..=3)
        .map(|id| cluster.node(id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    commerce_tests::replicated::create_replicated_topic(&bootstrap, "growing", 1);
    let admin = kafka::admin(&bootstrap);
    let results = kafka::block_on(admin.create_partitions(
        [&rdkafka::admin::NewPartitions::new("growing", 3)],
        &kafka::admin_options(),
    ))
    .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for id in 1..=3 {
        assert_eq!(
            kafka::partitions_of(&cluster.node(id).bootstrap(), "growing"),
            Some(vec![0, 1, 2]),
            "node {id} lists the added partitions"
        );
    }
    let producer = kafka::producer(&bootstrap, &[("enable.idempotence", "true")]);
    for value in 0..30 {
        kafka::send(
            &producer,
            "growing",
            None,
            &value.to_string(),
            Some(value % 3),
            None,
        );
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), 30);
    let records = kafka::read_all(&bootstrap, "growing", &[0, 1, 2], Duration::from_secs(30));
    assert_eq!(records.len(), 30);
    assert!(records.iter().any(|record| record.partition == 2));
}
