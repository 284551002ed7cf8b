//! The produce path keeps what clients send: every compression codec is stored as sent and
//! read back intact, and batches the broker must refuse (too large, corrupt, control) are refused
//! with Kafka's error code and leave the partition unchanged.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use commerce_tests::raw::{batch, round_trip};
use commerce_tests::{Node, TimeLimit, kafka};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::producer::{BaseRecord, Producer};

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn every_compression_codec_round_trips_and_is_stored_compressed() {
    let _limit = TimeLimit::new(
        "every_compression_codec_round_trips",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let mut stored_bytes = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
        let producer = kafka::producer(&node.bootstrap(), &[("compression.type", codec)]);
        // Repetitive values so that a compressed batch is much smaller than a plain one.
        for i in 0..2_000 {
            let value = format!("{codec}-{i:05}-{}", "product catalog event ".repeat(20));
            kafka::send(
                &producer,
                &topic,
                Some(&format!("k{i}")),
                &value,
                None,
                None,
            );
        }
        let acked = kafka::flush_all_acked(&producer);
        assert_eq!(acked.len(), 2_000, "{codec}: every record acknowledged");
        let stored = kafka::read_all(&node.bootstrap(), &topic, &[0], Duration::from_secs(60));
        assert_eq!(stored.len(), 2_000, "{codec}: every record read back");
        for record in &acked {
            let found = &stored[record.offset as usize];
            assert_eq!(
                found.key, record.key,
                "{codec}: key at offset {}",
                record.offset
            );
            assert_eq!(
                found.value, record.value,
                "{codec}: value at offset {}",
                record.offset
            );
        }
        stored_bytes.push((
            codec,
            dir_size(&node.data_dir().join("topics").join(format!("{topic}-0"))),
        ));
    }
    let plain = stored_bytes[0].1;
    for (codec, size) in &stored_bytes[1..] {
        assert!(
            size * 3 < plain,
            "{codec} batches should be stored compressed: {size} bytes on disk vs {plain} uncompressed"
        );
    }
}

#[test]
fn a_batch_over_max_message_bytes_is_refused_and_not_stored() {
    let _limit = TimeLimit::new(
        "a_batch_over_max_message_bytes_is_refused",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let topic = "small-messages";
    kafka::create_topic(
        &node.bootstrap(),
        topic,
        1,
        &[("max.message.bytes", "2048")],
    );
    let producer = kafka::producer(&node.bootstrap(), &[("message.timeout.ms", "10000")]);

    let big = "x".repeat(10_000);
    let delivery = producer.send(BaseRecord::<str, str>::to(topic).payload(&big));
    assert!(delivery.is_ok(), "the client accepts the record locally");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let failed = producer.context().failed();
    assert_eq!(failed.len(), 1, "the oversized record must fail delivery");
    assert!(
        failed[0].contains("too large") || failed[0].contains("MessageSizeTooLarge"),
        "expected MESSAGE_TOO_LARGE, got {}",
        failed[0]
    );
    assert_eq!(
        kafka::watermarks(&node.bootstrap(), topic, 0),
        (0, 0),
        "nothing stored"
    );

    // A fresh producer: flush_all_acked asserts that none of its records failed.
    let fresh = kafka::producer(&node.bootstrap(), &[]);
    kafka::send(&fresh, topic, None, "small", None, None);
    let acked = kafka::flush_all_acked(&fresh);
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].offset, 0, "the refused batch took no offset");
}

fn produce(addr: std::net::SocketAddr, topic: &str, records: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let version = 9;
    let mut body = round_trip(addr, ApiKey::Produce, version, &request);
    let response = ProduceResponse::decode(&mut body, version).unwrap();
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn a_corrupt_batch_is_refused_with_corrupt_message_and_not_stored() {
    let _limit = TimeLimit::new("a_corrupt_batch_is_refused", Duration::from_secs(120));
    let node = Node::start();
    let topic = "crc-checked";
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);

    let good = batch(&["one", "two"]).freeze();
    assert_eq!(
        produce(node.kafka_addr(), topic, good.clone()),
        0,
        "a valid batch is accepted"
    );

    let mut corrupt = BytesMut::from(good.as_ref());
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // inside the CRC-covered records
    const CORRUPT_MESSAGE: i16 = 2;
    assert_eq!(
        produce(node.kafka_addr(), topic, corrupt.freeze()),
        CORRUPT_MESSAGE
    );

    // Good batch followed by a truncated one in the same request: all or nothing.
    let mut half = BytesMut::from(good.as_ref());
    let third = batch(&["three"]);
    half.extend_from_slice(&third[..third.len() - 3]);
    assert_eq!(
        produce(node.kafka_addr(), topic, half.freeze()),
        CORRUPT_MESSAGE
    );

    assert_eq!(
        kafka::watermarks(&node.bootstrap(), topic, 0),
        (0, 2),
        "only the valid batch is stored"
    );
    let stored = kafka::read_all(&node.bootstrap(), topic, &[0], Duration::from_secs(30));
    let values: Vec<&str> = stored.iter().map(|record| record.value_str()).collect();
    assert_eq!(values, ["one", "two"]);
}

/// Control batches (transaction markers and the cluster's own entries) are the broker's to
/// write: a client's would end other producers' transactions, or in a cluster move every
/// replica's log start. Kafka refuses them with INVALID_RECORD; so must we, storing nothing.
#[test]
fn a_control_batch_from_a_client_is_refused_with_invalid_record() {
    let _limit = TimeLimit::new(
        "a_control_batch_from_a_client_is_refused",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let topic = "no-forged-markers";
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);
    assert_eq!(
        produce(node.kafka_addr(), topic, batch(&["one"]).freeze()),
        0
    );

    // A COMMIT marker (control key version 0, type 1; value version 0, coordinator epoch 0).
    let marker = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 4_242,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(&[0, 0, 0, 1])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        headers: Default::default(),
    };
    let mut forged = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut forged, [&marker], &options).unwrap();
    const INVALID_RECORD: i16 = 87;
    assert_eq!(
        produce(node.kafka_addr(), topic, forged.freeze()),
        INVALID_RECORD
    );
    assert_eq!(
        kafka::watermarks(&node.bootstrap(), topic, 0),
        (0, 1),
        "the control batch took no offset"
    );
}
