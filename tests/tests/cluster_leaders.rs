//! Leadership on a three-node cluster follows placement: each partition is led by its
//! preferred replica (the first of its replicas), and when that node fails and returns, it
//! takes its leadership back instead of leaving one node leading everything.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commerce_tests::TimeLimit;
use commerce_tests::replicated::Replicated;

/// Each partition's first replica, as node `id` describes the topic.
fn preferred(replicated: &Replicated, id: u64) -> BTreeMap<i32, u64> {
    replicated
        .view(id)
        .expect("the node answers Metadata")
        .into_iter()
        .map(|(partition, view)| (partition, view.replicas[0]))
        .collect()
}

#[test]
fn a_returning_node_takes_back_its_preferred_leadership() {
    let _limit = TimeLimit::new(
        "a_returning_node_takes_back_its_preferred_leadership",
        Duration::from_secs(120),
    );
    let mut replicated = Replicated::start("preferred-leaders");
    let all = replicated.cluster.ids();
    let wanted = preferred(&replicated, 1);
    let mut spread: Vec<u64> = wanted.values().copied().collect();
    spread.sort_unstable();
    assert_eq!(
        spread, all,
        "placement spreads preferred leaders over every node"
    );
    let initial = replicated.wait_leaders(&all, "leaders of a new topic");
    assert_eq!(
        initial, wanted,
        "a new partition is led by its preferred replica"
    );

    let victim = wanted[&0];
    replicated.cluster.node(victim).kill();
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != victim).collect();
    let moved = replicated.wait_leaders(&survivors, "leaders without the killed node");
    assert_ne!(moved[&0], victim);

    replicated.cluster.node(victim).restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = replicated.wait_leaders(&all, "leaders after the restart");
        if now == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {victim} did not take back its partitions: leaders {now:?}, preferred {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
