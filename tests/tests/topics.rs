//! Topic lifecycle over the Kafka Admin and Metadata APIs: auto-creation, name validation,
//! ListOffsets (earliest, latest, by timestamp), deletion, and durability of topics and
//! their configs across restarts.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_tests::{Node, TimeLimit, kafka, wait_for};
use rdkafka::Offset;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

#[test]
fn metadata_for_an_unknown_topic_auto_creates_it() {
    let _limit = TimeLimit::new(
        "metadata_for_an_unknown_topic_auto_creates_it",
        Duration::from_secs(90),
    );
    let node = Node::start();
    let topic = "auto-created-by-metadata";
    assert_eq!(
        kafka::partitions_of(&node.bootstrap(), topic),
        None,
        "the topic does not exist yet"
    );

    // A producer's Metadata request for a topic sets allow_auto_topic_creation.
    let producer = kafka::producer(&node.bootstrap(), &[]);
    producer
        .client()
        .fetch_metadata(Some(topic), kafka::REQUEST_TIMEOUT)
        .expect("Metadata for an unknown topic failed");
    let partitions = wait_for(
        "the auto-created topic to be listed",
        Duration::from_secs(15),
        || kafka::partitions_of(&node.bootstrap(), topic),
    );
    assert!(!partitions.is_empty());

    // And it is a working topic.
    kafka::send(
        &producer,
        topic,
        Some("k"),
        "first",
        Some(partitions[0]),
        None,
    );
    let acked = kafka::flush_all_acked(&producer);
    let stored = kafka::read_all(
        &node.bootstrap(),
        topic,
        &partitions,
        Duration::from_secs(30),
    );
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], acked[0]);
}

#[test]
fn creating_a_topic_with_an_invalid_name_is_refused() {
    let _limit = TimeLimit::new(
        "creating_a_topic_with_an_invalid_name_is_refused",
        Duration::from_secs(60),
    );
    let node = Node::start();
    let too_long = "x".repeat(250);
    let invalid = [
        "has space",
        "slash/inside",
        "..",
        ".",
        "emoji-\u{1F600}",
        too_long.as_str(),
    ];
    let admin = kafka::admin(&node.bootstrap());
    for name in invalid {
        let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
        let results = kafka::block_on(admin.create_topics([&topic], &kafka::admin_options()))
            .unwrap_or_else(|error| panic!("CreateTopics {name:?} failed as a request: {error}"));
        match results.as_slice() {
            [Err((_, RDKafkaErrorCode::InvalidTopic))] => {}
            other => panic!(
                "CreateTopics {name:?} should be refused with INVALID_TOPIC_EXCEPTION, got {other:?}"
            ),
        }
        assert_eq!(
            kafka::partitions_of(&node.bootstrap(), name),
            None,
            "{name:?} must not exist"
        );
    }
    // A valid name next to them still works.
    kafka::create_topic(&node.bootstrap(), "valid.name_with-all-3-kinds", 1, &[]);
    assert_eq!(
        kafka::partitions_of(&node.bootstrap(), "valid.name_with-all-3-kinds"),
        Some(vec![0])
    );
}

#[test]
fn list_offsets_gives_earliest_latest_and_offsets_by_timestamp() {
    let _limit = TimeLimit::new(
        "list_offsets_gives_earliest_latest_and_offsets_by_timestamp",
        Duration::from_secs(90),
    );
    let node = Node::start();
    let topic = "timed";
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);
    assert_eq!(
        kafka::watermarks(&node.bootstrap(), topic, 0),
        (0, 0),
        "an empty partition"
    );

    // Ten records one second apart (client-set CreateTime), starting a minute ago.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let base = now_ms - 60_000;
    let producer = kafka::producer(&node.bootstrap(), &[]);
    for i in 0..10 {
        kafka::send(
            &producer,
            topic,
            None,
            &format!("t{i}"),
            Some(0),
            Some(base + i * 1_000),
        );
    }
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(
        acked.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );

    assert_eq!(
        kafka::watermarks(&node.bootstrap(), topic, 0),
        (0, 10),
        "earliest 0, latest 10"
    );
    let at = |timestamp| kafka::offset_for_time(&node.bootstrap(), topic, 0, timestamp);
    assert_eq!(
        at(base - 5_000),
        Offset::Offset(0),
        "before the first record: the first"
    );
    assert_eq!(at(base), Offset::Offset(0), "exactly the first timestamp");
    assert_eq!(
        at(base + 3_500),
        Offset::Offset(4),
        "between records: the next one"
    );
    assert_eq!(
        at(base + 9_000),
        Offset::Offset(9),
        "exactly the last timestamp"
    );
    assert_eq!(
        at(base + 9_001),
        Offset::End,
        "after the last record: none (-1)"
    );

    let stored = kafka::read_all(&node.bootstrap(), topic, &[0], Duration::from_secs(30));
    let timestamps: Vec<Option<i64>> = stored.iter().map(|r| r.timestamp).collect();
    let expected: Vec<Option<i64>> = (0..10).map(|i| Some(base + i * 1_000)).collect();
    assert_eq!(
        timestamps, expected,
        "CreateTime timestamps are kept as sent"
    );
}

#[test]
fn delete_topics_removes_the_topic_and_its_records() {
    let _limit = TimeLimit::new(
        "delete_topics_removes_the_topic_and_its_records",
        Duration::from_secs(90),
    );
    let node = Node::start();
    let topic = "doomed";
    kafka::create_topic(&node.bootstrap(), topic, 2, &[]);
    let producer = kafka::producer(&node.bootstrap(), &[]);
    for i in 0..10 {
        kafka::send(&producer, topic, None, &format!("r{i}"), Some(i % 2), None);
    }
    kafka::flush_all_acked(&producer);
    drop(producer);

    let results = kafka::block_on(
        kafka::admin(&node.bootstrap()).delete_topics(&[topic], &kafka::admin_options()),
    )
    .expect("DeleteTopics failed as a request");
    assert_eq!(results, vec![Ok(topic.to_owned())], "DeleteTopics answer");
    wait_for(
        "the deleted topic to leave the metadata",
        Duration::from_secs(15),
        || {
            kafka::partitions_of(&node.bootstrap(), topic)
                .is_none()
                .then_some(())
        },
    );

    // Deleting an unknown topic is an error, not a silent success.
    let again = kafka::block_on(
        kafka::admin(&node.bootstrap()).delete_topics(&[topic], &kafka::admin_options()),
    )
    .expect("DeleteTopics failed as a request");
    assert_eq!(
        again,
        vec![Err((
            topic.to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );

    // A new topic of the same name starts empty: the old records are gone.
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);
    assert_eq!(
        kafka::watermarks(&node.bootstrap(), topic, 0),
        (0, 0),
        "the recreated topic is empty"
    );
}

#[test]
fn topics_and_configs_survive_restart_and_kill_9() {
    let _limit = TimeLimit::new(
        "topics_and_configs_survive_restart_and_kill_9",
        Duration::from_secs(120),
    );
    let mut node = Node::start();
    let topic = "durable-config";
    kafka::create_topic(&node.bootstrap(), topic, 4, &[("retention.ms", "3600000")]);
    kafka::create_topic(&node.bootstrap(), "durable-plain", 1, &[]);
    let check = |node: &Node, when: &str| {
        assert_eq!(
            kafka::partitions_of(&node.bootstrap(), topic),
            Some(vec![0, 1, 2, 3]),
            "{when}: partitions"
        );
        assert_eq!(
            kafka::partitions_of(&node.bootstrap(), "durable-plain"),
            Some(vec![0]),
            "{when}: second topic"
        );
        assert_eq!(
            kafka::topic_config(&node.bootstrap(), topic, "retention.ms").as_deref(),
            Some("3600000"),
            "{when}: retention.ms by DescribeConfigs"
        );
    };
    check(&node, "before any restart");

    let _ = node.terminate();
    node.restart();
    check(&node, "after SIGTERM and restart");

    node.kill();
    node.restart();
    check(&node, "after kill -9 and restart");
}

#[test]
fn internal_topics_refuse_client_writes_and_deletion() {
    let _limit = TimeLimit::new(
        "internal_topics_refuse_client_writes_and_deletion",
        Duration::from_secs(90),
    );
    let node = Node::start();
    kafka::create_topic(&node.bootstrap(), "orders", 1, &[]);
    // A group commit makes the node create __consumer_offsets.
    let consumer = kafka::consumer_with(&node.bootstrap(), &[("group.id", "billing")]);
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("orders", 0, Offset::Offset(0))
        .unwrap();
    rdkafka::consumer::Consumer::commit(&consumer, &offsets, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    assert!(kafka::partitions_of(&node.bootstrap(), "__consumer_offsets").is_some());

    let producer = kafka::producer(&node.bootstrap(), &[("message.timeout.ms", "10000")]);
    kafka::send(
        &producer,
        "__consumer_offsets",
        Some("forged"),
        "offset",
        Some(0),
        None,
    );
    producer.flush(Duration::from_secs(20)).expect("flush");
    let failed = producer.context().failed();
    assert_eq!(
        failed.len(),
        1,
        "a client write to an internal topic must fail"
    );
    assert!(failed[0].contains("nvalid topic"), "got {}", failed[0]);

    let results = kafka::block_on(
        kafka::admin(&node.bootstrap())
            .delete_topics(&["__consumer_offsets"], &kafka::admin_options()),
    )
    .expect("DeleteTopics failed as a request");
    assert_eq!(
        results,
        vec![Err((
            "__consumer_offsets".to_owned(),
            RDKafkaErrorCode::InvalidTopic
        ))]
    );
    let committed = rdkafka::consumer::Consumer::committed_offsets(
        &consumer,
        offsets.clone(),
        Duration::from_secs(10),
    )
    .expect("OffsetFetch");
    assert_eq!(
        committed.find_partition("orders", 0).unwrap().offset(),
        Offset::Offset(0),
        "the group's offsets are still there"
    );
}
