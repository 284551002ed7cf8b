//! The consumer against an in-memory log: events apply once each (a duplicate is dropped by
//! the inbox), an event that keeps failing is retried then dead-lettered with its source, a
//! log that fails for a while delays the dead letter but never loses it, and the committed
//! offset ends past everything; a record the platform did not sign is dead-lettered at once
//! and never applied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::consumer::{Consumer, Subscriber};
use super::engine::StateMachine;
use super::event_log::{
    ConsumedRecord, EventLog, EventLogError, Fetched, PlainRecord, PublishedEvent,
};
use super::record_signature::{RecordKey, RecordKeys, SIGNATURE_HEADER, SignedRecord};
use super::resilience::{BreakerConfig, RetryPolicy};
use super::store::{Store, Table, Transaction};
use super::{CommandMeta, EventEnvelope, Rejection, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const TOPIC: &str = "things";
const COUNTS: Table<u64> = Table::new("count");

/// A dead letter as appended: its topic and headers.
type DeadLetter = (String, Vec<(String, Vec<u8>)>);

/// One partition of `TOPIC` in memory, with the group's offset and the dead letters.
#[derive(Default)]
struct ConsumeLog {
    records: Vec<ConsumedRecord>,
    committed: Mutex<Option<i64>>,
    dead: Mutex<Vec<DeadLetter>>,
    /// Dead-letter appends that fail before one succeeds.
    failing_appends: Mutex<u32>,
}

impl EventLog for ConsumeLog {
    async fn partition_for(&self, _: &str, _: &str) -> Result<i32, EventLogError> {
        Ok(0)
    }
    async fn publish(&self, _: PublishedEvent<'_>) -> Result<(), EventLogError> {
        Ok(())
    }
    async fn last_published(&self, _: &str, _: i64) -> Result<Option<u64>, EventLogError> {
        Ok(None)
    }
    async fn partitions(&self, _: &str) -> Result<i32, EventLogError> {
        Ok(1)
    }
    async fn fetch(
        &self,
        _: &str,
        _: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<Fetched, EventLogError> {
        let records: Vec<ConsumedRecord> = self
            .records
            .iter()
            .filter(|record| record.offset >= offset)
            .cloned()
            .collect();
        if records.is_empty() {
            tokio::time::sleep(max_wait).await;
        }
        let next_offset = records.last().map_or(offset, |record| record.offset + 1);
        Ok(Fetched {
            records,
            next_offset,
        })
    }
    async fn committed_offset(
        &self,
        _: &str,
        _: &str,
        _: i32,
    ) -> Result<Option<i64>, EventLogError> {
        Ok(*self.committed.lock().unwrap())
    }
    async fn commit_offset(
        &self,
        _: &str,
        _: &str,
        _: i32,
        offset: i64,
    ) -> Result<(), EventLogError> {
        *self.committed.lock().unwrap() = Some(offset);
        Ok(())
    }
    async fn publish_record(&self, record: PlainRecord<'_>) -> Result<(), EventLogError> {
        let mut failing = self.failing_appends.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return Err(EventLogError("log unavailable".into()));
        }
        self.dead
            .lock()
            .unwrap()
            .push((record.topic.to_string(), record.headers));
        Ok(())
    }
}

/// Counts events per aggregate.
struct Counts;

impl StateMachine for Counts {
    type Command = String;
    type Output = u64;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        key: &String,
        _: &CommandMeta,
    ) -> Result<Result<u64, Rejection>, StoreError> {
        let count = COUNTS.get(tx, key)?.unwrap_or(0) + 1;
        COUNTS.put(tx, key, &count)?;
        Ok(Ok(count))
    }
}

struct CountSubscriber;

impl Subscriber for CountSubscriber {
    type Machine = Counts;
    const GROUP: &'static str = "counts";
    const TOPICS: &'static [&'static str] = &[TOPIC];

    fn command_for(&self, _: &str, event: &EventEnvelope) -> Result<Option<String>, Rejection> {
        match event.event_type.as_str() {
            "Counted" => Ok(Some(event.aggregate_id.clone())),
            "Refused" => Err(Rejection::invalid("type", "refused on purpose")),
            _ => Ok(None),
        }
    }
}

fn platform_key() -> RecordKey {
    RecordKey::from_bytes([42; 32]).unwrap()
}

/// A record as the platform's relay publishes it: signed with the platform key.
fn record(offset: i64, id: &str, event_type: &str, key: &str) -> ConsumedRecord {
    let mut record = unsigned(offset, id, event_type, key);
    sign(&mut record, &platform_key());
    record
}

/// (Re)signs `record` with `key`, replacing any signature it had.
fn sign(record: &mut ConsumedRecord, key: &RecordKey) {
    let signature = key.sign(SignedRecord {
        topic: TOPIC,
        key: record.key.as_deref(),
        value: record.value.as_deref(),
    });
    record.headers.retain(|(name, _)| name != SIGNATURE_HEADER);
    record
        .headers
        .push((SIGNATURE_HEADER.to_string(), Some(signature.into_bytes())));
}

fn unsigned(offset: i64, id: &str, event_type: &str, key: &str) -> ConsumedRecord {
    let envelope = EventEnvelope {
        id: id.to_string(),
        event_type: event_type.to_string(),
        aggregate_id: key.to_string(),
        occurred_at: "2026-01-01T00:00:00.000Z".to_string(),
        correlation_id: "c".to_string(),
        causation_id: None,
        version: 1,
        data: serde_json::Value::Null,
    };
    ConsumedRecord {
        offset,
        key: Some(key.as_bytes().to_vec()),
        value: Some(serde_json::to_vec(&envelope).unwrap()),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn events_apply_once_and_failures_are_dead_lettered_after_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let raft = super::testing::single_node(dir.path()).await;
    let engine = super::testing::replicated(&raft, store.clone(), Counts).await;
    let mut poison = record(2, "e-poison", "Counted", "a");
    poison.value = Some(b"{not json".to_vec());
    sign(&mut poison, &platform_key());
    let log = Arc::new(ConsumeLog {
        records: vec![
            record(0, "e-1", "Counted", "a"),
            record(1, "e-1", "Counted", "a"), // the same event again
            poison,
            record(3, "e-2", "Refused", "a"),
            record(4, "e-3", "Ignored", "a"),
            record(5, "e-4", "Counted", "a"),
            record(6, "e-5", "Counted", "b"),
        ],
        // The log refuses the first dead letters: they must still arrive, once each.
        failing_appends: Mutex::new(3),
        ..ConsumeLog::default()
    });
    let consumer = Consumer {
        log: log.clone(),
        engine,
        subscriber: CountSubscriber,
        retry: RetryPolicy {
            attempts: 3,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
        },
        breaker: BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_millis(20),
            call_timeout: Duration::from_secs(5),
        },
        keys: RecordKeys::with(platform_key()),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(consumer.run(stopped));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while *log.committed.lock().unwrap() != Some(7) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();

    assert_eq!(COUNTS.get(store.as_ref(), "a").unwrap(), Some(2));
    assert_eq!(COUNTS.get(store.as_ref(), "b").unwrap(), Some(1));
    let dead = log.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let header = |headers: &[(String, Vec<u8>)], name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8(value.clone()).unwrap())
            .unwrap()
    };
    for ((topic, headers), offset) in dead.iter().zip(["2", "3"]) {
        assert_eq!(topic, "things.dlq");
        assert_eq!(header(headers, "dlq-source-offset"), offset);
        assert_eq!(header(headers, "dlq-source-topic"), TOPIC);
        assert_eq!(header(headers, "dlq-attempts"), "3");
        assert_eq!(header(headers, "dlq-consumer-group"), "counts");
    }
    assert!(header(&dead[1].1, "dlq-error").contains("refused on purpose"));
}

#[tokio::test]
async fn records_the_platform_did_not_sign_are_dead_lettered_at_once_and_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let raft = super::testing::single_node(dir.path()).await;
    let engine = super::testing::replicated(&raft, store.clone(), Counts).await;
    let genuine = record(0, "e-1", "Counted", "a");
    // A copy of a genuine record with its payload altered, keeping the signature.
    let mut altered = genuine.clone();
    altered.offset = 1;
    altered.value = Some(
        String::from_utf8(genuine.value.clone().unwrap())
            .unwrap()
            .replace("\"e-1\"", "\"e-9\"")
            .into_bytes(),
    );
    // The genuine record's bytes without the signature header.
    let mut stripped = genuine.clone();
    stripped.offset = 2;
    stripped.headers.clear();
    // Signed, but with another key.
    let mut other_key = unsigned(3, "e-3", "Counted", "b");
    sign(&mut other_key, &RecordKey::from_bytes([7; 32]).unwrap());
    let log = Arc::new(ConsumeLog {
        records: vec![
            genuine.clone(),
            altered,
            stripped,
            other_key,
            unsigned(4, "e-4", "Counted", "b"),
            record(5, "e-5", "Counted", "a"),
        ],
        ..ConsumeLog::default()
    });
    let consumer = Consumer {
        log: log.clone(),
        engine,
        subscriber: CountSubscriber,
        retry: RetryPolicy {
            attempts: 3,
            initial: Duration::from_secs(60),
            max: Duration::from_secs(60),
        },
        breaker: BreakerConfig::default(),
        keys: RecordKeys::with(platform_key()),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(consumer.run(stopped));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The retry backoff is a minute: reaching the end this soon means no refusal was retried.
    while *log.committed.lock().unwrap() != Some(6) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();

    assert_eq!(COUNTS.get(store.as_ref(), "a").unwrap(), Some(2));
    assert_eq!(COUNTS.get(store.as_ref(), "b").unwrap(), None);
    let dead = log.dead.lock().unwrap().clone();
    let header = |headers: &[(String, Vec<u8>)], name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8(value.clone()).unwrap())
            .unwrap()
    };
    let reasons: Vec<(String, String)> = dead
        .iter()
        .map(|(_, headers)| {
            (
                header(headers, "dlq-source-offset"),
                header(headers, "dlq-error"),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for ((offset, reason), (expected_offset, expected)) in reasons.iter().zip([
        ("1", "signature does not match"),
        ("2", "unsigned"),
        ("3", "signed with key"),
        ("4", "unsigned"),
    ]) {
        assert_eq!(offset, expected_offset);
        assert!(
            reason.starts_with("refused: not written by this platform's services"),
            "{reason}"
        );
        assert!(reason.contains(expected), "{reason}");
    }
    for (_, headers) in &dead {
        assert_eq!(header(headers, "dlq-attempts"), "0");
    }
}
