//! Offsets that tools count with: offsets-for-times finds record n at offset n, and a
//! group's lag (high watermark minus committed offset, as every lag tool computes it) is
//! the number of records it has not consumed, with nothing else in between.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::create_topic;
use crate::group;
use crate::kafka;

/// Record `n`'s timestamp: `n` seconds after a minute before now (recent, so time
/// retention keeps it).
fn timestamp(start: i64, n: i64) -> i64 {
    start + n * 1_000
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0);
    i64::try_from(now).unwrap_or(0)
}

/// Ten records, each its own batch with its own timestamp (a second apart): offsets-for-times
/// names record n's offset for a time just before record n, and the end past the last;
/// a group that committed offset 4 lags by 6, as its consumer sees it too.
pub fn offsets_for_times_and_lag_count_records_only(bootstrap: &str) {
    const TOPIC: &str = "behaviour-offsets";
    const GROUP: &str = "behaviour-offsets-group";
    const RECORDS: i64 = 10;
    const COMMITTED: i64 = 4;
    create_topic(bootstrap, TOPIC, 1, &[]);
    let start = now_ms() - 60_000;
    let producer = kafka::producer(bootstrap, &[]);
    for n in 0..RECORDS {
        kafka::send(
            &producer,
            TOPIC,
            None,
            &format!("record-{n}"),
            Some(0),
            Some(timestamp(start, n)),
        );
        // One batch per record: each one a separate entry of the partition's log.
        kafka::flush_all_acked(&producer);
    }
    assert_eq!(
        kafka::watermarks(bootstrap, TOPIC, 0),
        (0, RECORDS),
        "watermarks of {RECORDS} records"
    );
    for n in [0, 1, 5, RECORDS - 1] {
        assert_eq!(
            kafka::offset_for_time(bootstrap, TOPIC, 0, timestamp(start, n) - 500),
            Offset::Offset(n),
            "offsets-for-times just before record {n}'s timestamp"
        );
        assert_eq!(
            kafka::offset_for_time(bootstrap, TOPIC, 0, timestamp(start, n)),
            Offset::Offset(n),
            "offsets-for-times at record {n}'s timestamp"
        );
    }
    assert_eq!(
        kafka::offset_for_time(bootstrap, TOPIC, 0, timestamp(start, RECORDS) + 500),
        Offset::End,
        "offsets-for-times past the last record"
    );

    let consumer = kafka::consumer_with(bootstrap, &[("group.id", GROUP)]);
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(TOPIC, 0, Offset::Offset(COMMITTED))
        .expect("bad commit list");
    consumer
        .commit(&commit, CommitMode::Sync)
        .unwrap_or_else(|error| panic!("OffsetCommit {TOPIC}/0@{COMMITTED}: {error}"));
    let committed = group::committed(bootstrap, GROUP, TOPIC, 0)
        .unwrap_or_else(|| panic!("{GROUP} has no committed offset after its commit"));
    let (_, high) = kafka::watermarks(bootstrap, TOPIC, 0);
    assert_eq!(
        high - committed,
        RECORDS - COMMITTED,
        "lag: the records after the committed offset"
    );

    // The consumer's own view of its lag: its position after the committed offset, and
    // the records it then reads are exactly the lag.
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Offset(committed))
        .expect("bad assignment");
    consumer.assign(&assignment).expect("cannot assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut read = Vec::new();
    while i64::try_from(read.len()).unwrap_or(0) < high - committed {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer read {} of its lag of {} within a minute",
            read.len(),
            high - committed
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            read.push(kafka::Record::of(&message));
        }
    }
    let expected: Vec<(i64, String)> = (COMMITTED..RECORDS)
        .map(|n| (n, format!("record-{n}")))
        .collect();
    let got: Vec<(i64, String)> = read
        .iter()
        .map(|record| (record.offset, record.value_str().to_string()))
        .collect();
    assert_eq!(
        got, expected,
        "the lag's records, from the committed offset"
    );
}
