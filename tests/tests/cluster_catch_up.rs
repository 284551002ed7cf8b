//! A follower that falls far behind catches up by log replication, whatever the size of
//! the entries it missed.
//!
//! A partition's Raft entry is a whole producer batch (here up to 1 MB), and openraft sends up
//! to 300 entries per AppendEntries: a follower paused while the others take ~100 MiB used
//! to be sent requests past the 64 MiB frame limit, which could never be encoded, so it
//! never caught up (and, under load, a bench stalled for seconds). The test pauses a
//! follower of a one-partition topic with SIGSTOP, produces ~100 MiB, resumes it, waits
//! until it has applied everything, then kills the other follower: the resumed one is now
//! needed for every acks=all write, and the whole partition is read back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::cluster::Cluster;
use commerce_tests::replicated::{create_replicated_topic, signal, wait_for_leader};
use commerce_tests::{TimeLimit, kafka};
use serde_json::Value;

const TOPIC: &str = "far-behind";
/// 400 records of 256 KiB: about 100 MiB in batches of 1 MiB.
const RECORDS: usize = 400;
const RECORD_BYTES: usize = 256 * 1024;

#[test]
fn a_follower_far_behind_catches_up_by_replication() {
    let _limit = TimeLimit::new(
        "a_follower_far_behind_catches_up_by_replication",
        Duration::from_secs(180),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap_of(1..=3);
    create_replicated_topic(&bootstrap, TOPIC, 1);
    let leader = wait_for_leader(&bootstrap, TOPIC, 0, |_| true);
    let mut followers = (1..=3u64).filter(|id| *id != leader);
    let (paused, other) = (followers.next().unwrap(), followers.next().unwrap());

    let pid = cluster.node(paused).pid().expect("the follower runs");
    signal("-STOP", pid);
    let producer = kafka::producer(
        &bootstrap,
        &[("batch.size", "1000000"), ("linger.ms", "50")],
    );
    let value = "v".repeat(RECORD_BYTES);
    for key in 0..RECORDS {
        kafka::send(
            &producer,
            TOPIC,
            Some(&key.to_string()),
            &value,
            Some(0),
            None,
        );
    }
    let acked = kafka::flush_all_acked(&producer).len();
    assert_eq!(
        acked, RECORDS,
        "the leader and one follower take every record"
    );
    signal("-CONT", pid);

    // The resumed follower applies everything the leader has.
    let group = partition_group(&cluster.status(leader).unwrap());
    cluster.wait_until(
        "the resumed follower caught up with the leader",
        &[leader, paused],
        Duration::from_secs(60),
        |statuses| {
            let index = |status: &Option<Value>, field: &str| {
                status
                    .as_ref()
                    .and_then(|status| group_view(status, group))
                    .and_then(|view| view[field].as_u64())
            };
            let leader_last = index(&statuses[0].1, "last_log_index");
            leader_last.is_some() && index(&statuses[1].1, "last_applied_index") == leader_last
        },
    );

    // Now the resumed follower is part of every majority: one more acks=all write, then
    // everything is read back.
    cluster.node(other).kill();
    kafka::send(&producer, TOPIC, Some("last"), "last", Some(0), None);
    assert_eq!(
        kafka::flush_all_acked(&producer).len(),
        RECORDS + 1,
        "a write acknowledged by the leader and the follower that caught up"
    );
    let survivors = [leader, paused]
        .iter()
        .map(|id| cluster.node(*id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let records = kafka::read_all(&survivors, TOPIC, &[0], Duration::from_secs(60));
    assert_eq!(records.len(), RECORDS + 1);
    assert!(
        records[..RECORDS]
            .iter()
            .all(|r| r.value.len() == RECORD_BYTES)
    );
}

/// The group id of the topic's partition in a node's status.
fn partition_group(status: &Value) -> u64 {
    status["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|group| group["partition"].as_str() == Some(&format!("{TOPIC}-0")))
        .and_then(|group| group["group"].as_u64())
        .unwrap_or_else(|| panic!("no group for {TOPIC}-0 in {status:#}"))
}

fn group_view(status: &Value, group: u64) -> Option<&Value> {
    status["groups"]
        .as_array()?
        .iter()
        .find(|view| view["group"].as_u64() == Some(group))
}
