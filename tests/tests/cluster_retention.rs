//! Retention on a three-node cluster: a partition's Raft log is its Kafka log, so old
//! segments go through a Raft purge on each replica rather than being deleted under the
//! group. Retention is set with AlterConfigs on the live topic (a controller command every
//! node applies); then the log start moves forward, and everything from it to the end is
//! still there.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use commerce_tests::cluster::Cluster;
use commerce_tests::replicated::{create_replicated_topic_with, moved_log_starts, wait_for_leader};
use commerce_tests::{TimeLimit, kafka};
use rdkafka::admin::{AlterConfig, ResourceSpecifier};
use rdkafka::consumer::Consumer;

const TOPIC: &str = "short-lived";
const RECORDS: usize = 3_000;

/// What [`purged_cluster`] writes, and the limits that purge it.
struct Shape {
    records: usize,
    /// Bytes of padding per record value (after a 6-digit sequence number and a dash).
    padding: usize,
    segment_bytes: usize,
    retention_bytes: usize,
}

/// Small records in small segments: dozens of 16 KiB segments against a 64 KiB limit.
const SMALL: Shape = Shape {
    records: RECORDS,
    padding: 180,
    segment_bytes: 16_384,
    retention_bytes: 65_536,
};

/// About 12 MiB in 4 KiB records against an 8 MiB limit: the snapshot a wiped replica
/// gets carries several MiB of batches, more than one of openraft's 3 MiB chunks.
const LARGE: Shape = Shape {
    records: 3_000,
    padding: 4_096,
    segment_bytes: 1 << 20,
    retention_bytes: 8 << 20,
};

#[test]
fn retention_purges_old_segments_on_a_replicated_partition() {
    let _limit = TimeLimit::new(
        "retention_purges_old_segments_on_a_replicated_partition",
        Duration::from_secs(120),
    );
    let (_cluster, bootstrap, (start, end)) = purged_cluster(&SMALL);
    let records = kafka::read_all(&bootstrap, TOPIC, &[0], Duration::from_secs(60));
    let values: Vec<usize> = records
        .iter()
        .map(|record| String::from_utf8_lossy(&record.value)[..6].parse().unwrap())
        .collect();
    assert!(
        values.len() < RECORDS,
        "old records were purged (log {start}..{end})"
    );
    assert!(
        values.len() * 200 >= 40_000,
        "retention keeps about retention.bytes: {} records left",
        values.len()
    );
    let first = values[0];
    let expected: Vec<usize> = (first..RECORDS).collect();
    assert_eq!(
        values, expected,
        "from the log start on, every record is there, in order"
    );
}

/// CreatePartitions on a cluster: the new partitions are placed and replicated like a new
/// topic's, every node lists them, and they take acks=all writes.
#[test]
fn partitions_added_to_a_replicated_topic_are_replicated() {
    let _limit = TimeLimit::new(
        "partitions_added_to_a_replicated_topic_are_replicated",
        Duration::from_secs(120),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap_of(1..=3);
    commerce_tests::replicated::create_replicated_topic(&bootstrap, "growing", 1);
    let admin = kafka::admin(&bootstrap);
    let results = kafka::block_on(admin.create_partitions(
        [&rdkafka::admin::NewPartitions::new("growing", 3)],
        &kafka::admin_options(),
    ))
    .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for id in 1..=3 {
        assert_eq!(
            kafka::partitions_of(&cluster.node(id).bootstrap(), "growing"),
            Some(vec![0, 1, 2]),
            "node {id} lists the added partitions"
        );
    }
    let producer = kafka::producer(&bootstrap, &[("enable.idempotence", "true")]);
    for value in 0..30 {
        kafka::send(
            &producer,
            "growing",
            None,
            &value.to_string(),
            Some(value % 3),
            None,
        );
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), 30);
    let records = kafka::read_all(&bootstrap, "growing", &[0, 1, 2], Duration::from_secs(30));
    assert_eq!(records.len(), 30);
    assert!(records.iter().any(|record| record.partition == 2));
}

/// A replica whose disk was wiped after retention purged the partition catches up from a
/// snapshot; it must end up holding every record the partition still retains, so that when
/// it leads again (it is the preferred leader, which takes leadership back once caught up)
/// consumers read the same records from the same log start through it.
#[test]
fn a_wiped_replica_gets_every_retained_record_back() {
    let _limit = TimeLimit::new(
        "a_wiped_replica_gets_every_retained_record_back",
        Duration::from_secs(180),
    );
    wiped_replica_gets_every_retained_record_back(&SMALL);
}

/// The same with a snapshot of several MiB, sent in more than one chunk.
#[test]
fn a_wiped_replica_gets_megabytes_of_retained_records_back() {
    let _limit = TimeLimit::new(
        "a_wiped_replica_gets_megabytes_of_retained_records_back",
        Duration::from_secs(240),
    );
    let retained = wiped_replica_gets_every_retained_record_back(&LARGE);
    assert!(
        retained > 3 << 20,
        "the snapshot carried {retained} bytes of records, not more than one chunk"
    );
}

/// Returns the bytes of record values the partition retains.
fn wiped_replica_gets_every_retained_record_back(shape: &Shape) -> usize {
    let (mut cluster, bootstrap, (start, end)) = purged_cluster(shape);
    let before = kafka::read_all(&bootstrap, TOPIC, &[0], Duration::from_secs(60));
    assert_eq!(before.first().map(|record| record.offset), Some(start));

    // Wipe the preferred leader of partition 0 and let it catch up: the log no longer
    // starts at 0, so it is sent a snapshot.
    let consumer = kafka::consumer(&bootstrap);
    let metadata = consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    let victim = u64::try_from(metadata.topics()[0].partitions()[0].replicas()[0]).unwrap();
    cluster.node(victim).kill();
    let dir = cluster.node(victim).data_dir();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    cluster.node(victim).restart();

    // The wiped replica's partition log may not start after the log start the leader had.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let first = moved_log_starts(&cluster.node(victim).data_dir());
        if !first.is_empty() && first.iter().all(|offset| *offset <= start) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {victim}, wiped, holds its partition logs from {first:?}, \
             not from the log start {start} (log {start}..{end})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Once it leads partition 0 again, everything is read through it as before.
    let victim_bootstrap = cluster.node(victim).bootstrap();
    wait_for_leader(&victim_bootstrap, TOPIC, 0, |id| id == victim);
    // Leader changes took no offset: the end is where the records end.
    let (low, high) = kafka::watermarks(&victim_bootstrap, TOPIC, 0);
    assert_eq!(
        low, start,
        "the wiped replica, leading, has the partition's log start"
    );
    assert_eq!(high, end, "log end {high}, was {end}");
    let after = kafka::read_all(&victim_bootstrap, TOPIC, &[0], Duration::from_secs(60));
    let summary = |records: &[kafka::Record]| -> Vec<(i64, Vec<u8>)> {
        records
            .iter()
            .map(|record| (record.offset, record.value.clone()))
            .collect()
    };
    assert_eq!(
        summary(&after),
        summary(&before),
        "every retained record, at its offset, read through the wiped replica"
    );
    before.iter().map(|record| record.value.len()).sum()
}

/// Three nodes with [`TOPIC`] (one partition on all three) holding `shape`'s records, then
/// capped by AlterConfigs to its retention bytes: returns the cluster, its bootstrap list
/// and the partition's watermarks once retention has moved its log start.
fn purged_cluster(shape: &Shape) -> (Cluster, String, (i64, i64)) {
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap_of(1..=3);
    let segment_bytes = shape.segment_bytes.to_string();
    let retention_bytes = shape.retention_bytes.to_string();
    create_replicated_topic_with(&bootstrap, TOPIC, 1, &[("segment.bytes", &segment_bytes)]);
    let admin = kafka::admin(&bootstrap);

    let producer = kafka::producer(&bootstrap, &[("linger.ms", "1"), ("batch.size", "4096")]);
    let padding = "x".repeat(shape.padding);
    for value in 0..shape.records {
        kafka::send(
            &producer,
            TOPIC,
            None,
            &format!("{value:06}-{padding}"),
            Some(0),
            None,
        );
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), shape.records);
    assert_eq!(
        kafka::watermarks(&bootstrap, TOPIC, 0),
        (0, shape.records as i64),
        "nothing is purged while retention keeps everything, and offsets count records"
    );

    // AlterConfigs replaces the whole set: keep the segment size, cap the size.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
        .set("segment.bytes", &segment_bytes)
        .set("retention.bytes", &retention_bytes);
    kafka::block_on(admin.alter_configs([&alter], &kafka::admin_options())).unwrap();
    for id in 1..=3 {
        assert_eq!(
            kafka::topic_config(&cluster.node(id).bootstrap(), TOPIC, "retention.bytes").as_deref(),
            Some(retention_bytes.as_str()),
            "node {id} describes the new config"
        );
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let (start, end) = loop {
        let (start, end) = kafka::watermarks(&bootstrap, TOPIC, 0);
        if start > 0 {
            break (start, end);
        }
        assert!(
            Instant::now() < deadline,
            "retention did not move the log start (watermarks {start}..{end})"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    (cluster, bootstrap, (start, end))
}
