//! Consumer groups on a three-node cluster: a group's coordinator is the leader of its
//! `__consumer_offsets` partition, and its committed offsets are replicated with that
//! partition. Killing the coordinator with -9 moves the group to the new leader, which
//! continues from the last acknowledged commit.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use commerce_tests::cluster::Cluster;
use commerce_tests::{TimeLimit, kafka};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "group-failover";
const GROUP: &str = "failover-readers";
const RECORDS: usize = 1_000;
const FIRST_READ: usize = 300;
/// `__consumer_offsets` partitions (the broker's `OFFSETS_PARTITIONS`).
const OFFSETS_PARTITIONS: i32 = 8;

/// Kafka's group -> `__consumer_offsets` partition: Java's String.hashCode, Utils.abs, mod.
fn offsets_partition(group: &str) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % OFFSETS_PARTITIONS
}

/// The leader of `topic`-`partition` as the node at `bootstrap` advertises it.
fn leader(bootstrap: &str, topic: &str, partition: i32) -> Option<u64> {
    let consumer: BaseConsumer = kafka::config(bootstrap).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let found = metadata.topics().first()?;
    let partition = found.partitions().iter().find(|p| p.id() == partition)?;
    u64::try_from(partition.leader()).ok()
}

fn member(bootstrap: &str) -> BaseConsumer {
    let mut config: ClientConfig = kafka::config(bootstrap);
    config
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    let consumer: BaseConsumer = config.create().expect("cannot create a group member");
    consumer.subscribe(&[TOPIC]).expect("cannot subscribe");
    consumer
}

/// Polls `consumer` until it has `count` records (values), or panics after `limit`.
fn take(consumer: &BaseConsumer, count: usize, limit: Duration) -> Vec<(i64, String)> {
    let deadline = Instant::now() + limit;
    let mut taken = Vec::new();
    while taken.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records within {limit:?}",
            taken.len()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string();
            taken.push((message.offset(), value));
        }
    }
    taken
}

#[test]
fn committed_offsets_survive_a_coordinator_kill() {
    let _limit = TimeLimit::new(
        "committed_offsets_survive_a_coordinator_kill",
        Duration::from_secs(150),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap_of(cluster.ids());
    commerce_tests::replicated::create_replicated_topic(&bootstrap, TOPIC, 1);
    let producer = kafka::producer(&bootstrap, &[("enable.idempotence", "true")]);
    for value in 0..RECORDS {
        kafka::send(&producer, TOPIC, None, &value.to_string(), Some(0), None);
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), RECORDS);

    // Read part of the topic in the group and commit it synchronously.
    let first = member(&bootstrap);
    let read = take(&first, FIRST_READ, Duration::from_secs(60));
    let values: Vec<String> = read.iter().map(|(_, value)| value.clone()).collect();
    let expected: Vec<String> = (0..FIRST_READ).map(|v| v.to_string()).collect();
    assert_eq!(values, expected, "the group reads the partition in order");
    let (last_offset, _) = read[FIRST_READ - 1];
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset(TOPIC, 0, Offset::Offset(last_offset + 1))
        .unwrap();
    first
        .commit(&position, CommitMode::Sync)
        .expect("the commit is acknowledged");
    drop(first);

    // Kill the group's coordinator: the leader of its offsets partition.
    let offsets = offsets_partition(GROUP);
    let coordinator = leader(&bootstrap, "__consumer_offsets", offsets)
        .expect("the offsets partition has a leader");
    cluster.node(coordinator).kill();
    let survivors: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != coordinator)
        .collect();
    let rest = survivors
        .iter()
        .map(|id| cluster.node(*id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(30);
    let successor = loop {
        match leader(&rest, "__consumer_offsets", offsets) {
            Some(new) if new != coordinator => break new,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no new leader of the offsets partition"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(survivors.contains(&successor));

    // A new member continues right after the acknowledged commit, on the new coordinator.
    let second = member(&rest);
    let rest_read = take(&second, RECORDS - FIRST_READ, Duration::from_secs(60));
    let values: Vec<String> = rest_read.iter().map(|(_, value)| value.clone()).collect();
    let expected: Vec<String> = (FIRST_READ..RECORDS).map(|v| v.to_string()).collect();
    assert_eq!(
        values.first(),
        expected.first(),
        "the group must continue after its last commit, neither re-reading nor skipping"
    );
    assert_eq!(values, expected);
    let committed = commerce_tests::group::committed(&rest, GROUP, TOPIC, 0);
    assert_eq!(
        committed,
        Some(last_offset + 1),
        "the new coordinator serves the commit"
    );

    // `commerce group list` asks every broker, as Kafka's admin clients do: each node
    // answers for the groups it coordinates, so the group is listed once, not per node.
    let listed = commerce_tests::cli::run_ok(
        &["group", "list", "--brokers", &rest],
        b"",
        Duration::from_secs(30),
    );
    let rows = listed
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(GROUP))
        .count();
    assert_eq!(rows, 1, "{listed}");
    drop(second);
}
