//! Issue 14: leadership spreads over the nodes after membership changes. After a fourth
//! node is added and topics are created, every node leads partitions; after a node is
//! removed, its leaderships spread over the others instead of falling to one of them (one
//! node once led 10 of 15 groups, the new node none). Leaders are read as the nodes'
//! `/cluster/status` reports them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_tests::TimeLimit;
use commerce_tests::cluster::{Cluster, agreed_leader};
use commerce_tests::membership::{
    self, ADMIN, leader_counts, leader_views, partition_groups, service_groups,
};
use commerce_tests::replicated::{SETTLE, create_replicated_topic};
use serde_json::Value;

const TOPICS: [&str; 3] = ["spread-before", "spread-after-a", "spread-after-b"];
const PARTITIONS: i32 = 3;
/// Preferred leaders take leadership back in turns (a caught-up replica stands every 15 s
/// at most), so settling takes a while on a busy machine.
const SPREAD: Duration = Duration::from_secs(240);

/// Whether `counts` (groups led per node) is spread: every node leads at least one, and
/// none more than one above an even share.
fn spread(counts: &BTreeMap<u64, usize>) -> bool {
    let groups: usize = counts.values().sum();
    let share = groups.div_ceil(counts.len());
    counts.values().all(|led| *led >= 1 && *led <= share + 1)
}

/// Waits until the partitions of [`TOPICS`] are led spread over `nodes`; returns the
/// partition and service leader counts.
fn wait_spread(
    cluster: &Cluster,
    nodes: &[u64],
    what: &str,
) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let counts = |statuses: &[(u64, Option<Value>)]| {
        let views = leader_views(statuses);
        let partitions = partition_groups(statuses, "spread-");
        if partitions.len() != TOPICS.len() * PARTITIONS as usize {
            return None;
        }
        Some((
            leader_counts(&views, &partitions, nodes)?,
            leader_counts(&views, &service_groups(statuses), nodes)?,
        ))
    };
    // What the last look saw, printed when it changes: the failure message shows statuses,
    // this shows how leadership moved meanwhile.
    let last = std::cell::RefCell::new(None);
    let statuses = cluster.wait_until(what, nodes, SPREAD, |statuses| {
        let now = counts(statuses);
        if *last.borrow() != now {
            eprintln!("{what}: leaders per node (partitions, services): {now:?}");
            last.replace(now.clone());
        }
        // Only partitions are asserted: the services' groups do not all follow their
        // preferred voter yet on a busy cluster (seen: 1, 5, 3, 2 of 11 over four nodes;
        // issue 14, open). Their counts are printed for whoever takes that up.
        now.is_some_and(|(partitions, _)| partitions.len() == nodes.len() && spread(&partitions))
    });
    counts(&statuses).unwrap()
}

#[test]
fn leadership_spreads_over_the_nodes_after_add_and_remove() {
    let _limit = TimeLimit::new(
        "leadership_spreads_over_the_nodes_after_add_and_remove",
        Duration::from_secs(900),
    );
    let mut cluster = Cluster::start_with_env(3, &ADMIN);
    cluster.wait_until("a controller leader", &[1, 2, 3], SETTLE, |statuses| {
        agreed_leader(statuses).is_some()
    });
    create_replicated_topic(&cluster.bootstrap_of(1..=3), TOPICS[0], PARTITIONS);
    membership::add_node(&mut cluster, 2, 4);
    for topic in &TOPICS[1..] {
        create_replicated_topic(&cluster.bootstrap_of(1..=4), topic, PARTITIONS);
    }
    let (partitions, services) = wait_spread(
        &cluster,
        &[1, 2, 3, 4],
        "leadership spread over four nodes after add-node",
    );
    eprintln!("after add-node: partitions {partitions:?}, services {services:?}");

    // Node 1 preferred-leads three of the nine partitions; moved off it naively, all three
    // fell to node 2 (five of nine).
    membership::remove_node(&mut cluster, 2, 1);
    cluster.node(1).kill();
    let (partitions, services) = wait_spread(
        &cluster,
        &[2, 3, 4],
        "leadership spread over the three remaining nodes after remove-node",
    );
    eprintln!("after remove-node: partitions {partitions:?}, services {services:?}");
}
