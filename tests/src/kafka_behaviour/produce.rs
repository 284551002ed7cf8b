//! Producing: a topic takes records the moment CreateTopics answers, numbered from 0 with no
//! gap, and a group can commit offsets for it at once; an idempotent producer's records are
//! each stored once, in the order sent, per partition.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{create_topic, values};
use crate::group;
use crate::kafka::{self, Record};

const READ_LIMIT: Duration = Duration::from_secs(60);

/// Offsets acknowledged for `partition`, sorted.
fn acked_offsets(acked: &[Record], partition: i32) -> Vec<i64> {
    let mut offsets: Vec<i64> = acked
        .iter()
        .filter(|record| record.partition == partition)
        .map(|record| record.offset)
        .collect();
    offsets.sort_unstable();
    offsets
}

/// Right after CreateTopics answers, a producer writes to every partition without waiting
/// (no LEADER_NOT_AVAILABLE stall until messages time out), the records are numbered 0..n
/// with no gap and the high watermark is n (on a cluster Raft's own entries take no
/// offset), and a consumer group commits an offset for a topic created a moment before (no
/// UNKNOWN_TOPIC_OR_PARTITION from its coordinator).
pub fn new_topic_takes_produce_at_once_and_commits(bootstrap: &str) {
    const TOPIC: &str = "behaviour-new-topic";
    const PARTITIONS: i32 = 2;
    const RECORDS: i64 = 25;
    create_topic(bootstrap, TOPIC, PARTITIONS, &[]);
    let producer = kafka::producer(bootstrap, &[]);
    for partition in 0..PARTITIONS {
        for i in 0..RECORDS {
            let value = format!("p{partition}-{i}");
            kafka::send(&producer, TOPIC, None, &value, Some(partition), None);
        }
    }
    let acked = kafka::flush_all_acked(&producer);
    for partition in 0..PARTITIONS {
        assert_eq!(
            acked_offsets(&acked, partition),
            (0..RECORDS).collect::<Vec<_>>(),
            "partition {partition} of a new topic: acknowledged offsets are 0..{RECORDS}"
        );
        assert_eq!(
            kafka::watermarks(bootstrap, TOPIC, partition),
            (0, RECORDS),
            "partition {partition} of a new topic: watermarks (low, high)"
        );
    }
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let read = kafka::read_all(bootstrap, TOPIC, &partitions, READ_LIMIT);
    for partition in 0..PARTITIONS {
        let stored: Vec<(i64, String)> = read
            .iter()
            .filter(|record| record.partition == partition)
            .map(|record| (record.offset, record.value_str().to_string()))
            .collect();
        let expected: Vec<(i64, String)> = (0..RECORDS)
            .map(|i| (i, format!("p{partition}-{i}")))
            .collect();
        assert_eq!(
            stored, expected,
            "partition {partition}: record i stored at offset i"
        );
    }

    // A group commits for a topic created the moment before: its coordinator (on a cluster
    // generally another node than the one that created the topic) must know it already.
    const COMMITTED_TOPIC: &str = "behaviour-new-topic-commit";
    const GROUP: &str = "behaviour-new-topic-committer";
    create_topic(bootstrap, COMMITTED_TOPIC, 1, &[]);
    let consumer = kafka::consumer_with(bootstrap, &[("group.id", GROUP)]);
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(COMMITTED_TOPIC, 0, Offset::Offset(0))
        .expect("bad commit list");
    consumer
        .commit(&commit, CommitMode::Sync)
        .unwrap_or_else(|error| {
            panic!("OffsetCommit for {COMMITTED_TOPIC} right after its creation: {error}")
        });
    assert_eq!(
        group::committed(bootstrap, GROUP, COMMITTED_TOPIC, 0),
        Some(0),
        "the offset committed right after creation is the group's"
    );
}

/// An idempotent producer with several requests in flight: every record is stored exactly
/// once, in the order it was sent to its partition, at the offset it was acknowledged
/// with, and the partition's offsets are dense.
pub fn idempotent_producer_writes_each_record_once_in_order(bootstrap: &str) {
    const TOPIC: &str = "behaviour-idempotent";
    const PARTITIONS: i32 = 3;
    const RECORDS: i32 = 900;
    create_topic(bootstrap, TOPIC, PARTITIONS, &[]);
    // Small batches, so that several are in flight to each partition at once.
    let producer = kafka::producer(
        bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("batch.num.messages", "20"),
            ("linger.ms", "1"),
        ],
    );
    for i in 0..RECORDS {
        let partition = i % PARTITIONS;
        let value = format!("p{partition}-{i}");
        kafka::send(
            &producer,
            TOPIC,
            Some(&value),
            &value,
            Some(partition),
            None,
        );
    }
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(
        acked.len(),
        usize::try_from(RECORDS).unwrap_or(0),
        "every record acknowledged once"
    );
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let read = kafka::read_all(bootstrap, TOPIC, &partitions, READ_LIMIT);
    for partition in 0..PARTITIONS {
        let stored: Vec<Record> = read
            .iter()
            .filter(|record| record.partition == partition)
            .cloned()
            .collect();
        let sent: Vec<String> = (0..RECORDS)
            .filter(|i| i % PARTITIONS == partition)
            .map(|i| format!("p{partition}-{i}"))
            .collect();
        assert_eq!(
            values(&stored),
            sent,
            "partition {partition}: the records sent, each once, in the order sent"
        );
        let offsets: Vec<i64> = stored.iter().map(|record| record.offset).collect();
        let count = i64::try_from(sent.len()).unwrap_or(0);
        assert_eq!(
            offsets,
            (0..count).collect::<Vec<_>>(),
            "partition {partition}: dense offsets"
        );
    }
    for record in &acked {
        let stored = read
            .iter()
            .find(|stored| stored.partition == record.partition && stored.offset == record.offset)
            .unwrap_or_else(|| panic!("acknowledged {record:?} is not in the log"));
        assert_eq!(
            stored.value, record.value,
            "the record acknowledged at {}/{} is the one stored there",
            record.partition, record.offset
        );
    }
}
