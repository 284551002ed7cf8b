//! Admin APIs with real clients: CreatePartitions, DeleteRecords and AlterConfigs through
//! librdkafka's AdminClient; IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs,
//! OffsetForLeaderEpoch and ListOffsets(MAX_TIMESTAMP) through a bare wire client, since the
//! rdkafka binding does not expose them. Every change must survive a restart, and every
//! refused change must leave things as they were.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::wire::WireClient;
use commerce_tests::{Node, TimeLimit, kafka};
use kafka_protocol::messages::alter_configs_request;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_configs_request;
use kafka_protocol::messages::describe_log_dirs_request::{
    DescribableLogDirTopic, DescribeLogDirsRequest,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

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
        assert_eq!(
            list_offset(&mut wire, topic, -2),
            (0, 4),
            "earliest by the wire"
        );
        // By time, records below the log start do not count: the first at or after
        // timestamp 0 is now offset 4.
        assert_eq!(list_offset(&mut wire, topic, 0).1, 4, "offset for time 0");
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

/// (error code, offset) of ListOffsets v7 for `timestamp` on partition 0.
fn list_offset(wire: &mut WireClient, topic: &str, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let ResponseKind::ListOffsets(response) =
        wire.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request))
    else {
        panic!("not a ListOffsets response");
    };
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset)
}

#[test]
fn list_offsets_max_timestamp_finds_the_newest_record() {
    let _limit = TimeLimit::new(
        "list_offsets_max_timestamp_finds_the_newest_record",
        Duration::from_secs(90),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "timestamps";
    kafka::create_topic(&bootstrap, topic, 1, &[]);
    let producer = kafka::producer(&bootstrap, &[]);
    for (i, timestamp) in [1_000_i64, 5_000, 3_000].iter().enumerate() {
        kafka::send(
            &producer,
            topic,
            None,
            &format!("v{i}"),
            Some(0),
            Some(*timestamp),
        );
        kafka::flush_all_acked(&producer);
    }
    let mut wire = WireClient::connect(&bootstrap);
    assert_eq!(
        list_offset(&mut wire, topic, -3),
        (0, 1),
        "offset 1 has the max timestamp"
    );
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
            alter_on_wire(&mut wire, topic, &[("retention.bytes", "1"), (key, value)]),
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
    let errors = incremental_alter(
        &mut wire,
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
    let synonyms = describe_synonyms(&mut wire, topic, "max.message.bytes");
    assert_eq!(
        synonyms,
        vec![("2000".to_string(), 1), ("1048588".to_string(), 5)]
    );

    // APPEND on a non-list key and a bad value refuse the whole request.
    for bad in [
        ("retention.ms", 2, Some("5")),
        ("retention.ms", 0, Some("-7")),
    ] {
        let error = incremental_alter(
            &mut wire,
            topic,
            &[("segment.bytes", 0, Some("70000")), bad],
        );
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

/// (value, source) of each synonym of `key`, by DescribeConfigs v4 with synonyms.
fn describe_synonyms(wire: &mut WireClient, topic: &str, key: &str) -> Vec<(String, i8)> {
    let request = describe_configs_request::DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str_bytes(topic))
                .with_configuration_keys(Some(vec![str_bytes(key)])),
        ]);
    let ResponseKind::DescribeConfigs(response) = wire.call(
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(request),
    ) else {
        panic!("not a DescribeConfigs response");
    };
    let entry = &response.results[0].configs[0];
    entry
        .synonyms
        .iter()
        .map(|s| (s.value.as_ref().unwrap().to_string(), s.source))
        .collect()
}

/// Sends AlterConfigs v2 for `topic`; returns the resource's error code.
fn alter_on_wire(wire: &mut WireClient, topic: &str, entries: &[(&str, &str)]) -> i16 {
    let configs = entries
        .iter()
        .map(|(name, value)| {
            alter_configs_request::AlterableConfig::default()
                .with_name(str_bytes(name))
                .with_value(Some(str_bytes(value)))
        })
        .collect();
    let request = alter_configs_request::AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(topic))
            .with_configs(configs),
    ]);
    let ResponseKind::AlterConfigs(response) =
        wire.call(ApiKey::AlterConfigs, 2, RequestKind::AlterConfigs(request))
    else {
        panic!("not an AlterConfigs response");
    };
    response.responses[0].error_code
}

/// Sends IncrementalAlterConfigs v1 for `topic`; returns the resource's error code.
fn incremental_alter(wire: &mut WireClient, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let configs = ops
        .iter()
        .map(|(name, operation, value)| {
            AlterableConfig::default()
                .with_name(str_bytes(name))
                .with_config_operation(*operation)
                .with_value(value.map(str_bytes))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(topic))
            .with_configs(configs),
    ]);
    let ResponseKind::IncrementalAlterConfigs(response) = wire.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(request),
    ) else {
        panic!("not an IncrementalAlterConfigs response");
    };
    response.responses[0].error_code
}

#[test]
fn describe_cluster_log_dirs_and_leader_epochs_describe_the_single_node() {
    let _limit = TimeLimit::new(
        "describe_cluster_log_dirs_and_leader_epochs_describe_the_single_node",
        Duration::from_secs(90),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let topic = "described";
    kafka::create_topic(&bootstrap, topic, 2, &[]);
    let producer = kafka::producer(&bootstrap, &[]);
    for i in 0..5 {
        kafka::send(&producer, topic, None, &format!("v{i}"), Some(1), None);
    }
    kafka::flush_all_acked(&producer);
    let mut wire = WireClient::connect(&bootstrap);

    let ResponseKind::DescribeCluster(cluster) = wire.call(
        ApiKey::DescribeCluster,
        1,
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
    ) else {
        panic!("not a DescribeCluster response");
    };
    assert_eq!(cluster.error_code, 0);
    assert!(!cluster.cluster_id.is_empty());
    assert_eq!(cluster.controller_id.0, 1);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].broker_id.0, 1);
    assert_eq!(cluster.brokers[0].port, i32::from(node.kafka_addr().port()));

    let ResponseKind::DescribeLogDirs(dirs) = wire.call(
        ApiKey::DescribeLogDirs,
        4,
        RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![0, 1]),
        ]))),
    ) else {
        panic!("not a DescribeLogDirs response");
    };
    assert_eq!(dirs.results.len(), 1);
    let dir = &dirs.results[0];
    assert_eq!(dir.error_code, 0);
    assert!(
        dir.log_dir
            .as_str()
            .starts_with(node.data_dir().to_str().unwrap())
    );
    let partitions = &dir.topics[0].partitions;
    let size = |index: i32| {
        partitions
            .iter()
            .find(|p| p.partition_index == index)
            .unwrap()
            .partition_size
    };
    assert_eq!(size(0), 0, "nothing was written to partition 0");
    assert!(size(1) > 0, "partition 1 holds the records");

    let epoch_end = |wire: &mut WireClient, current: i32, epoch: i32| {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(1)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ]);
        let ResponseKind::OffsetForLeaderEpoch(response) = wire.call(
            ApiKey::OffsetForLeaderEpoch,
            4,
            RequestKind::OffsetForLeaderEpoch(request),
        ) else {
            panic!("not an OffsetForLeaderEpoch response");
        };
        let answer = &response.topics[0].partitions[0];
        (answer.error_code, answer.leader_epoch, answer.end_offset)
    };
    assert_eq!(
        epoch_end(&mut wire, 0, 0),
        (0, 0, 5),
        "epoch 0 ends at the log end"
    );
    assert_eq!(
        epoch_end(&mut wire, -1, 3),
        (0, -1, -1),
        "an epoch never seen"
    );
    assert_eq!(
        epoch_end(&mut wire, 7, 0),
        (75, -1, -1),
        "UNKNOWN_LEADER_EPOCH"
    );
}
