//! Log compaction (`cleanup.policy=compact`) seen by a real consumer: the cleaner keeps the
//! latest record of every key at its original offset, drops superseded values, drops
//! tombstones older than `delete.retention.ms` but keeps recent ones, leaves the active
//! segment alone, and what it did survives a crash.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_tests::kafka::{self, Record, TestProducer};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::producer::{BaseRecord, Producer};

const TOPIC: &str = "compacted";

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Sends one record (a tombstone when `value` is `None`) as its own batch.
fn send_alone(producer: &TestProducer, key: &str, value: Option<&str>, timestamp: i64) {
    let mut record = BaseRecord::<str, str>::to(TOPIC)
        .key(key)
        .partition(0)
        .timestamp(timestamp);
    if let Some(value) = value {
        record = record.payload(value);
    }
    producer
        .send(record)
        .map_err(|(error, _)| error)
        .expect("cannot enqueue");
    kafka::flush_all_acked(producer);
}

#[test]
fn compaction_keeps_the_latest_value_per_key_at_its_offset_and_expires_old_tombstones() {
    let _limit = TimeLimit::new(
        "compaction_keeps_the_latest_value_per_key_at_its_offset_and_expires_old_tombstones",
        Duration::from_secs(180),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(
        &bootstrap,
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            // A few batches per segment, so segments seal as we produce.
            ("segment.bytes", "400"),
            ("delete.retention.ms", "600000"),
        ],
    );
    let now = now_ms();
    // Round 0 goes out as one lz4-compressed batch of five records, of which only k4's
    // survives: the cleaner must decompress, drop four and re-encode one, keeping its offset.
    let batching = kafka::producer(
        &bootstrap,
        &[("compression.type", "lz4"), ("linger.ms", "200")],
    );
    for key in ["k0", "k1", "k2", "k3", "k4"] {
        kafka::send(
            &batching,
            TOPIC,
            Some(key),
            &format!("{key}-0"),
            Some(0),
            Some(now),
        );
    }
    let round_zero = kafka::flush_all_acked(&batching);
    let producer = kafka::producer(&bootstrap, &[]);
    for round in 1..3 {
        for key in ["k0", "k1", "k2", "k3"] {
            send_alone(&producer, key, Some(&format!("{key}-{round}")), now);
        }
    }
    // k1's tombstone is an hour old: past delete.retention.ms, the cleaner drops it too.
    // k2's is fresh: consumers must still get to see it.
    send_alone(&producer, "k1", None, now - 3_600_000);
    send_alone(&producer, "k2", None, now);
    // Filler, so that everything above lies in sealed segments.
    for i in 0..12 {
        send_alone(&producer, "filler", Some(&format!("filler-{i}")), now);
    }
    let mut acked = round_zero.clone();
    acked.extend(producer.context().acked());
    let acked_at: BTreeMap<i64, Record> = acked.iter().map(|r| (r.offset, r.clone())).collect();
    let latest_offset = |key: &str| {
        acked
            .iter()
            .filter(|r| r.key_str() == key)
            .map(|r| r.offset)
            .max()
            .unwrap()
    };

    let compacted = |records: &[Record]| {
        let of = |key: &str| records.iter().filter(|r| r.key_str() == key).count();
        of("k0") == 1 && of("k3") == 1 && of("k1") == 0 && of("k2") == 1 && of("k4") == 1
    };
    let records = wait_for(
        "the cleaner to compact the sealed segments",
        Duration::from_secs(60),
        || {
            let records = kafka::read_all(&bootstrap, TOPIC, &[0], Duration::from_secs(30));
            compacted(&records).then_some(records)
        },
    );

    let check = |records: &[Record]| {
        for record in records {
            // Every surviving record is exactly what was acknowledged at that offset.
            let original = &acked_at[&record.offset];
            assert_eq!(record.key, original.key, "offset {}", record.offset);
            assert_eq!(record.value, original.value, "offset {}", record.offset);
        }
        for key in ["k0", "k3"] {
            let kept: Vec<&Record> = records.iter().filter(|r| r.key_str() == key).collect();
            assert_eq!(kept.len(), 1, "{key}");
            assert_eq!(kept[0].value_str(), format!("{key}-2"));
            assert_eq!(kept[0].offset, latest_offset(key));
        }
        let k4: Vec<&Record> = records.iter().filter(|r| r.key_str() == "k4").collect();
        assert_eq!(k4.len(), 1);
        assert_eq!(
            k4[0].value_str(),
            "k4-0",
            "the survivor of the re-encoded batch"
        );
        assert_eq!(k4[0].offset, latest_offset("k4"));
        assert!(
            records.iter().all(|r| r.key_str() != "k1"),
            "k1 and its old tombstone are gone"
        );
        let k2: Vec<&Record> = records.iter().filter(|r| r.key_str() == "k2").collect();
        assert_eq!(k2.len(), 1);
        assert_eq!(
            k2[0].offset,
            latest_offset("k2"),
            "k2's fresh tombstone is kept"
        );
        assert!(k2[0].value.is_empty());
        // The newest filler is kept; the offsets still run to the same log end.
        assert_eq!(records.last().unwrap().offset, latest_offset("filler"));
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    };
    check(&records);
    assert!(records.len() < acked.len(), "something was compacted");
    assert_eq!(
        kafka::watermarks(&bootstrap, TOPIC, 0),
        (0, i64::try_from(acked.len()).unwrap()),
        "compaction moves neither the log start nor the log end"
    );

    // A crash does not bring anything back, and new records still append after the gaps.
    node.kill();
    node.restart();
    let after = kafka::read_all(&bootstrap, TOPIC, &[0], Duration::from_secs(30));
    check(&after);
    send_alone(&producer, "k0", Some("k0-3"), now_ms());
    let last = producer.context().acked().last().unwrap().clone();
    assert_eq!(last.offset, i64::try_from(acked.len()).unwrap());
}
