//! The outbox relay: publishes committed outbox events through the [`EventLog`] in outbox
//! order and marks each published (removes it) once the log has it.
//!
//! Exactly once, across crashes:
//! - a crash after apply and before publish loses nothing: the events are in the outbox, in
//!   the same batch as the state change, and the relay starts from the outbox;
//! - a crash after publish and before the mark would publish again. Two guards: every event
//!   goes out with the service's fixed producer id and its outbox sequence as the producer
//!   sequence, so an idempotent broker drops the re-send; and on start the relay asks the log
//!   for the last outbox sequence this producer has on each topic and marks everything up to
//!   it as published, so it does not depend on the broker for that.

use super::error::StoreError;
use super::event_log::{EventLog, PublishedEvent};
use super::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Outbox entries read per round.
const BATCH: usize = 256;
/// Wait before retrying after the log refused an event.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Poll even without a signal, in case one was missed around a failure.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Relay<L: EventLog> {
    pub service: &'static str,
    pub store: Arc<Store>,
    pub log: Arc<L>,
    pub producer_id: i64,
    pub signal: Arc<Notify>,
}

impl<L: EventLog> Relay<L> {
    /// Runs until `stopped` turns true.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            match self.skip_already_published().await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(service = self.service, %error, "outbox relay cannot read the topic tail; retrying");
                    if wait(&mut stopped, RETRY_BACKOFF).await {
                        return;
                    }
                }
            }
        }
        loop {
            if *stopped.borrow() {
                return;
            }
            match self.publish_pending().await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.signal.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = stopped.changed() => return,
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(service = self.service, %error, "outbox relay failed; retrying");
                    if wait(&mut stopped, RETRY_BACKOFF).await {
                        return;
                    }
                }
            }
        }
    }

    /// Marks the pending entries the log already holds (published before a crash, not yet
    /// marked).
    async fn skip_already_published(&self) -> Result<(), RelayError> {
        let pending = self.store.outbox_pending(usize::MAX)?;
        if !pending.is_empty() {
            tracing::info!(
                service = self.service,
                pending = pending.len(),
                "outbox relay resuming with unpublished events"
            );
        }
        let mut last_by_topic: HashMap<String, Option<u64>> = HashMap::new();
        for (seq, entry) in pending {
            if !last_by_topic.contains_key(&entry.topic) {
                let last = self
                    .log
                    .last_published(&entry.topic, self.producer_id)
                    .await
                    .map_err(|error| RelayError::Log(error.to_string()))?;
                last_by_topic.insert(entry.topic.clone(), last);
            }
            if let Some(Some(last)) = last_by_topic.get(&entry.topic)
                && seq <= *last
            {
                tracing::info!(service = self.service, seq, topic = %entry.topic, "outbox event already on the topic; not publishing it again");
                self.store.outbox_done(seq)?;
            }
        }
        Ok(())
    }

    /// Publishes one round of pending events; returns how many.
    async fn publish_pending(&self) -> Result<usize, RelayError> {
        let pending = self.store.outbox_pending(BATCH)?;
        let count = pending.len();
        for (seq, entry) in pending {
            let value = serde_json::to_vec(&entry.event).map_err(StoreError::from)?;
            self.log
                .publish(PublishedEvent {
                    topic: &entry.topic,
                    key: &entry.event.aggregate_id,
                    value: &value,
                    timestamp_ms: super::time::now_ms(),
                    producer_id: self.producer_id,
                    outbox_seq: seq,
                    traceparent: entry.traceparent.as_deref(),
                })
                .await
                .map_err(|error| RelayError::Log(error.to_string()))?;
            self.store.outbox_done(seq)?;
        }
        Ok(count)
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Log(String),
}

/// Sleeps `delay` unless stopped first; true when stopped.
async fn wait(stopped: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::platform::engine::{CommandContext, Engine, StateMachine};
    use crate::platform::event_log::EventLogError;
    use crate::platform::store::{Table, Transaction};
    use crate::platform::{CommandMeta, Rejection};
    use std::sync::Mutex;

    /// A log in memory: (topic, producer id, outbox seq, aggregate id).
    #[derive(Default)]
    struct MemoryLog {
        records: Mutex<Vec<(String, i64, u64, String)>>,
    }

    impl EventLog for MemoryLog {
        async fn publish(&self, event: PublishedEvent<'_>) -> Result<(), EventLogError> {
            self.records.lock().unwrap().push((
                event.topic.to_string(),
                event.producer_id,
                event.outbox_seq,
                event.key.to_string(),
            ));
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
                .filter(|(t, p, _, _)| t == topic && *p == producer_id)
                .map(|(_, _, seq, _)| *seq)
                .max())
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
    fn a_rejected_command_writes_nothing_and_replay_applies_logged_commands() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let engine = Engine::open(store.clone(), Counter).unwrap();
        assert_eq!(submit(&engine, "a"), Ok(1));
        assert_eq!(submit(&engine, "a"), Ok(2));
        assert!(submit(&engine, "bad").is_err());
        assert_eq!(COUNTS.get(store.as_ref(), "bad").unwrap(), None);
        assert_eq!(store.outbox_pending(10).unwrap().len(), 2);

        // A command logged but not applied (a crash between the two) is applied on open.
        let entry = serde_json::json!({
            "meta": {"command_id": "c-3", "at_ms": 5, "correlation_id": "x", "causation_id": null, "traceparent": null},
            "command": "a",
        });
        store
            .append_log(4, &serde_json::to_vec(&entry).unwrap())
            .unwrap();
        drop(engine);
        let engine = Engine::open(store.clone(), Counter).unwrap();
        assert_eq!(COUNTS.get(store.as_ref(), "a").unwrap(), Some(3));
        assert_eq!(submit(&engine, "a"), Ok(4));
        let pending = store.outbox_pending(10).unwrap();
        assert_eq!(
            pending.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
    }

    #[tokio::test]
    async fn the_relay_publishes_each_event_once_even_after_a_crash_before_marking() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let engine = Engine::open(store.clone(), Counter).unwrap();
        for key in ["a", "b", "c", "d"] {
            submit(&engine, key).unwrap();
        }
        // Events 0 and 1 reached the log but the relay died before marking them.
        let log = Arc::new(MemoryLog::default());
        for (seq, key) in [(0, "a"), (1, "b")] {
            log.records
                .lock()
                .unwrap()
                .push(("counts".into(), 7, seq, key.into()));
        }
        let relay = Relay {
            service: "test",
            store: store.clone(),
            log: log.clone(),
            producer_id: 7,
            signal: engine.outbox_signal(),
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
        let published: Vec<(u64, String)> = log
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, seq, key)| (*seq, key.clone()))
            .collect();
        assert_eq!(
            published,
            [
                (0, "a".into()),
                (1, "b".into()),
                (2, "c".into()),
                (3, "d".into())
            ]
        );
    }
}
