//! The Kafka behaviour scenarios ([`commerce_tests::kafka_behaviour`]) against one node and
//! against a three-node cluster: one source, two deployments, so a client that works on
//! one node and breaks on the cluster fails here. Each test starts its deployment once and
//! runs every scenario in turn on its own topics.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use commerce_tests::cluster::{Cluster, agreed_leader};
use commerce_tests::kafka;
use commerce_tests::kafka_behaviour::{self, Skip};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::consumer::Consumer;

/// The two tests run one after the other even when the harness runs tests in parallel: a
/// node and a cluster at once on a two-core machine would slow both into their limits.
static ONE_DEPLOYMENT_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Scenarios the cluster variant does not run yet, each with why (printed when it runs).
const CLUSTER_SKIPS: &[Skip] = &[];

#[test]
fn kafka_behaviour_on_a_single_node() {
    let _turn = ONE_DEPLOYMENT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _limit = TimeLimit::new("kafka_behaviour_on_a_single_node", Duration::from_secs(600));
    let started = Instant::now();
    let node = Node::start();
    kafka_behaviour::run("single node", &node.bootstrap(), &[]);
    eprintln!("single node: every scenario in {:.1?}", started.elapsed());
}

#[test]
fn kafka_behaviour_on_a_three_node_cluster() {
    let _turn = ONE_DEPLOYMENT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _limit = TimeLimit::new(
        "kafka_behaviour_on_a_three_node_cluster",
        Duration::from_secs(900),
    );
    let started = Instant::now();
    let cluster = Cluster::start(3);
    let ids = cluster.ids();
    cluster.wait_until("a controller leader", &ids, SETTLE, |statuses| {
        agreed_leader(statuses).is_some()
    });
    let bootstrap = cluster.bootstrap_of(ids.clone());
    // A client bootstrapped now sees the whole cluster: scenarios then create their topics
    // with replication factor 3.
    for id in &ids {
        let node = cluster.bootstrap_of([*id]);
        wait_for(
            &format!("node {id}'s Metadata lists the three brokers"),
            SETTLE,
            || {
                let metadata = kafka::consumer(&node)
                    .fetch_metadata(None, Duration::from_secs(5))
                    .ok()?;
                (metadata.brokers().len() == ids.len()).then_some(())
            },
        );
    }
    eprintln!("three-node cluster formed in {:.1?}", started.elapsed());
    kafka_behaviour::run("three-node cluster", &bootstrap, CLUSTER_SKIPS);
    eprintln!(
        "three-node cluster: every scenario in {:.1?}",
        started.elapsed()
    );
}

/// How long the cluster may take to form and elect its controller.
const SETTLE: Duration = Duration::from_secs(60);
