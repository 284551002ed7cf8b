//! Fetch semantics that client libraries hide: long polling until min_bytes arrive, whole
//! batches within max_bytes but always at least one (KIP-74), and Kafka's error codes for an
//! out-of-range offset, an unknown topic and a fetch session the broker never created.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use commerce_tests::raw::{self, batch, round_trip};
use commerce_tests::{Node, TimeLimit, kafka};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

const FETCH_VERSION: i16 = 12;

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn produce(addr: SocketAddr, topic: &str, values: &[&str]) -> usize {
    let records = batch(values).freeze();
    let size = records.len();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let mut body = round_trip(addr, ApiKey::Produce, 9, &request);
    let response = ProduceResponse::decode(&mut body, 9).unwrap();
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    size
}

fn fetch_request(
    topic: &str,
    offset: i64,
    partition_max_bytes: i32,
    max_wait_ms: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max_bytes)
                        .with_current_leader_epoch(-1)
                        .with_log_start_offset(-1),
                ]),
        ])
}

fn fetch(addr: SocketAddr, request: &FetchRequest) -> FetchResponse {
    let mut body = round_trip(addr, ApiKey::Fetch, FETCH_VERSION, request);
    FetchResponse::decode(&mut body, FETCH_VERSION).unwrap()
}

fn partition(response: &FetchResponse) -> &PartitionData {
    &response.responses[0].partitions[0]
}

/// (offset, value) of every record in a fetched partition.
fn records(data: &PartitionData) -> Vec<(i64, String)> {
    let mut bytes: Bytes = data.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .iter()
        .flat_map(|set| set.records.iter())
        .map(|record| {
            let value = record.value.clone().unwrap_or_default();
            (record.offset, String::from_utf8_lossy(&value).into_owned())
        })
        .collect()
}

#[test]
fn a_fetch_at_the_log_end_waits_for_new_data() {
    let _limit = TimeLimit::new(
        "a_fetch_at_the_log_end_waits_for_new_data",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let topic = "long-poll";
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);
    produce(node.kafka_addr(), topic, &["first"]);

    // Park a fetch at the log end with a long max wait, then produce: the parked fetch must
    // answer with the new record rather than time out empty.
    let mut stream = TcpStream::connect(node.kafka_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    raw::send(
        &mut stream,
        ApiKey::Fetch,
        FETCH_VERSION,
        &fetch_request(topic, 1, 1 << 20, 25_000),
    );
    std::thread::sleep(Duration::from_millis(300));
    produce(node.kafka_addr(), topic, &["second"]);
    let mut body = raw::receive(&mut stream, ApiKey::Fetch, FETCH_VERSION);
    let response = FetchResponse::decode(&mut body, FETCH_VERSION).unwrap();
    assert_eq!(partition(&response).error_code, 0);
    assert_eq!(
        records(partition(&response)),
        vec![(1, "second".to_string())]
    );
    assert_eq!(partition(&response).high_watermark, 2);
}

#[test]
fn fetches_return_whole_batches_within_limits_but_at_least_one() {
    let _limit = TimeLimit::new("fetches_return_whole_batches", Duration::from_secs(120));
    let node = Node::start();
    let topic = "limits";
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);
    let value = "v".repeat(1000);
    let first = produce(node.kafka_addr(), topic, &[&value]);
    let second = produce(node.kafka_addr(), topic, &[&value]);
    produce(node.kafka_addr(), topic, &[&value]);

    // A limit smaller than one batch still returns the first batch whole.
    let tiny = fetch(node.kafka_addr(), &fetch_request(topic, 0, 10, 0));
    assert_eq!(
        records(partition(&tiny))
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(partition(&tiny).records.as_ref().unwrap().len(), first);

    // Room for one and a half batches: only whole batches, so one.
    let limit = (first + second / 2) as i32;
    let one = fetch(node.kafka_addr(), &fetch_request(topic, 0, limit, 0));
    assert_eq!(records(partition(&one)).len(), 1);

    // Room for two batches exactly: two.
    let two = fetch(
        node.kafka_addr(),
        &fetch_request(topic, 0, (first + second) as i32, 0),
    );
    assert_eq!(
        records(partition(&two))
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );

    // Starting inside the log returns from that batch on.
    let rest = fetch(node.kafka_addr(), &fetch_request(topic, 2, 1 << 20, 0));
    assert_eq!(
        records(partition(&rest))
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn fetch_errors_use_kafka_codes() {
    let _limit = TimeLimit::new("fetch_errors_use_kafka_codes", Duration::from_secs(120));
    let node = Node::start();
    let topic = "errors";
    kafka::create_topic(&node.bootstrap(), topic, 1, &[]);
    produce(node.kafka_addr(), topic, &["a", "b"]);

    const OFFSET_OUT_OF_RANGE: i16 = 1;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;

    let beyond = fetch(node.kafka_addr(), &fetch_request(topic, 99, 1 << 20, 0));
    assert_eq!(partition(&beyond).error_code, OFFSET_OUT_OF_RANGE);
    assert_eq!(partition(&beyond).high_watermark, 2);

    let unknown = fetch(
        node.kafka_addr(),
        &fetch_request("no-such-topic", 0, 1 << 20, 0),
    );
    assert_eq!(partition(&unknown).error_code, UNKNOWN_TOPIC_OR_PARTITION);

    let session = fetch(
        node.kafka_addr(),
        &fetch_request(topic, 0, 1 << 20, 0)
            .with_session_id(1234)
            .with_session_epoch(3),
    );
    assert_eq!(session.error_code, FETCH_SESSION_ID_NOT_FOUND);

    // A client asking for a new session gets none (id 0) and its data: sessions are declined.
    let new_session = fetch(
        node.kafka_addr(),
        &fetch_request(topic, 0, 1 << 20, 0).with_session_epoch(0),
    );
    assert_eq!(new_session.error_code, 0);
    assert_eq!(new_session.session_id, 0);
    assert_eq!(records(partition(&new_session)).len(), 2);
}
