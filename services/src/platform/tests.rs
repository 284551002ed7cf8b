//! The platform's behaviour with a toy state machine and an in-memory event log: rejected
//! commands leave no trace, logged commands are replayed after a crash, and the relay
//! publishes every event exactly once across a crash between publishing and marking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::engine::{CommandContext, Engine, StateMachine};
use super::event_log::{EventLog, EventLogError, Fetched, PlainRecord, PublishedEvent};
use super::outbox::Relay;
use super::record_signature::{RecordKey, RecordKeys, SignedRecord};
use super::store::{Store, Table, Transaction};
use super::testing::Standalone;
use super::{CommandMeta, Rejection, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// One record of the in-memory log.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    topic: String,
    producer_id: i64,
    outbox_seq: u64,
    key: String,
    partition: i32,
    sequence: i32,
    signature: String,
    value: Vec<u8>,
}

/// A log in memory with two partitions: keys before "c" go to 0, the rest to 1.
#[derive(Default)]
struct MemoryLog {
    records: Mutex<Vec<Stored>>,
}

impl EventLog for MemoryLog {
    async fn partition_for(&self, _topic: &str, key: &str) -> Result<i32, EventLogError> {
        Ok(if key < "c" { 0 } else { 1 })
    }

    async fn publish(&self, event: PublishedEvent<'_>) -> Result<(), EventLogError> {
        self.records.lock().unwrap().push(Stored {
            topic: event.topic.to_string(),
            producer_id: event.producer_id,
            outbox_seq: event.outbox_seq,
            key: event.key.to_string(),
            partition: event.partition,
            sequence: event.sequence,
            signature: event.signature.to_string(),
            value: event.value.to_vec(),
        });
        Ok(())
    }

    async fn last_published(
        &self,
        topic: &str,
        producer_id: i64,
    ) -> Result<Option<u64>, EventLogError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|stored| stored.topic == topic && stored.producer_id == producer_id)
            .map(|stored| stored.outbox_seq)
            .max())
    }

    // The consuming side is exercised end to end (tests/tests/consumers.rs); the relay tests
    // here only publish.

    async fn partitions(&self, _topic: &str) -> Result<i32, EventLogError> {
        Ok(2)
    }

    async fn fetch(
        &self,
        _topic: &str,
        _partition: i32,
        offset: i64,
        _max_wait: Duration,
    ) -> Result<Fetched, EventLogError> {
        Ok(Fetched {
            records: Vec::new(),
            next_offset: offset,
        })
    }

    async fn committed_offset(
        &self,
        _group: &str,
        _topic: &str,
        _partition: i32,
    ) -> Result<Option<i64>, EventLogError> {
        Ok(None)
    }

    async fn commit_offset(
        &self,
        _group: &str,
        _topic: &str,
        _partition: i32,
        _offset: i64,
    ) -> Result<(), EventLogError> {
        Ok(())
    }

    async fn publish_record(&self, _record: PlainRecord<'_>) -> Result<(), EventLogError> {
        Ok(())
    }
}

/// Counts up per key; "bad" keys are rejected.
struct Counter;
const COUNTS: Table<u64> = Table::new("count");

impl StateMachine for Counter {
    type Command = String;
    type Output = u64;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        key: &String,
        meta: &CommandMeta,
    ) -> Result<Result<u64, Rejection>, StoreError> {
        if key == "bad" {
            COUNTS.put(tx, key, &99)?; // must not survive the rejection
            return Ok(Err(Rejection::invalid("key", "bad key")));
        }
        let count = COUNTS.get(tx, key)?.unwrap_or(0) + 1;
        COUNTS.put(tx, key, &count)?;
        tx.emit("counts", meta.event("Counted", key, 1, count)?);
        Ok(Ok(count))
    }
}

fn submit(engine: &Engine<Counter>, key: &str) -> Result<u64, Rejection> {
    engine
        .submit_blocking(key.to_string(), CommandContext::default())
        .unwrap()
}

#[test]
fn a_rejected_command_writes_nothing_and_a_restart_neither_loses_nor_repeats_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("counter")).unwrap());
    let node = Standalone::open(dir.path(), store.clone(), Counter);
    assert_eq!(submit(&node.engine, "a"), Ok(1));
    assert_eq!(submit(&node.engine, "a"), Ok(2));
    assert!(submit(&node.engine, "bad").is_err());
    assert_eq!(COUNTS.get(store.as_ref(), "bad").unwrap(), None);
    assert_eq!(store.outbox_pending(10).unwrap().len(), 2);
    node.stop();
    drop(store);

    // Raft applies its log again after a restart; the store skips what it holds already.
    let store = Arc::new(Store::open(&dir.path().join("counter")).unwrap());
    let node = Standalone::open(dir.path(), store.clone(), Counter);
    assert_eq!(COUNTS.get(store.as_ref(), "a").unwrap(), Some(2));
    assert_eq!(submit(&node.engine, "a"), Ok(3));
    let pending = store.outbox_pending(10).unwrap();
    assert_eq!(
        pending.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    node.stop();
}

#[test]
fn an_upgraded_store_applies_what_its_node_local_command_log_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // Logged by the node-local command log of an older version, not applied before it
    // stopped.
    let entry = serde_json::json!({
        "meta": {"command_id": "c-1", "at_ms": 5, "correlation_id": "x", "causation_id": null, "traceparent": null},
        "command": "a",
    });
    store
        .append_log(1, &serde_json::to_vec(&entry).unwrap())
        .unwrap();
    let _engine = Engine::open(store.clone(), Counter).unwrap();
    assert_eq!(COUNTS.get(store.as_ref(), "a").unwrap(), Some(1));
    // Opening again applies nothing twice.
    let _engine = Engine::open(store.clone(), Counter).unwrap();
    assert_eq!(COUNTS.get(store.as_ref(), "a").unwrap(), Some(1));
}

#[tokio::test]
async fn the_relay_publishes_each_event_once_even_after_a_crash_before_marking() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let raft = super::testing::single_node(dir.path()).await;
    let engine = super::testing::replicated(&raft, store.clone(), Counter).await;
    for key in ["a", "b", "c", "d"] {
        engine
            .submit(key.to_string(), CommandContext::default())
            .await
            .unwrap()
            .unwrap();
    }
    let key = RecordKey::from_bytes([9; 32]).unwrap();
    // Events 0 and 1 reached the log but the relay died before marking them.
    let log = Arc::new(MemoryLog::default());
    for (seq, key) in [(0, "a"), (1, "b")] {
        log.records.lock().unwrap().push(Stored {
            topic: "counts".into(),
            producer_id: 7,
            outbox_seq: seq,
            key: key.into(),
            partition: 0,
            sequence: i32::try_from(seq).unwrap(),
            signature: String::new(),
            value: Vec::new(),
        });
    }
    let relay = Relay {
        service: "test",
        store: store.clone(),
        log: log.clone(),
        producer_id: 7,
        signal: engine.outbox_signal(),
        progress: engine.clone(),
        keys: RecordKeys::with(key.clone()),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(relay.run(stopped));
    for _ in 0..200 {
        if store.outbox_pending(10).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    // Each event once, in outbox order; producer sequences count per partition from 0.
    let published: Vec<(u64, String, i32, i32)> = log
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|stored| {
            (
                stored.outbox_seq,
                stored.key.clone(),
                stored.partition,
                stored.sequence,
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            (0, "a".into(), 0, 0),
            (1, "b".into(), 0, 1),
            (2, "c".into(), 1, 0),
            (3, "d".into(), 1, 1)
        ]
    );
    // What it published is signed: topic, key and value.
    for stored in log.records.lock().unwrap().iter().skip(2) {
        let signed = SignedRecord {
            topic: &stored.topic,
            key: Some(stored.key.as_bytes()),
            value: Some(&stored.value),
        };
        assert_eq!(
            key.verify(signed, Some(stored.signature.as_bytes())),
            Ok(())
        );
    }
    // The skipped events advanced partition 0's sequence too.
    assert_eq!(store.producer_sequence("counts", 0).unwrap(), 2);
    assert_eq!(store.producer_sequence("counts", 1).unwrap(), 2);
}
