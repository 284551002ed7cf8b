//! Issue 14: `commerce cluster remove-node` tells the truth. It returns only once the node
//! holds no replica and the replicas that took its place hold everything the partitions
//! held, so an operator who kills the node the moment the command returns loses nothing.
//! (It used to return at once, while the new replica was still 1,861 entries behind.)

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use commerce_tests::cluster::{Cluster, agreed_leader};
use commerce_tests::membership::{self, ADMIN, leader_views, partition_groups};
use commerce_tests::replicated::{SETTLE, create_replicated_topic};
use commerce_tests::{TimeLimit, kafka};

const TOPIC: &str = "leaving-node";
const PARTITIONS: i32 = 3;
/// Enough data, in enough batches, that the new replica cannot catch up in the instant the
/// old command took to return.
const RECORDS: usize = 3000;

fn produce(bootstrap: &str, from: usize, count: usize) -> usize {
    let producer = kafka::producer(bootstrap, &[("enable.idempotence", "true")]);
    let padding = "x".repeat(512);
    for value in from..from + count {
        let partition = i32::try_from(value).unwrap() % PARTITIONS;
        let payload = format!("{value} {padding}");
        kafka::send(&producer, TOPIC, None, &payload, Some(partition), None);
    }
    kafka::flush_all_acked(&producer).len()
}

/// Every value read from the topic, sorted.
fn values(bootstrap: &str) -> Vec<usize> {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let mut values: Vec<usize> =
        kafka::read_all(bootstrap, TOPIC, &partitions, Duration::from_secs(120))
            .iter()
            .map(|record| {
                let value = String::from_utf8_lossy(&record.value);
                value.split(' ').next().unwrap().parse().unwrap()
            })
            .collect();
    values.sort_unstable();
    values
}

#[test]
fn remove_node_returns_once_its_replicas_moved_and_caught_up() {
    let _limit = TimeLimit::new(
        "remove_node_returns_once_its_replicas_moved_and_caught_up",
        Duration::from_secs(600),
    );
    let mut cluster = Cluster::start_with_env(3, &ADMIN);
    cluster.wait_until("a controller leader", &[1, 2, 3], SETTLE, |statuses| {
        agreed_leader(statuses).is_some()
    });
    let all = cluster.bootstrap_of(1..=3);
    // Replication factor 3 on three nodes: node 1 holds a replica of every partition.
    create_replicated_topic(&all, TOPIC, PARTITIONS);
    assert_eq!(
        produce(&all, 0, RECORDS),
        RECORDS,
        "every record acknowledged"
    );
    membership::add_node(&mut cluster, 2, 4);

    // What each partition's leader holds before the move: the new replica must hold at
    // least that when remove-node returns.
    let before = cluster.wait_until(
        "every partition has a leader",
        &[1, 2, 3],
        SETTLE,
        |statuses| {
            let groups = partition_groups(statuses, TOPIC);
            let led = leader_views(statuses);
            groups.len() == PARTITIONS as usize && groups.iter().all(|g| led.contains_key(g))
        },
    );
    let held: BTreeMap<u64, u64> = leader_views(&before)
        .into_iter()
        .filter(|(group, _)| partition_groups(&before, TOPIC).contains(group))
        .map(|(group, view)| (group, view["last_log_index"].as_u64().unwrap()))
        .collect();
    eprintln!("partition groups and their leaders' last index before the move: {held:?}");

    let out = membership::remove_node(&mut cluster, 2, 1);
    assert!(out.contains("node 1 removed from the cluster"), "{out}");

    // Right away, with no waiting: no partition counts node 1 among its voters, and node 4
    // holds every entry its partitions' leaders held before the move.
    let rest = [2, 3, 4];
    let now: Vec<_> = rest.iter().map(|id| (*id, cluster.status(*id))).collect();
    let led = leader_views(&now);
    let node4 = now[2].1.as_ref().expect("node 4 answers its status");
    for (group, index) in &held {
        let view = led.get(group).unwrap_or_else(|| {
            panic!("group {group} has no leader right after remove-node: {now:#?}")
        });
        let voters: BTreeSet<u64> = view["voters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(voters, BTreeSet::from(rest), "group {group}: {view}");
        let replica = node4["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == *group)
            .unwrap_or_else(|| panic!("node 4 holds no replica of group {group}: {node4:#}"));
        let last = replica["last_log_index"].as_u64().unwrap_or(0);
        assert!(
            last >= *index,
            "remove-node returned while node 4 held group {group} up to {last} of {index}"
        );
    }

    // The operator stops the removed node the moment the command returned.
    cluster.node(1).kill();
    let remaining = cluster.bootstrap_of(rest);
    let expected: Vec<usize> = (0..RECORDS).collect();
    assert_eq!(values(&remaining), expected, "no acknowledged record lost");
    assert_eq!(
        produce(&remaining, RECORDS, 300),
        300,
        "every partition takes writes on the remaining nodes"
    );
    let expected: Vec<usize> = (0..RECORDS + 300).collect();
    assert_eq!(values(&remaining), expected);
}
