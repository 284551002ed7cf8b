//! Describe APIs against the single node, through the bare wire client (the rdkafka binding
//! exposes none of them): DescribeCluster, DescribeLogDirs, OffsetForLeaderEpoch and
//! ListOffsets with MAX_TIMESTAMP.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::wire::{WireClient, topic_name};
use commerce_tests::{Node, TimeLimit, kafka};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_log_dirs_request::{
    DescribableLogDirTopic, DescribeLogDirsRequest,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

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
        wire.list_offset(topic, -3),
        (0, 1),
        "offset 1 has the max timestamp"
    );
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

#[test]
fn a_single_node_keeps_its_cluster_id_across_restarts() {
    let _limit = TimeLimit::new(
        "a_single_node_keeps_its_cluster_id_across_restarts",
        Duration::from_secs(90),
    );
    let mut node = Node::start();
    let before = described_cluster_id(&node.bootstrap());
    node.kill();
    node.restart();
    assert_eq!(
        described_cluster_id(&node.bootstrap()),
        before,
        "after kill -9"
    );
    node.terminate();
    node.restart();
    assert_eq!(
        described_cluster_id(&node.bootstrap()),
        before,
        "after a clean stop"
    );
}

fn described_cluster_id(bootstrap: &str) -> String {
    let mut wire = WireClient::connect(bootstrap);
    let ResponseKind::DescribeCluster(cluster) = wire.call(
        ApiKey::DescribeCluster,
        1,
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
    ) else {
        panic!("not a DescribeCluster response");
    };
    assert_eq!(cluster.error_code, 0);
    assert!(!cluster.cluster_id.is_empty());
    cluster.cluster_id.to_string()
}
