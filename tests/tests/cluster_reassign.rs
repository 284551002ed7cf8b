//! Growing and shrinking a cluster that holds data: a fourth node is added, then one of the
//! original three is removed with `commerce cluster remove-node`. Its partition replicas
//! move to the other nodes (the new one catching up from the leaders), so that afterwards
//! the three remaining nodes hold every acknowledged record, and any two of them still
//! serve all of it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use commerce_tests::cluster::Cluster;
use commerce_tests::{TimeLimit, cli, kafka};
use rdkafka::consumer::{BaseConsumer, Consumer};

const TOPIC: &str = "moving-replicas";
const PARTITIONS: i32 = 2;
const ADMIN: [(&str, &str); 2] = [
    ("COMMERCE_ADMIN_EMAIL", "ops@example.com"),
    ("COMMERCE_ADMIN_PASSWORD", "cluster-admin-pw"),
];

/// Each partition's (replicas, ISR) as the node at `bootstrap` describes them.
fn placement(bootstrap: &str) -> Vec<(BTreeSet<i32>, BTreeSet<i32>)> {
    let consumer: BaseConsumer = kafka::config(bootstrap).create().unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(5)) else {
        return Vec::new();
    };
    let Some(topic) = metadata.topics().first() else {
        return Vec::new();
    };
    topic
        .partitions()
        .iter()
        .map(|p| {
            (
                p.replicas().iter().copied().collect(),
                p.isr().iter().copied().collect(),
            )
        })
        .collect()
}

fn produce(bootstrap: &str, from: usize, count: usize) {
    let producer = kafka::producer(bootstrap, &[("enable.idempotence", "true")]);
    for value in from..from + count {
        let partition = i32::try_from(value).unwrap() % PARTITIONS;
        kafka::send(
            &producer,
            TOPIC,
            None,
            &value.to_string(),
            Some(partition),
            None,
        );
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), count);
}

/// Every value read from both partitions, sorted.
fn values(bootstrap: &str) -> Vec<usize> {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let mut values: Vec<usize> =
        kafka::read_all(bootstrap, TOPIC, &partitions, Duration::from_secs(60))
            .iter()
            .map(|record| String::from_utf8_lossy(&record.value).parse().unwrap())
            .collect();
    values.sort_unstable();
    values
}

#[test]
fn a_removed_node_hands_its_replicas_to_the_others() {
    let _limit = TimeLimit::new(
        "a_removed_node_hands_its_replicas_to_the_others",
        Duration::from_secs(180),
    );
    let mut cluster = Cluster::start_with_env(3, &ADMIN);
    let all = cluster.bootstrap_of(1..=3);
    commerce_tests::replicated::create_replicated_topic(&all, TOPIC, PARTITIONS);
    produce(&all, 0, 600);

    let raft = cluster.start_joining(4, &ADMIN);
    let http = cluster.node(2).http_addr().to_string();
    let access = [
        "--http-addr",
        http.as_str(),
        "--admin-email",
        "ops@example.com",
        "--admin-password",
        "cluster-admin-pw",
    ];
    let raft = raft.to_string();
    let mut add = vec!["cluster", "add-node"];
    add.extend_from_slice(&access);
    add.extend_from_slice(&["--node-id", "4", "--raft-addr", &raft]);
    cli::run_ok(&add, b"", Duration::from_secs(120));

    // Node 1 holds a replica of every partition; removing it moves them to node 4.
    let mut remove = vec!["cluster", "remove-node"];
    remove.extend_from_slice(&access);
    remove.extend_from_slice(&["--node-id", "1"]);
    cli::run_ok(&remove, b"", Duration::from_secs(120));
    let rest = cluster.bootstrap_of(2..=4);
    let moved: BTreeSet<i32> = [2, 3, 4].into();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = placement(&cluster.node(2).bootstrap());
        let done = now.len() == PARTITIONS as usize
            && now
                .iter()
                .all(|(replicas, isr)| *replicas == moved && *isr == moved);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not move to nodes 2, 3, 4 in sync: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    cluster.node(1).kill();
    produce(&rest, 600, 400);
    let expected: Vec<usize> = (0..1000).collect();
    assert_eq!(
        values(&rest),
        expected,
        "the three remaining nodes serve everything"
    );

    // Node 4 only ever received the data from the leaders: with node 2 gone too, nodes 3
    // and 4 are a majority of every partition, and node 4 must hold all of it.
    cluster.node(2).kill();
    let two = cluster.bootstrap_of(3..=4);
    assert_eq!(
        values(&two),
        expected,
        "nodes 3 and 4 alone serve everything"
    );
}
