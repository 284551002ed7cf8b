//! `ClusterEventLog` on a real three-node cluster of the release binary (`commerce start`
//! processes started by the `commerce-tests` crate; build it first with
//! `cargo build --release -p commerce`, and run this test with `--release` so it finds it).
//! A service's outbox events survive the kill -9 of their partition's leader exactly once and
//! in order, a re-send after the failover included; a group's offsets survive the kill of
//! its coordinator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use commerce_services::platform::{ConsumedRecord, EventLog, PublishedEvent};
use commerce_tests::TimeLimit;
use commerce_tests::cluster::{Cluster, agreed_leader, registered};
use std::time::Duration;

const TOPIC: &str = "order-events";
const GROUP: &str = "order-projection";
/// A service's fixed producer id (no InitProducerId issued it), as `services/src/*/mod.rs`.
const PRODUCER_ID: i64 = 0x4000_0000_0000_0002;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// Carried as given: the relay makes it, the event log only puts it in the header.
const SIGNATURE: &str = "v1:0123abcd:00";

fn value(sequence: i32) -> String {
    format!("{{\"event\":{sequence}}}")
}

fn event<'a>(key: &'a str, value: &'a str, partition: i32, sequence: i32) -> PublishedEvent<'a> {
    PublishedEvent {
        topic: TOPIC,
        key,
        partition,
        value: value.as_bytes(),
        timestamp_ms: 1_700_000_000_000 + i64::from(sequence),
        producer_id: PRODUCER_ID,
        sequence,
        outbox_seq: u64::try_from(sequence).unwrap() + 1,
        traceparent: Some(TRACEPARENT),
        signature: SIGNATURE,
    }
}

/// The node whose Kafka listener is `addr`.
fn node_at(cluster: &Cluster, addr: &str) -> u64 {
    let port = addr.rsplit(':').next().unwrap();
    cluster
        .ids()
        .into_iter()
        .find(|id| cluster.bootstrap_of([*id]).ends_with(&format!(":{port}")))
        .unwrap_or_else(|| panic!("no node listens on {addr}"))
}

/// Every record of the partition, read as a consumer does, to the high watermark.
async fn read_all(log: &ClusterEventLog, partition: i32) -> Vec<ConsumedRecord> {
    let end = log
        .client()
        .list_offset(TOPIC, partition, OffsetSpec::Latest)
        .await
        .unwrap();
    let (mut offset, mut records) = (0, Vec::new());
    while offset < end {
        let fetched = log
            .fetch(TOPIC, partition, offset, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(fetched.next_offset >= offset);
        offset = fetched.next_offset;
        records.extend(fetched.records);
    }
    records
}

fn header<'a>(record: &'a ConsumedRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok())
}

#[test]
fn outbox_events_survive_leader_kill_once_and_in_order_and_offsets_survive_coordinator_kill() {
    let _limit = TimeLimit::new("cluster_event_log", Duration::from_secs(120));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(3);
    let all = cluster.ids();
    // Topics are placed over the registered nodes: wait until all three are.
    cluster.wait_until(
        "a controller leader and every node registered",
        &all,
        Duration::from_secs(30),
        |statuses| {
            agreed_leader(statuses).is_some()
                && statuses
                    .iter()
                    .all(|(_, status)| status.as_ref().is_some_and(|s| registered(s) == [1, 2, 3]))
        },
    );
    let bootstrap = cluster.bootstrap_of(all.clone());
    let log = ClusterEventLog::connect(&bootstrap).unwrap();

    // Five events of one order, on its partition of a topic the log creates (replication
    // factor 3: the cluster's default).
    let key = "order-1";
    let partition = runtime.block_on(log.partition_for(TOPIC, key)).unwrap();
    let mut values = Vec::new();
    for sequence in 0..5 {
        let value = value(sequence);
        runtime
            .block_on(log.publish(event(key, &value, partition, sequence)))
            .unwrap();
        values.push(value);
    }
    let leader = runtime
        .block_on(log.client().leader_address(TOPIC, partition))
        .unwrap();
    let victim = node_at(&cluster, &leader);
    eprintln!("killing node {victim}, leader of {TOPIC}-{partition}");
    cluster.node(victim).kill();

    // The relay did not see its last publish acknowledged: it sends the same event (same
    // sequence) again, now to the new leader, then goes on.
    runtime
        .block_on(log.publish(event(key, &values[4], partition, 4)))
        .unwrap();
    for sequence in 5..8 {
        let value = value(sequence);
        runtime
            .block_on(log.publish(event(key, &value, partition, sequence)))
            .unwrap();
        values.push(value);
    }
    let new_leader = runtime
        .block_on(log.client().leader_address(TOPIC, partition))
        .unwrap();
    assert_ne!(node_at(&cluster, &new_leader), victim);

    let records = runtime.block_on(read_all(&log, partition));
    let read: Vec<String> = records
        .iter()
        .map(|record| String::from_utf8(record.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(read, values, "every event exactly once, in order");
    let seqs: Vec<Option<&str>> = records.iter().map(|r| header(r, "outbox-seq")).collect();
    let expected: Vec<String> = (1..=8).map(|seq: u64| seq.to_string()).collect();
    assert_eq!(
        seqs,
        expected
            .iter()
            .map(|s| Some(s.as_str()))
            .collect::<Vec<_>>()
    );
    assert!(
        records
            .iter()
            .all(|r| header(r, "traceparent") == Some(TRACEPARENT)
                && header(r, "commerce-signature") == Some(SIGNATURE)
                && r.key.as_deref() == Some(key.as_bytes()))
    );
    assert_eq!(
        runtime
            .block_on(log.last_published(TOPIC, PRODUCER_ID))
            .unwrap(),
        Some(8)
    );
    assert_eq!(
        runtime
            .block_on(log.last_published(TOPIC, PRODUCER_ID + 1))
            .unwrap(),
        None
    );

    // A dead letter: a plain record, no producer id.
    runtime
        .block_on(log.publish_record(PlainRecord {
            topic: "order-events.dlq",
            key: Some(key.as_bytes()),
            value: Some(b"poison"),
            headers: vec![("error".to_string(), b"bad".to_vec())],
            timestamp_ms: 1_700_000_000_000,
        }))
        .unwrap();

    // The group's offset, committed while one node is down, survives its coordinator.
    let next = records.last().unwrap().offset + 1;
    runtime
        .block_on(log.commit_offset(GROUP, TOPIC, partition, next))
        .unwrap();
    cluster.node(victim).restart();
    cluster.wait_until(
        "the restarted node answers",
        &all,
        Duration::from_secs(30),
        |s| s.iter().all(|(_, status)| status.is_some()),
    );
    let coordinator = runtime
        .block_on(log.client().coordinator_address(GROUP))
        .unwrap();
    let coordinator = node_at(&cluster, &coordinator);
    eprintln!("killing node {coordinator}, coordinator of {GROUP}");
    cluster.node(coordinator).kill();
    // The same log (its coordinator now gone) and a new one both read it back.
    assert_eq!(
        runtime
            .block_on(log.committed_offset(GROUP, TOPIC, partition))
            .unwrap(),
        Some(next)
    );
    let fresh = ClusterEventLog::connect(&bootstrap).unwrap();
    assert_eq!(
        runtime
            .block_on(fresh.committed_offset(GROUP, TOPIC, partition))
            .unwrap(),
        Some(next)
    );
    // And commits go on at the new coordinator.
    runtime
        .block_on(fresh.commit_offset(GROUP, TOPIC, partition, next + 1))
        .unwrap();
    assert_eq!(
        runtime
            .block_on(log.committed_offset(GROUP, TOPIC, partition))
            .unwrap(),
        Some(next + 1)
    );
}
