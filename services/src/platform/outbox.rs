//! The outbox relay: publishes committed outbox events through the [`EventLog`] in outbox
//! order and marks each published (removes it) once the log has it.
//!
//! Exactly once, across crashes:
//! - a crash after apply and before publish loses nothing: the events are in the outbox, in
//!   the same batch as the state change, and the relay starts from the outbox;
//! - a crash after publish and before the mark would publish again. Two guards: every event
//!   goes out with the service's fixed producer id and a producer sequence per partition
//!   that advances only in the batch that marks the event published (so a re-send carries
//!   the same sequence, and an idempotent broker drops it); and on start the relay asks the
//!   log for the last outbox sequence this producer has on each topic and marks everything
//!   up to it as published, so it does not depend on the broker for that.
//!
//! Every publish goes through a circuit breaker with a timeout ([`Guarded`]): a log that hangs
//! or keeps failing is left alone for a cool-down instead of being hammered, and a publish
//! abandoned by the timeout is safe to repeat (same producer sequence).
//!
//! Kafka numbers a producer's batches per partition, without gaps; the outbox sequence runs
//! across all of a service's topics, so it is carried in the record for the tail check and
//! not used as the producer sequence itself.
//!
//! Every event goes out signed ([`super::record_signature`]): the relay waits for the
//! platform's record key before it publishes anything, so no record leaves unsigned.
//!
//! The relay runs on the service group's leader only. Marking an event published is a
//! local write there; every so often the relay also records its progress in the group's
//! log ([`OutboxProgress`]), so every replica drops what was published and a new leader's
//! relay resumes from there (the tail check covers the events published since).

use super::error::StoreError;
use super::event_log::{EventLog, PublishedEvent};
use super::record_signature::{RecordKey, RecordKeys, SignedRecord};
use super::resilience::{BreakerConfig, Guarded};
use super::store::{OutboxEntry, Store};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Outbox entries read per round.
const BATCH: usize = 256;
/// Wait before retrying after the log refused an event.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Poll even without a signal, in case one was missed around a failure.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often at most the relay records its progress in the group's log.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// A partition's next producer sequence, as the relay left it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerSequence {
    pub topic: String,
    pub partition: i32,
    pub next: u64,
}

/// Where the relay records what it published, for every replica (the engine: an entry in
/// the service's group).
pub trait OutboxProgress: Send + Sync + 'static {
    fn record_published(
        &self,
        through: u64,
        sequences: Vec<ProducerSequence>,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>>;
}

pub struct Relay<L: EventLog> {
    pub service: &'static str,
    pub store: Arc<Store>,
    pub log: Arc<L>,
    pub producer_id: i64,
    pub signal: Arc<Notify>,
    pub progress: Arc<dyn OutboxProgress>,
    /// The platform's record key, awaited before the first publish.
    pub keys: RecordKeys,
}

/// What the relay published since it last recorded its progress.
#[derive(Default)]
struct Unrecorded {
    through: Option<u64>,
    sequences: BTreeMap<(String, i32), u64>,
    since: Option<Instant>,
}

impl<L: EventLog> Relay<L> {
    /// Runs until `stopped` turns true.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let guard = Guarded::new("event log", BreakerConfig::default());
        if self.keys.current().is_none() {
            tracing::info!(
                service = self.service,
                "outbox relay waiting for the record signing key"
            );
        }
        let Some(key) = self.keys.wait(&mut stopped).await else {
            return;
        };
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
        let mut unrecorded = Unrecorded::default();
        loop {
            if *stopped.borrow() {
                return;
            }
            let round = self.publish_pending(&guard, &key, &mut unrecorded).await;
            if let Err(error) = self
                .record_progress(&mut unrecorded, round.as_ref().is_ok_and(|n| *n == 0))
                .await
            {
                tracing::debug!(service = self.service, %error, "outbox progress not recorded yet");
            }
            match round {
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
                let partition = self.partition(&entry).await?;
                let sequence = self.store.producer_sequence(&entry.topic, partition)?;
                self.store
                    .outbox_done(seq, &entry.topic, partition, sequence + 1)?;
            }
        }
        Ok(())
    }

    /// Records what was published in the group's log, at most every [`PROGRESS_EVERY`]
    /// unless the relay is idle (then at once, so followers' outboxes empty too).
    async fn record_progress(
        &self,
        unrecorded: &mut Unrecorded,
        idle: bool,
    ) -> Result<(), StoreError> {
        let Some(through) = unrecorded.through else {
            return Ok(());
        };
        if !idle
            && unrecorded
                .since
                .is_some_and(|since| since.elapsed() < PROGRESS_EVERY)
        {
            return Ok(());
        }
        let sequences = unrecorded
            .sequences
            .iter()
            .map(|((topic, partition), next)| ProducerSequence {
                topic: topic.clone(),
                partition: *partition,
                next: *next,
            })
            .collect();
        self.progress.record_published(through, sequences).await?;
        *unrecorded = Unrecorded::default();
        Ok(())
    }

    /// Publishes one round of pending events; returns how many.
    async fn publish_pending(
        &self,
        guard: &Guarded,
        key: &RecordKey,
        unrecorded: &mut Unrecorded,
    ) -> Result<usize, RelayError> {
        let pending = self.store.outbox_pending(BATCH)?;
        let count = pending.len();
        for (seq, entry) in pending {
            let value = serde_json::to_vec(&entry.event).map_err(StoreError::from)?;
            let partition = self.partition(&entry).await?;
            let sequence = self.store.producer_sequence(&entry.topic, partition)?;
            let signature = key.sign(SignedRecord {
                topic: &entry.topic,
                key: Some(entry.event.aggregate_id.as_bytes()),
                value: Some(&value),
            });
            let publish = self.log.publish(PublishedEvent {
                topic: &entry.topic,
                key: &entry.event.aggregate_id,
                partition,
                // Kafka sequences are non-negative i32 and wrap.
                sequence: i32::try_from(sequence & 0x7fff_ffff).unwrap_or(0),
                value: &value,
                timestamp_ms: super::time::now_ms(),
                producer_id: self.producer_id,
                outbox_seq: seq,
                traceparent: entry.traceparent.as_deref(),
                signature: &signature,
            });
            guard
                .call(publish)
                .await
                .map_err(|error| RelayError::Log(error.to_string()))?;
            self.store
                .outbox_done(seq, &entry.topic, partition, sequence + 1)?;
            unrecorded.through = Some(seq);
            unrecorded
                .sequences
                .insert((entry.topic.clone(), partition), sequence + 1);
            unrecorded.since.get_or_insert_with(Instant::now);
        }
        Ok(count)
    }

    async fn partition(&self, entry: &OutboxEntry) -> Result<i32, RelayError> {
        self.log
            .partition_for(&entry.topic, &entry.event.aggregate_id)
            .await
            .map_err(|error| RelayError::Log(error.to_string()))
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
