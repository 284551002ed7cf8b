//! A replica that loses its whole disk recovers everything from its peers.
//!
//! A three-node cluster runs one idempotent acks=all producer on a three-partition topic
//! replicated on every node. One replica (a node leading no partition if there is one, so the
//! producer keeps running) is killed -9, its data directory emptied, and restarted on the same
//! ports and `--peers`, without `--join`: it bootstraps the same first membership again and
//! the leaders of its groups bring it up to date (by log replication or a snapshot) while
//! the producer keeps going. Once it has applied every group as far as the group's leader,
//! one of the two original nodes is killed -9: the wiped node is now needed for a majority,
//! and the whole history is read back from the two remaining nodes and checked.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use commerce_tests::cluster::Cluster;
use commerce_tests::kafka::{self, Record};
use commerce_tests::replicated::{PARTITIONS, Replicated, SETTLE};
use commerce_tests::workload::{Workload, check_history};
use commerce_tests::{TimeLimit, wait_for};
use rdkafka::consumer::Consumer;
use serde_json::Value;

/// How long the wiped node may take to catch up with every group's leader.
const CATCH_UP: Duration = Duration::from_secs(40);

#[test]
fn a_wiped_replica_recovers_everything_from_its_peers() {
    let _limit = TimeLimit::new(
        "a_wiped_replica_recovers_everything_from_its_peers",
        Duration::from_secs(120),
    );
    let mut replicated = Replicated::start("orders-wiped-replica");
    let all = replicated.cluster.ids();
    let workload = Workload::start(&replicated.bootstrap, replicated.topic);
    workload.wait_acked(1_500, "acknowledgements before the wipe");

    // The victim: a node leading no partition if there is one (the producer then never
    // loses a leader), else a follower of partition 0.
    let leaders = replicated.wait_leaders(&all, "leaders before the wipe");
    let leading: BTreeSet<u64> = leaders.values().copied().collect();
    let wiped = all
        .iter()
        .copied()
        .find(|id| !leading.contains(id))
        .or_else(|| all.iter().copied().find(|id| *id != leaders[&0]))
        .expect("a follower of partition 0");
    let originals = without(&all, wiped);
    let before = replicated
        .cluster
        .status(wiped)
        .expect("the node to wipe answers /cluster/status");
    let groups_before = group_ids(&before);
    assert!(
        groups_before.len() > PARTITIONS as usize,
        "node {wiped} should hold the controller and the topic's partition groups: {before:#}"
    );
    let acked_before = workload.acked_count();
    eprintln!(
        "wiping node {wiped} (partition leaders {leaders:?}) after {acked_before} acks; \
         its groups: {groups_before:?}"
    );

    let node = replicated.cluster.node(wiped);
    node.kill();
    let data_dir = node.data_dir();
    empty_dir(&data_dir);
    assert!(
        non_empty_partition_logs(&data_dir).is_empty(),
        "the wipe left partition data in {}",
        data_dir.display()
    );
    // What the wiped node must get back at the least: each group as far as its leader
    // (among the two others) had logged when the node came back.
    let floor = leaders_logs(
        &replicated.cluster,
        &originals,
        &groups_before,
        "every group has a leader among the two others after the kill",
    );
    eprintln!("the wiped node must apply at least {floor:?}");
    let acked_at_restart = workload.acked_count();
    let restarted_at = Instant::now();
    replicated.cluster.node(wiped).restart();

    let caught_up = replicated.cluster.wait_until(
        "the wiped node has every group it had, applied at least as far as its leader had logged",
        &[wiped],
        CATCH_UP,
        |statuses| {
            statuses[0].1.as_ref().is_some_and(|status| {
                let groups = groups_of(status);
                floor.iter().all(|(group, index)| {
                    groups.get(group).is_some_and(|seen| {
                        healthy(seen) && seen["last_applied_index"].as_u64() >= Some(*index)
                    })
                })
            })
        },
    );
    let catch_up_time = restarted_at.elapsed();
    let acked_while_catching_up = workload.acked_count() - acked_at_restart;
    let applied: BTreeMap<u64, (String, Option<u64>)> = groups_of(caught_up[0].1.as_ref().unwrap())
        .into_iter()
        .map(|(group, seen)| {
            let role = seen["role"].as_str().unwrap_or("?").to_string();
            (group, (role, seen["last_applied_index"].as_u64()))
        })
        .collect();
    eprintln!(
        "node {wiped} caught up with the pre-restart logs in {catch_up_time:?}: \
         group -> (role, last applied) {applied:?}"
    );
    // Some more traffic with the wiped node back as a voter.
    let target = workload.acked_count() + 1_000;
    workload.wait_acked(target, "acknowledgements after the wiped node caught up");

    let outcome = workload.finish();
    // The producer is stopped: every group of the wiped node reaches its leader's last entry.
    let settled = wait_for(
        "the wiped node has applied every group up to its leader's last log index",
        CATCH_UP,
        || {
            let statuses: BTreeMap<u64, Value> = all
                .iter()
                .filter_map(|id| Some((*id, replicated.cluster.status(*id)?)))
                .collect();
            let mine = groups_of(statuses.get(&wiped)?);
            let mut lags = BTreeMap::new();
            for group in &groups_before {
                let seen = mine.get(group)?;
                if !healthy(seen) {
                    return None;
                }
                let (leader, last) = leader_log(&statuses, *group)?;
                let applied = seen["last_applied_index"].as_u64()?;
                if applied != last {
                    return None;
                }
                lags.insert(*group, (leader, last));
            }
            Some(lags)
        },
    );
    eprintln!("every group of node {wiped} applied to its leader's log end: {settled:?}");
    let groups_after = group_ids(&replicated.cluster.status(wiped).unwrap());
    assert!(
        groups_before.is_subset(&groups_after),
        "the wiped node lost groups: before {groups_before:?}, after {groups_after:?}"
    );
    let logs = non_empty_partition_logs(&data_dir);
    assert!(
        !logs.is_empty(),
        "the wiped node holds no partition data again under {}",
        data_dir.join("raft/groups/*/log").display()
    );

    // Now the wiped node is needed for a majority: kill -9 the original leading the most.
    let leaders = replicated.wait_leaders(&all, "leaders before the second kill");
    let killed = *originals
        .iter()
        .max_by_key(|id| leaders.values().filter(|leader| *leader == *id).count())
        .unwrap();
    let remaining = without(&all, killed);
    eprintln!("killing node {killed} (partition leaders {leaders:?})");
    replicated.cluster.node(killed).kill();
    let final_leaders =
        replicated.wait_leaders(&remaining, "the wiped node and the other agree on leaders");
    let led_by_wiped: Vec<i32> = final_leaders
        .iter()
        .filter(|(_, leader)| **leader == wiped)
        .map(|(partition, _)| *partition)
        .collect();

    let live_bootstrap = remaining
        .iter()
        .map(|id| replicated.cluster.node(*id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let read = read_back(&live_bootstrap, replicated.topic, &outcome.acked);
    let report = check_history(&outcome, &read);
    println!(
        "wiped replica: node {wiped} wiped after {acked_before} acks, caught up in \
         {catch_up_time:?} ({acked_while_catching_up} acked meanwhile); node {killed} killed \
         after; nodes {remaining:?} lead {final_leaders:?} (the wiped node leads partitions \
         {led_by_wiped:?}); {} non-empty partition log files on the wiped node\n{}\n{report}",
        logs.len(),
        outcome.summary()
    );
    assert!(report.is_clean(), "{report}");
    assert!(
        outcome.failed.is_empty(),
        "{} records failed delivery although the cluster kept a majority; first: {}",
        outcome.failed.len(),
        outcome.failed[0]
    );
    assert!(
        outcome.acked.len() - acked_at_restart >= 1_000,
        "too few records acknowledged after the wipe: {}",
        outcome.summary()
    );
}

fn without(ids: &[u64], id: u64) -> Vec<u64> {
    ids.iter().copied().filter(|other| *other != id).collect()
}

/// A status's groups by id.
fn groups_of(status: &Value) -> BTreeMap<u64, &Value> {
    status["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter_map(|group| Some((group["group"].as_u64()?, group)))
                .collect()
        })
        .unwrap_or_default()
}

fn group_ids(status: &Value) -> BTreeSet<u64> {
    groups_of(status).into_keys().collect()
}

/// A voter of its group, following or leading, whose Raft has not stopped.
fn healthy(group: &Value) -> bool {
    group["stopped"].is_null()
        && matches!(group["role"].as_str(), Some("leader" | "follower"))
        && group["leader"].as_u64().is_some()
}

/// The leader of `group` as the statuses show it (the node reporting itself leader, in the
/// highest term if two do), and its last log index.
fn leader_log(statuses: &BTreeMap<u64, Value>, group: u64) -> Option<(u64, u64)> {
    statuses
        .iter()
        .filter_map(|(id, status)| {
            let seen = *groups_of(status).get(&group)?;
            (seen["role"] == "leader").then_some((
                seen["term"].as_u64()?,
                *id,
                seen["last_log_index"].as_u64()?,
            ))
        })
        .max()
        .map(|(_, id, last)| (id, last))
}

/// Waits until each of `groups` has a leader among `ids`; returns each one's last log index.
fn leaders_logs(
    cluster: &Cluster,
    ids: &[u64],
    groups: &BTreeSet<u64>,
    what: &str,
) -> BTreeMap<u64, u64> {
    wait_for(what, SETTLE, || {
        let statuses: BTreeMap<u64, Value> = ids
            .iter()
            .filter_map(|id| Some((*id, cluster.status(*id)?)))
            .collect();
        groups
            .iter()
            .map(|group| Some((*group, leader_log(&statuses, *group)?.1)))
            .collect()
    })
}

/// Removes everything inside `dir`, leaving it empty (created if missing).
fn empty_dir(dir: &Path) {
    if dir.exists() {
        for entry in std::fs::read_dir(dir).expect("cannot list the data directory") {
            let path = entry.expect("cannot list the data directory").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .unwrap_or_else(|error| panic!("cannot remove {}: {error}", path.display()));
        }
    }
    std::fs::create_dir_all(dir).expect("cannot recreate the data directory");
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "the wipe left files"
    );
}

/// Non-empty files under `<data>/raft/groups/*/log`, with their sizes.
fn non_empty_partition_logs(data_dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let Ok(groups) = std::fs::read_dir(data_dir.join("raft").join("groups")) else {
        return found;
    };
    for group in groups.flatten() {
        let Ok(files) = std::fs::read_dir(group.path().join("log")) else {
            continue;
        };
        for file in files.flatten() {
            let size = file.metadata().map(|meta| meta.len()).unwrap_or_default();
            if file.path().is_file() && size > 0 {
                found.push((file.path().display().to_string(), size));
            }
        }
    }
    found.sort();
    found
}

/// Every record of `topic`, read from `bootstrap` (the live nodes) once each partition's
/// high watermark covers its last acknowledged offset.
fn read_back(bootstrap: &str, topic: &str, acked: &[Record]) -> Vec<Record> {
    let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
    for record in acked {
        let end = needed.entry(record.partition).or_default();
        *end = (*end).max(record.offset + 1);
    }
    let consumer = kafka::consumer(bootstrap);
    let deadline = Instant::now() + SETTLE;
    for (partition, end) in needed {
        loop {
            let watermarks = consumer.fetch_watermarks(topic, partition, Duration::from_secs(3));
            if matches!(watermarks, Ok((_, high)) if high >= end) {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "partition {partition}: watermarks {watermarks:?} still below {end}, \
                     one past the last acknowledged offset"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    kafka::read_all(bootstrap, topic, &partitions, Duration::from_secs(30))
}
