//! Kafka offsets on a three-node cluster are what they are on one node: a partition numbers
//! its records from 0 with no gap, whatever Raft does underneath (each new leader's blank
//! entry, membership entries, a leader killed -9, DeleteRecords, a replica rebuilt from a
//! snapshot), so watermarks and offsets-for-times count records only. And every node of
//! the cluster answers the same ClusterId, before and after a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::Duration;

use commerce_tests::cluster::Cluster;
use commerce_tests::kafka::{self, Record, TestProducer};
use commerce_tests::replicated::{create_replicated_topic_with, moved_log_starts, wait_for_leader};
use commerce_tests::wire::WireClient;
use commerce_tests::{TimeLimit, wait_for};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestKind, ResponseKind};
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "dense";
/// Records before the leader is killed, and after.
const BEFORE_KILL: i64 = 20;
const AFTER_KILL: i64 = 20;
/// Where DeleteRecords moves the log start: the wiped replica then needs a snapshot.
const NEW_START: i64 = 10;

#[test]
fn offsets_stay_dense_through_a_leader_kill_and_a_replica_rebuilt_from_a_snapshot() {
    let _limit = TimeLimit::new(
        "offsets_stay_dense_through_a_leader_kill_and_a_replica_rebuilt_from_a_snapshot",
        Duration::from_secs(240),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap_of(1..=3);
    // Small segments, so that DeleteRecords lets every replica purge whole segments.
    create_replicated_topic_with(&bootstrap, TOPIC, 1, &[("segment.bytes", "1024")]);
    let first_leader = wait_for_leader(&bootstrap, TOPIC, 0, |_| true);
    // The group's membership and its leader's blank entry are in its Raft log already.
    assert_eq!(
        kafka::watermarks(&bootstrap, TOPIC, 0),
        (0, 0),
        "a new partition holds nothing"
    );

    let producer = kafka::producer(&bootstrap, &[]);
    let offsets = produce(&producer, 0..BEFORE_KILL);
    assert_eq!(
        offsets,
        (0..BEFORE_KILL).collect::<Vec<_>>(),
        "records numbered from 0 with no gap"
    );
    assert_eq!(kafka::watermarks(&bootstrap, TOPIC, 0), (0, BEFORE_KILL));
    // Offsets-for-times counts records only: record n is the first at or after its time.
    for n in [0, 7, BEFORE_KILL - 1] {
        assert_eq!(
            kafka::offset_for_time(&bootstrap, TOPIC, 0, timestamp(n) - 500),
            Offset::Offset(n),
            "the first record at or after record {n}'s time"
        );
    }
    assert_eq!(
        kafka::offset_for_time(&bootstrap, TOPIC, 0, timestamp(BEFORE_KILL)),
        Offset::End,
        "no record that late"
    );
    drop(producer);

    // The leader killed -9: a new one is elected (a new term, with its own blank entry).
    cluster.node(first_leader).kill();
    let survivors = cluster.bootstrap_of((1..=3).filter(|id| *id != first_leader));
    let second_leader = wait_for_leader(&survivors, TOPIC, 0, |id| id != first_leader);
    eprintln!("partition 0: leader {first_leader} killed, {second_leader} elected");
    let producer = kafka::producer(&survivors, &[]);
    let offsets = produce(&producer, BEFORE_KILL..BEFORE_KILL + AFTER_KILL);
    let end = BEFORE_KILL + AFTER_KILL;
    assert_eq!(
        offsets,
        (BEFORE_KILL..end).collect::<Vec<_>>(),
        "the new leader continues the same sequence"
    );
    assert_eq!(kafka::watermarks(&survivors, TOPIC, 0), (0, end));
    assert_eq!(
        kafka::offset_for_time(&survivors, TOPIC, 0, timestamp(BEFORE_KILL) - 500),
        Offset::Offset(BEFORE_KILL)
    );
    let all = kafka::read_all(&survivors, TOPIC, &[0], Duration::from_secs(60));
    assert_eq!(
        summary(&all),
        expected(0..end),
        "every record at its offset"
    );
    drop(producer);
    cluster.node(first_leader).restart();

    // DeleteRecords: the log start moves, and the entry that moves it takes no offset.
    let admin = kafka::admin(&bootstrap);
    let mut trim = TopicPartitionList::new();
    trim.add_partition_offset(TOPIC, 0, Offset::Offset(NEW_START))
        .unwrap();
    let result = kafka::block_on(admin.delete_records(&trim, &kafka::admin_options())).unwrap();
    let element = result.find_partition(TOPIC, 0).unwrap();
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(
        kafka::watermarks(&bootstrap, TOPIC, 0),
        (NEW_START, end),
        "the high watermark still counts records only"
    );
    // Every replica purges the segments below the new start through Raft, so a replica
    // that lost its data can only come back from a snapshot.
    wait_for(
        "every replica purged below the new log start",
        SETTLE,
        || {
            (1..=3)
                .all(|id| {
                    moved_log_starts(&cluster.node(id).data_dir())
                        .first()
                        .is_some_and(|first| *first <= NEW_START)
                })
                .then_some(())
        },
    );

    // The preferred leader loses its disk and comes back: it is sent a snapshot with the
    // retained batches, and once it leads again (preferred leaders take leadership back
    // when caught up), it serves the same offsets, and the next record comes after them.
    let preferred = preferred_leader(&bootstrap);
    cluster.node(preferred).kill();
    let dir = cluster.node(preferred).data_dir();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    cluster.node(preferred).restart();
    let through = cluster.node(preferred).bootstrap();
    wait_for_leader(&through, TOPIC, 0, |id| id == preferred);
    eprintln!("partition 0: node {preferred}, wiped, leads again");
    assert_eq!(kafka::watermarks(&through, TOPIC, 0), (NEW_START, end));
    let rebuilt = kafka::read_all(&through, TOPIC, &[0], Duration::from_secs(60));
    assert_eq!(
        summary(&rebuilt),
        expected(NEW_START..end),
        "the rebuilt replica serves every retained record at its offset"
    );
    let producer = kafka::producer(&through, &[]);
    assert_eq!(
        produce(&producer, end..end + 5),
        (end..end + 5).collect::<Vec<_>>()
    );
    assert_eq!(kafka::watermarks(&through, TOPIC, 0), (NEW_START, end + 5));
}

#[test]
fn every_node_answers_one_cluster_id() {
    let _limit = TimeLimit::new(
        "every_node_answers_one_cluster_id",
        Duration::from_secs(120),
    );
    let mut cluster = Cluster::start(3);
    let ids = cluster.ids();
    let first = wait_for(
        "every node answers Metadata with a cluster id",
        SETTLE,
        || {
            ids.iter()
                .map(|id| metadata_cluster_id(&cluster.node(*id).bootstrap()))
                .collect::<Option<Vec<String>>>()
        },
    );
    eprintln!("cluster ids in Metadata: {first:?}");
    assert_eq!(
        first.iter().collect::<BTreeSet<_>>().len(),
        1,
        "every node answers the same ClusterId: {first:?}"
    );
    let cluster_id = first[0].clone();
    assert!(!cluster_id.is_empty());
    for id in &ids {
        let (described, brokers) = describe_cluster(&cluster.node(*id).bootstrap());
        assert_eq!(described, cluster_id, "node {id}'s DescribeCluster");
        assert_eq!(brokers, ids, "node {id} describes every broker");
    }

    // A node killed -9 and restarted answers the same id; so does a node whose data was
    // wiped (it learns the id from the controller, not from its own disk).
    cluster.node(2).kill();
    cluster.node(2).restart();
    cluster.node(3).kill();
    let dir = cluster.node(3).data_dir();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    cluster.node(3).restart();
    for id in [2, 3] {
        let bootstrap = cluster.node(id).bootstrap();
        let again = wait_for("the restarted node answers a cluster id", SETTLE, || {
            metadata_cluster_id(&bootstrap)
        });
        assert_eq!(again, cluster_id, "node {id} after its restart");
    }
}

/// How long the cluster may take to elect, purge or answer.
const SETTLE: Duration = Duration::from_secs(60);

/// Record `n`'s timestamp: `n` seconds after a minute before the test's first record
/// (recent: time retention must not take the records).
fn timestamp(n: i64) -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_millis();
        i64::try_from(now).expect("a time in range") - 60_000
    });
    start + n * 1_000
}

fn value(n: i64) -> String {
    format!("{n:04}-{}", "x".repeat(100))
}

/// Produces records `numbers` one batch each (each acknowledged before the next is sent)
/// to partition 0; returns the offsets they were acknowledged at.
fn produce(producer: &TestProducer, numbers: std::ops::Range<i64>) -> Vec<i64> {
    let before = producer.context().acked_count();
    for n in numbers {
        kafka::send(
            producer,
            TOPIC,
            None,
            &value(n),
            Some(0),
            Some(timestamp(n)),
        );
        kafka::flush_all_acked(producer);
    }
    producer.context().acked()[before..]
        .iter()
        .map(|record| record.offset)
        .collect()
}

fn summary(records: &[Record]) -> Vec<(i64, String)> {
    records
        .iter()
        .map(|record| (record.offset, record.value_str().to_string()))
        .collect()
}

/// Record `n` at offset `n`, for each of `numbers`.
fn expected(numbers: std::ops::Range<i64>) -> Vec<(i64, String)> {
    numbers.map(|n| (n, value(n))).collect()
}

fn preferred_leader(bootstrap: &str) -> u64 {
    let metadata = kafka::consumer(bootstrap)
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    u64::try_from(metadata.topics()[0].partitions()[0].replicas()[0]).unwrap()
}

/// The ClusterId the node at `bootstrap` answers in Metadata (v12), if it names one.
fn metadata_cluster_id(bootstrap: &str) -> Option<String> {
    let mut wire = WireClient::connect(bootstrap);
    let request = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(metadata) =
        wire.call(ApiKey::Metadata, 12, RequestKind::Metadata(request))
    else {
        panic!("not a Metadata response");
    };
    metadata.cluster_id.map(|id| id.to_string())
}

/// The ClusterId and broker ids the node at `bootstrap` answers in DescribeCluster.
fn describe_cluster(bootstrap: &str) -> (String, Vec<u64>) {
    let mut wire = WireClient::connect(bootstrap);
    let ResponseKind::DescribeCluster(described) = wire.call(
        ApiKey::DescribeCluster,
        1,
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
    ) else {
        panic!("not a DescribeCluster response");
    };
    assert_eq!(described.error_code, 0, "{:?}", described.error_message);
    let mut brokers: Vec<u64> = described
        .brokers
        .iter()
        .map(|broker| u64::try_from(broker.broker_id.0).unwrap())
        .collect();
    brokers.sort_unstable();
    (described.cluster_id.to_string(), brokers)
}

/// CreateTopics answers once the new topic's partitions have leaders this node knows: a
/// Metadata request to the same node right after names a leader for each, and the first
/// records produced to every partition get offset 0 at once.
#[test]
fn a_created_topic_has_leaders_when_create_topics_answers() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};

    let _limit = TimeLimit::new("created_topic_has_leaders", Duration::from_secs(120));
    let mut cluster = Cluster::start(3);
    let node = cluster.node(2).bootstrap();
    let mut wire = WireClient::connect(&node);
    let topic = "ready-at-once";
    let create = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(commerce_tests::wire::str_bytes(topic)))
                .with_num_partitions(3)
                .with_replication_factor(3),
        ])
        .with_timeout_ms(30_000);
    // Until the three nodes have registered, the answer is a retriable NOT_CONTROLLER.
    wait_for("the topic created", Duration::from_secs(60), || {
        let ResponseKind::CreateTopics(answer) = wire.call(
            ApiKey::CreateTopics,
            5,
            RequestKind::CreateTopics(create.clone()),
        ) else {
            panic!("not a CreateTopics answer");
        };
        (answer.topics[0].error_code == 0).then_some(())
    });
    let request = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(commerce_tests::wire::str_bytes(topic)))),
    ]));
    let ResponseKind::Metadata(metadata) =
        wire.call(ApiKey::Metadata, 9, RequestKind::Metadata(request))
    else {
        panic!("not a Metadata answer");
    };
    let partitions = &metadata.topics[0].partitions;
    assert_eq!(partitions.len(), 3);
    for partition in partitions {
        assert_eq!(partition.error_code, 0, "{partition:?}");
        assert!(partition.leader_id.0 >= 1, "no leader named: {partition:?}");
    }

    let producer = kafka::producer(&node, &[("message.timeout.ms", "10000")]);
    for partition in 0..3 {
        kafka::send(&producer, topic, None, "first", Some(partition), None);
    }
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(acked.len(), 3);
    assert!(acked.iter().all(|record| record.offset == 0), "{acked:?}");
}
