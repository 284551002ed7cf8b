//! DeleteRecords on a three-node cluster: the leader proposes the new log start as an entry
//! of the partition's Raft group, so every replica moves its log start at the same place
//! in the log, and later purges the segments below it through Raft. A failover, a restart
//! and a replica that lost its disk (and catches up from a snapshot) all keep the log start
//! a client asked for, to the offset, inside a batch.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use commerce_tests::cluster::Cluster;
use commerce_tests::replicated::{create_replicated_topic_with, moved_log_starts, wait_for_leader};
use commerce_tests::{TimeLimit, kafka};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "trimmed";
const RECORDS: usize = 2_000;
/// Not a batch boundary: the producer batches about 18 records of 220 bytes per 4 KiB.
const NEW_START: i64 = 1_234;

#[test]
fn delete_records_moves_every_replicas_log_start_and_survives_failover_and_a_wiped_disk() {
    let _limit = TimeLimit::new(
        "delete_records_moves_every_replicas_log_start_and_survives_failover_and_a_wiped_disk",
        Duration::from_secs(240),
    );
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.bootstrap_of(1..=3);
    create_replicated_topic_with(&bootstrap, TOPIC, 1, &[("segment.bytes", "16384")]);
    let producer = kafka::producer(&bootstrap, &[("linger.ms", "1"), ("batch.size", "4096")]);
    let padding = "x".repeat(212);
    for value in 0..RECORDS {
        kafka::send(
            &producer,
            TOPIC,
            None,
            &format!("{value:06}-{padding}"),
            Some(0),
            None,
        );
    }
    assert_eq!(kafka::flush_all_acked(&producer).len(), RECORDS);
    let end = kafka::watermarks(&bootstrap, TOPIC, 0).1;
    assert_eq!(end, RECORDS as i64, "offsets count records only");
    let first_value = kafka::read_all(&bootstrap, TOPIC, &[0], Duration::from_secs(60))
        .iter()
        .find(|record| record.offset == NEW_START)
        .map(value_number)
        .expect("a record at the new start");
    assert_eq!(first_value, NEW_START as usize, "record n at offset n");
    let admin = kafka::admin(&bootstrap);

    // Past the high watermark: refused, nothing moves.
    let result =
        kafka::block_on(admin.delete_records(&offsets(end + 100), &kafka::admin_options()))
            .unwrap();
    let element = result.find_partition(TOPIC, 0).unwrap();
    assert!(element.error().is_err(), "{element:?}");
    assert_eq!(kafka::watermarks(&bootstrap, TOPIC, 0), (0, end));

    let result =
        kafka::block_on(admin.delete_records(&offsets(NEW_START), &kafka::admin_options()))
            .unwrap();
    let element = result.find_partition(TOPIC, 0).unwrap();
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(
        element.offset(),
        Offset::Offset(NEW_START),
        "the new low watermark"
    );
    // The entry that moves the log start takes no offset: DeleteRecords writes no record.
    let (low, high) = kafka::watermarks(&bootstrap, TOPIC, 0);
    assert_eq!(low, NEW_START);
    assert_eq!(high, end, "the high watermark still counts records only");
    expect_records_from(&bootstrap, first_value, "on the leader");

    // Every replica purges the segments wholly below the new start (a Raft purge each).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let firsts: Vec<Option<i64>> = (1..=3)
            .map(|id| {
                moved_log_starts(&cluster.node(id).data_dir())
                    .first()
                    .copied()
            })
            .collect();
        if firsts
            .iter()
            .all(|first| first.is_some_and(|first| first > 0 && first <= NEW_START))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas' first segments are at {firsts:?}, not just below {NEW_START}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The leader killed: the next one has the same log start.
    let leader = wait_for_leader(&bootstrap, TOPIC, 0, |_| true);
    cluster.node(leader).kill();
    let survivors = cluster.bootstrap_of((1..=3).filter(|id| *id != leader));
    wait_for_leader(&survivors, TOPIC, 0, |id| id != leader);
    assert_eq!(kafka::watermarks(&survivors, TOPIC, 0).0, NEW_START);
    expect_records_from(&survivors, first_value, "after a failover");
    cluster.node(leader).restart();

    // A replica whose disk is wiped gets the log start with its snapshot: once it leads
    // again (the preferred leader takes leadership back when caught up), it has it.
    let preferred = preferred_leader(&bootstrap);
    cluster.node(preferred).kill();
    let dir = cluster.node(preferred).data_dir();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    cluster.node(preferred).restart();
    let through = cluster.node(preferred).bootstrap();
    wait_for_leader(&through, TOPIC, 0, |id| id == preferred);
    assert_eq!(
        kafka::watermarks(&through, TOPIC, 0).0,
        NEW_START,
        "the wiped replica, leading, starts where DeleteRecords put the start"
    );
    expect_records_from(&through, first_value, "through the wiped replica");
}

fn offsets(offset: i64) -> TopicPartitionList {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .unwrap();
    offsets
}

/// Reads the partition from the beginning: it must start at [`NEW_START`] with the record
/// numbered `first_value` and hold every record after it, in order.
fn expect_records_from(bootstrap: &str, first_value: usize, when: &str) {
    let records = kafka::read_all(bootstrap, TOPIC, &[0], Duration::from_secs(60));
    assert_eq!(
        records.first().map(|record| record.offset),
        Some(NEW_START),
        "{when}: the first record read"
    );
    let values: Vec<usize> = records.iter().map(value_number).collect();
    let expected: Vec<usize> = (first_value..RECORDS).collect();
    assert_eq!(
        values, expected,
        "{when}: every record from the log start on"
    );
}

/// The sequence number a record's value starts with.
fn value_number(record: &kafka::Record) -> usize {
    String::from_utf8_lossy(&record.value)[..6].parse().unwrap()
}

fn preferred_leader(bootstrap: &str) -> u64 {
    let metadata = kafka::consumer(bootstrap)
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    u64::try_from(metadata.topics()[0].partitions()[0].replicas()[0]).unwrap()
}
