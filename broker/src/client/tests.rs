//! The client against a real broker: a single-node `Broker` served on a loopback listener by
//! `server::run`, as any Kafka client would reach it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::record_batch;
use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use std::time::Duration;
use tokio::sync::watch;

/// A fixed producer id as the services use (no InitProducerId issued it).
const PRODUCER_ID: i64 = 0x4000_0000_0000_0002;

struct Served {
    _dir: tempfile::TempDir,
    addr: String,
    _stop: watch::Sender<bool>,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = Broker::open(BrokerConfig::single_node(dir.path().to_path_buf(), addr)).unwrap();
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(crate::server::run(listener, broker, shutdown));
    Served {
        _dir: dir,
        addr: addr.to_string(),
        _stop: stop,
    }
}

fn client(served: &Served) -> KafkaClient {
    let mut config = ClientConfig::from_list(&format!(" {} ,", served.addr));
    config.retry_deadline = Duration::from_secs(2);
    KafkaClient::new(config).unwrap()
}

fn batch(value: &str, producer_id: i64, sequence: i32) -> Bytes {
    let record = Record {
        producer_id,
        producer_epoch: if producer_id < 0 { -1 } else { 0 },
        sequence,
        ..record_batch::plain_record(
            0,
            1_700_000_000_000,
            None,
            Some(Bytes::from(value.to_string())),
        )
    };
    record_batch::encode_uncompressed(&[record])
        .unwrap()
        .freeze()
}

/// (offset, value) of every record in `bytes`.
fn values(mut bytes: Bytes) -> Vec<(i64, String)> {
    RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|record| {
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            (record.offset, value)
        })
        .collect()
}

#[tokio::test]
async fn topics_are_created_once_and_missing_ones_are_not() {
    let served = serve().await;
    let client = client(&served);
    assert_eq!(client.partition_count("events").await.unwrap(), None);
    assert_eq!(client.ensure_topic("events").await.unwrap(), 1);
    // Already there: TOPIC_ALREADY_EXISTS is not an error, and a new client sees it too.
    assert_eq!(client.ensure_topic("events").await.unwrap(), 1);
    assert_eq!(
        KafkaClient::new(ClientConfig::from_list(&served.addr))
            .unwrap()
            .ensure_topic("events")
            .await
            .unwrap(),
        1
    );
    assert_eq!(client.partition_count("events").await.unwrap(), Some(1));
    assert_eq!(client.known_brokers(), vec![served.addr.clone()]);
    assert_eq!(
        client.leader_address("events", 0).await.unwrap(),
        served.addr
    );

    let error = client
        .produce("missing", 0, batch("x", -1, -1))
        .await
        .unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(kafka_protocol::error::ResponseError::UnknownTopicOrPartition),
        "{error}"
    );
    let error = client
        .produce("events", 3, batch("x", -1, -1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::NoSuchPartition { partition: 3, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn produced_batches_fetch_back_in_order_and_a_resend_is_not_stored_twice() {
    let served = serve().await;
    let client = client(&served);
    client.ensure_topic("orders").await.unwrap();

    // A fixed producer id that no InitProducerId issued, from sequence 0.
    assert_eq!(
        client
            .produce("orders", 0, batch("a", PRODUCER_ID, 0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        client
            .produce("orders", 0, batch("b", PRODUCER_ID, 1))
            .await
            .unwrap(),
        1
    );
    // The same sequence again: answered with where it went, not appended.
    let resent = client
        .produce("orders", 0, batch("b", PRODUCER_ID, 1))
        .await
        .unwrap();
    assert!(
        resent == 1 || resent == -1,
        "a duplicate's offset: {resent}"
    );
    // A gap in the sequence is refused.
    let error = client
        .produce("orders", 0, batch("gap", PRODUCER_ID, 5))
        .await
        .unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(kafka_protocol::error::ResponseError::OutOfOrderSequenceNumber),
        "{error}"
    );
    assert_eq!(
        client
            .produce("orders", 0, batch("c", -1, -1))
            .await
            .unwrap(),
        2
    );

    assert_eq!(
        client
            .list_offset("orders", 0, OffsetSpec::Earliest)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        client
            .list_offset("orders", 0, OffsetSpec::Latest)
            .await
            .unwrap(),
        3
    );

    let fetched = client
        .fetch(
            "orders",
            0,
            0,
            Duration::from_millis(100),
            1 << 20,
            IsolationLevel::ReadCommitted,
        )
        .await
        .unwrap();
    assert_eq!(
        values(fetched.records),
        vec![
            (0, "a".to_string()),
            (1, "b".to_string()),
            (2, "c".to_string())
        ]
    );
    assert_eq!((fetched.high_watermark, fetched.last_stable_offset), (3, 3));
    assert_eq!(fetched.log_start_offset, 0);
    assert!(fetched.aborted.is_empty());

    let from_middle = client
        .fetch(
            "orders",
            0,
            2,
            Duration::from_millis(100),
            1 << 20,
            IsolationLevel::ReadUncommitted,
        )
        .await
        .unwrap();
    assert_eq!(values(from_middle.records), vec![(2, "c".to_string())]);

    // At the end: waits up to max_wait, then answers with nothing.
    let started = std::time::Instant::now();
    let empty = client
        .fetch(
            "orders",
            0,
            3,
            Duration::from_millis(300),
            1 << 20,
            IsolationLevel::ReadCommitted,
        )
        .await
        .unwrap();
    assert!(empty.records.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // A long poll (on a topic nothing is written to) does not hold back a produce to the
    // same broker: fetches wait on connections of their own.
    client.ensure_topic("idle").await.unwrap();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .fetch(
                    "idle",
                    0,
                    0,
                    Duration::from_secs(5),
                    1 << 20,
                    IsolationLevel::ReadCommitted,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    assert_eq!(
        client
            .produce("orders", 0, batch("d", -1, -1))
            .await
            .unwrap(),
        3
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!waiting.is_finished());
    waiting.abort();

    let error = client
        .fetch(
            "orders",
            0,
            99,
            Duration::from_millis(10),
            1 << 20,
            IsolationLevel::ReadCommitted,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(kafka_protocol::error::ResponseError::OffsetOutOfRange),
        "{error}"
    );
}

#[tokio::test]
async fn a_standalone_consumer_commits_and_reads_back_its_offsets() {
    let served = serve().await;
    let client = client(&served);
    client.ensure_topic("payments").await.unwrap();
    assert_eq!(
        client.coordinator_address("billing").await.unwrap(),
        served.addr
    );
    assert_eq!(
        client
            .committed_offset("billing", "payments", 0)
            .await
            .unwrap(),
        None
    );
    client
        .commit_offset("billing", "payments", 0, 7)
        .await
        .unwrap();
    assert_eq!(
        client
            .committed_offset("billing", "payments", 0)
            .await
            .unwrap(),
        Some(7)
    );
    client
        .commit_offset("billing", "payments", 0, 9)
        .await
        .unwrap();
    // Another client (another process) sees the group's offset.
    let other = KafkaClient::new(ClientConfig::from_list(&served.addr)).unwrap();
    assert_eq!(
        other
            .committed_offset("billing", "payments", 0)
            .await
            .unwrap(),
        Some(9)
    );
    assert_eq!(
        other
            .committed_offset("shipping", "payments", 0)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn the_client_reconnects_to_a_broker_that_came_back() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = Broker::open(BrokerConfig::single_node(dir.path().to_path_buf(), addr)).unwrap();
    let (stop, shutdown) = watch::channel(false);
    let server = tokio::spawn(crate::server::run(listener, broker.clone(), shutdown));
    let mut config = ClientConfig::from_list(&addr.to_string());
    config.retry_deadline = Duration::from_secs(10);
    let client = KafkaClient::new(config).unwrap();
    client.ensure_topic("events").await.unwrap();
    assert_eq!(
        client
            .produce("events", 0, batch("a", PRODUCER_ID, 0))
            .await
            .unwrap(),
        0
    );

    // The listener and every connection close; the client's connection is dead.
    stop.send(true).unwrap();
    server.await.unwrap();
    let down = client.produce("events", 0, batch("b", PRODUCER_ID, 1));
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(crate::server::run(listener, broker.clone(), shutdown));
        stop
    };
    // The produce retries through the outage and lands once the broker is back.
    let (produced, _stop) = tokio::join!(down, restart);
    assert_eq!(produced.unwrap(), 1);
    let fetched = client
        .fetch(
            "events",
            0,
            0,
            Duration::ZERO,
            1 << 20,
            IsolationLevel::ReadCommitted,
        )
        .await
        .unwrap();
    assert_eq!(
        values(fetched.records),
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );
}
