//! Admin APIs that change things, with real clients: CreatePartitions, DeleteRecords and
//! AlterConfigs through librdkafka's AdminClient; IncrementalAlterConfigs (and the error
//! codes rdkafka's binding hides) through the bare wire client. Every change must survive a
//! restart, and every refused change must leave things as they were.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::wire::WireClient;
use commerce_tests::{Node, TimeLimit, kafka};
use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

#[test]
fn create_partitions_grows_a_topic_that_then_takes_records_and_survives_restart() {
    let _limit = TimeLimit::new(
        "create_partitions_grows_a_topic_that_then_takes_records_and_survives_restart",
        Duration::from_secs(120),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "grown";
    kafka::create_topic(&bootstrap, topic, 1, &[]);
    let admin = kafka::admin(&bootstrap);

    // validate_only checks without changing anything.
    let results = kafka::block_on(admin.create_partitions(
        [&NewPartitions::new(topic, 5)],
        &kafka::admin_options().validate_only(true),
    ))
    .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(kafka::partitions_of(&bootstrap, topic), Some(vec![0]));

    let results = kafka::block_on(
        admin.create_partitions([&NewPartitions::new(topic, 3)], &kafka::admin_options()),
    )
    .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(kafka::partitions_of(&bootstrap, topic), Some(vec![0, 1, 2]));

    // Shrinking (and staying the same) is refused and changes nothing.
    for count in [2, 3] {
        let results = kafka::block_on(
            admin.create_partitions([&NewPartitions::new(topic, count)], &kafka::admin_options()),
        )
        .unwrap();
        assert_eq!(
            results[0],
            Err((topic.to_string(), RDKafkaErrorCode::InvalidPartitions)),
            "count {count}"
        );
    }
    assert_eq!(kafka::partitions_of(&bootstrap, topic), Some(vec![0, 1, 2]));

    let producer = kafka::producer(&bootstrap, &[]);
    kafka::send(
        &producer,
        topic,
        Some("k"),
        "in the new partition",
        Some(2),
        None,
    );
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(acked[0].partition, 2);

    node.kill();
    node.restart();
    assert_eq!(kafka::partitions_of(&bootstrap, topic), Some(vec![0, 1, 2]));
    let stored = kafka::read_all(&bootstrap, topic, &[2], Duration::from_secs(30));
    assert_eq!(stored, acked);
}

#[test]
fn delete_records_moves_the_earliest_offset_hides_older_records_and_survives_a_crash() {
    let _limit = TimeLimit::new(
        "delete_records_moves_the_earliest_offset_hides_older_records_and_survives_a_crash",
        Duration::from_secs(120),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "trimmed";
    kafka::create_topic(&bootstrap, topic, 1, &[]);
    let producer = kafka::producer(&bootstrap, &[]);
    for i in 0..10 {
        kafka::send(&producer, topic, Some("k"), &format!("v{i}"), Some(0), None);
        // One batch per record, so offsets below the new start sit in their own batches.
        kafka::flush_all_acked(&producer);
    }
    assert_eq!(kafka::watermarks(&bootstrap, topic, 0), (0, 10));

    let admin = kafka::admin(&bootstrap);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(4))
        .unwrap();
    let result = kafka::block_on(admin.delete_records(&offsets, &kafka::admin_options())).unwrap();
    let element = result.find_partition(topic, 0).unwrap();
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(element.offset(), Offset::Offset(4), "the new low watermark");

    // Past the end is refused and changes nothing.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset(topic, 0, Offset::Offset(11))
        .unwrap();
    let result = kafka::block_on(admin.delete_records(&beyond, &kafka::admin_options())).unwrap();
    assert!(result.find_partition(topic, 0).unwrap().error().is_err());

    let check = |bootstrap: &str| {
        assert_eq!(kafka::watermarks(bootstrap, topic, 0), (4, 10));
        let stored = kafka::read_all(bootstrap, topic, &[0], Duration::from_secs(30));
        let offsets: Vec<i64> = stored.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (4..10).collect::<Vec<_>>());
        assert_eq!(stored[0].value_str(), "v4");
        let mut wire = WireClient::connect(bootstrap);
        assert_eq!(wire.list_offset(topic, -2), (0, 4), "earliest by the wire");
        // By time, records below the log start do not count: the first at or after
        // timestamp 0 is now offset 4.
        assert_eq!(wire.list_offset(topic, 0).1, 4, "offset for time 0");
        // librdkafka turns the broker's OFFSET_OUT_OF_RANGE into "no offset to reset to"
        // when auto.offset.reset=error (its log line names the broker's error).
        let (code, message) = fetch_below_start(bootstrap, topic, 1);
        assert_eq!(code, RDKafkaErrorCode::AutoOffsetReset, "{message}");
    };
    check(&bootstrap);
    node.kill();
    node.restart();
    check(&bootstrap);
}

/// The error a consumer that may not reset gets when it fetches from `offset`.
fn fetch_below_start(bootstrap: &str, topic: &str, offset: i64) -> (RDKafkaErrorCode, String) {
    let consumer: kafka::TestConsumer = kafka::config(bootstrap)
        .set("group.id", "commerce-tests")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create_with_context(kafka::TestContext::default())
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => panic!("read offset {} below the log start", message.offset()),
            Some(Err(error)) => {
                let code = error.rdkafka_error_code().expect("a broker error code");
                return (code, error.to_string());
            }
        }
    }
}

#[test]
fn alter_configs_changes_are_described_applied_and_survive_restart_and_bad_values_change_nothing() {
    let _limit = TimeLimit::new(
        "alter_configs_changes_are_described_applied_and_survive_restart_and_bad_values_change_nothing",
        Duration::from_secs(120),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "configured";
    kafka::create_topic(&bootstrap, topic, 1, &[("retention.ms", "100000")]);
    let admin = kafka::admin(&bootstrap);

    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("retention.bytes", "1048576")
        .set("segment.bytes", "65536");
    let results = kafka::block_on(admin.alter_configs([&alter], &kafka::admin_options())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "retention.bytes").as_deref(),
        Some("1048576")
    );
    // AlterConfigs replaces the whole set: retention.ms went back to its default.
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "retention.ms").as_deref(),
        Some("604800000")
    );

    // A bad value and an unknown key are refused; nothing changes. (rdkafka 0.39's
    // alter_configs reports every resource as Ok whatever the broker answered, so the error
    // code is checked on the wire and the effect through DescribeConfigs.)
    let mut wire = WireClient::connect(&bootstrap);
    for (key, value) in [("segment.bytes", "huge"), ("no.such.config", "1")] {
        let bad = AlterConfig::new(ResourceSpecifier::Topic(topic))
            .set("retention.bytes", "1")
            .set(key, value);
        let results =
            kafka::block_on(admin.alter_configs([&bad], &kafka::admin_options())).unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(
            wire.alter_configs(topic, &[("retention.bytes", "1"), (key, value)]),
            40,
            "INVALID_CONFIG for {key}={value}"
        );
        assert_eq!(
            kafka::topic_config(&bootstrap, topic, "retention.bytes").as_deref(),
            Some("1048576"),
            "unchanged after {key}={value}"
        );
    }
    // validate_only changes nothing either.
    let checked = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("retention.bytes", "7");
    let results = kafka::block_on(
        admin.alter_configs([&checked], &kafka::admin_options().validate_only(true)),
    )
    .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "retention.bytes").as_deref(),
        Some("1048576")
    );

    // Incremental: SET, DELETE and APPEND in one request.
    let errors = wire.incremental_alter_configs(
        topic,
        &[
            ("max.message.bytes", 0, Some("2000")),
            ("retention.bytes", 1, None),
            ("cleanup.policy", 2, Some("compact")),
        ],
    );
    assert_eq!(errors, 0);
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "max.message.bytes").as_deref(),
        Some("2000")
    );
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "retention.bytes").as_deref(),
        Some("-1")
    );
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "cleanup.policy").as_deref(),
        Some("delete,compact")
    );
    // Synonyms: the topic's override first, then the default it hides.
    let synonyms = wire.synonyms(topic, "max.message.bytes");
    assert_eq!(
        synonyms,
        vec![("2000".to_string(), 1), ("1048588".to_string(), 5)]
    );

    // APPEND on a non-list key and a bad value refuse the whole request.
    for bad in [
        ("retention.ms", 2, Some("5")),
        ("retention.ms", 0, Some("-7")),
    ] {
        let error =
            wire.incremental_alter_configs(topic, &[("segment.bytes", 0, Some("70000")), bad]);
        assert_eq!(error, 40, "INVALID_CONFIG for {bad:?}");
    }
    assert_eq!(
        kafka::topic_config(&bootstrap, topic, "segment.bytes").as_deref(),
        Some("65536")
    );

    // The new max.message.bytes is live: a larger record is refused.
    let producer = kafka::producer(&bootstrap, &[("message.timeout.ms", "5000")]);
    kafka::send(&producer, topic, None, &"x".repeat(4000), Some(0), None);
    let _ = producer.flush(Duration::from_secs(30));
    assert_eq!(
        producer.context().failed().len(),
        1,
        "the oversized record is refused"
    );

    node.terminate();
    node.restart();
    for (key, value) in [
        ("max.message.bytes", "2000"),
        ("segment.bytes", "65536"),
        ("retention.bytes", "-1"),
        ("cleanup.policy", "delete,compact"),
    ] {
        assert_eq!(
            kafka::topic_config(&bootstrap, topic, key).as_deref(),
            Some(value),
            "{key} after restart"
        );
    }
}
