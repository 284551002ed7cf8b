//! The consumer side of the platform: a service reacting to other services' events.
//!
//! A [`Subscriber`] says which topics a service follows and which command an event calls for;
//! the [`Consumer`] runs it with consumer-group semantics: one task per partition, starting at
//! the group's committed offset, applying each event through the service's engine (so the
//! effect is a logged, deterministic command like any other), and committing the offset after
//! the effects are applied.
//!
//! Exactly-once effects without a transaction spanning log and store: the engine records the
//! event id in the inbox in the same batch as the effect and skips an id it has seen, so the
//! offset commit may lag (a crash between apply and commit redelivers events the inbox then
//! drops). The offsets are the broker's own group offsets, so `commerce group describe <service>`
//! shows how far a service is behind.
//!
//! Only the platform's own records are applied: a record whose `commerce-signature` header
//! does not verify under the platform's record key ([`super::record_signature`]) — written
//! by some other producer on the Kafka port, or a genuine record altered or copied to
//! another topic — is refused at once, without retries (it will not become genuine), and
//! dead-lettered with the reason; the first refusal of each kind on a topic is a warning,
//! the rest (a flood of forgeries) are debug lines. A partition's consumer waits for the
//! record key before it reads anything.
//!
//! Failures are of two kinds, handled differently:
//! - the event's own (not an envelope, a rejection by the handler): retried with exponential
//!   backoff up to `retry.attempts` tries, then the record goes to `<topic>.dlq` — same key and
//!   value, the source headers plus `dlq-*` headers naming the error, group, topic, partition,
//!   offset and attempts — and the consumer moves on. A dead letter is at least once: a crash
//!   after writing it and before the commit writes it again.
//! - the platform's (the log unreachable, the store failing): never the event's fault, so they
//!   never dead-letter it; calls to the log go through a circuit breaker with a timeout, and
//!   the consumer waits and tries again, as long as it takes.

use super::engine::{Applied, CommandContext, Engine, StateMachine};
use super::envelope::EventEnvelope;
use super::error::Rejection;
use super::event_log::{ConsumedRecord, EventLog, PlainRecord};
use super::record_signature::{RecordKey, RecordKeys, SIGNATURE_HEADER, SignedRecord, Unverified};
use super::resilience::{BreakerConfig, Guarded, RetryPolicy};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long one fetch waits for new records.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// The wait after a platform failure (log or store), before trying again.
const PLATFORM_BACKOFF: Duration = Duration::from_millis(500);
const TRACEPARENT_HEADER: &str = "traceparent";

/// A service's reaction to events.
pub trait Subscriber: Send + Sync + 'static {
    type Machine: StateMachine;
    /// The consumer group: the service's name.
    const GROUP: &'static str;
    const TOPICS: &'static [&'static str];

    /// The command `event` (from `topic`) calls for; None for events the service ignores; a
    /// rejection for an event it cannot use (retried, then dead-lettered).
    fn command_for(
        &self,
        topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<<Self::Machine as StateMachine>::Command>, Rejection>;
}

pub struct Consumer<L: EventLog, S: Subscriber> {
    pub log: Arc<L>,
    pub engine: Arc<Engine<S::Machine>>,
    pub subscriber: S,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// The platform's record key, which every record must be signed with.
    pub keys: RecordKeys,
}

/// Why an event was not applied.
enum Failure {
    /// The event's fault: counts toward the retry budget, then the dead-letter topic.
    Event(String),
    /// The platform's: wait and try again, without limit.
    Platform(String),
}

/// The consumer was asked to stop.
struct Stopped;

struct Shared<L: EventLog, S: Subscriber> {
    consumer: Consumer<L, S>,
    guard: Guarded,
    /// The (topic, cause) pairs already warned about: a flood of forged records is one
    /// warning per kind, not one per record.
    refusals_reported: Mutex<HashSet<(&'static str, &'static str)>>,
}

impl<L: EventLog, S: Subscriber> Consumer<L, S> {
    /// Consumes every partition of the subscribed topics until `stopped` turns true.
    pub async fn run(self, stopped: watch::Receiver<bool>) {
        let guard = Guarded::new("event log", self.breaker);
        let shared = Arc::new(Shared {
            consumer: self,
            guard,
            refusals_reported: Mutex::new(HashSet::new()),
        });
        let mut tasks = Vec::new();
        for &topic in S::TOPICS {
            let mut waiting = stopped.clone();
            let partitions = loop {
                match shared
                    .guard
                    .call(shared.consumer.log.partitions(topic))
                    .await
                {
                    Ok(count) => break count,
                    Err(error) => {
                        tracing::warn!(group = S::GROUP, topic, %error, "cannot read the topic's partitions; retrying");
                        if wait(
                            &mut waiting,
                            error.retry_after().unwrap_or(PLATFORM_BACKOFF),
                        )
                        .await
                        {
                            return;
                        }
                    }
                }
            };
            for partition in 0..partitions {
                let shared = shared.clone();
                let stopped = stopped.clone();
                tasks.push(tokio::spawn(async move {
                    let _ = shared.consume_partition(topic, partition, stopped).await;
                }));
            }
        }
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(group = S::GROUP, %error, "a consumer task failed");
            }
        }
    }
}

impl<L: EventLog, S: Subscriber> Shared<L, S> {
    async fn consume_partition(
        &self,
        topic: &'static str,
        partition: i32,
        mut stopped: watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let log = &self.consumer.log;
        let mut offset = self
            .platform_call(&mut stopped, "read the committed offset", || {
                log.committed_offset(S::GROUP, topic, partition)
            })
            .await?
            .unwrap_or(0);
        if self.consumer.keys.current().is_none() {
            tracing::info!(
                group = S::GROUP,
                topic,
                partition,
                "waiting for the record signing key"
            );
        }
        let Some(key) = self.consumer.keys.wait(&mut stopped).await else {
            return Err(Stopped);
        };
        tracing::info!(group = S::GROUP, topic, partition, offset, "consuming");
        loop {
            if *stopped.borrow() {
                return Err(Stopped);
            }
            let fetched = tokio::select! {
                fetched = self.guard.call(log.fetch(topic, partition, offset, FETCH_WAIT)) => fetched,
                _ = stopped.changed() => return Err(Stopped),
            };
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(error) => {
                    tracing::warn!(group = S::GROUP, topic, partition, %error, "fetch failed; retrying");
                    if wait(
                        &mut stopped,
                        error.retry_after().unwrap_or(PLATFORM_BACKOFF),
                    )
                    .await
                    {
                        return Err(Stopped);
                    }
                    continue;
                }
            };
            for record in &fetched.records {
                self.handle(topic, partition, record, &key, &mut stopped)
                    .await?;
            }
            if fetched.next_offset != offset {
                let next = fetched.next_offset;
                self.platform_call(&mut stopped, "commit the offset", || {
                    log.commit_offset(S::GROUP, topic, partition, next)
                })
                .await?;
                offset = next;
            }
        }
    }

    /// Applies one record, retrying its own failures with backoff, then dead-lettering it;
    /// a record the platform did not write is dead-lettered at once.
    async fn handle(
        &self,
        topic: &'static str,
        partition: i32,
        record: &ConsumedRecord,
        key: &RecordKey,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        if let Err(refusal) = verify(key, topic, record) {
            self.report_refusal(topic, partition, record.offset, &refusal);
            let reason = format!("refused: not written by this platform's services: {refusal}");
            return self
                .dead_letter(topic, partition, record, &reason, 0, stopped)
                .await;
        }
        let mut attempt = 0;
        loop {
            let reason = match self.apply(topic, record).await {
                Ok(()) => return Ok(()),
                Err(Failure::Platform(error)) => {
                    tracing::warn!(group = S::GROUP, topic, partition, offset = record.offset, %error, "cannot apply an event; retrying");
                    if wait(stopped, PLATFORM_BACKOFF).await {
                        return Err(Stopped);
                    }
                    continue;
                }
                Err(Failure::Event(reason)) => reason,
            };
            attempt += 1;
            match self.consumer.retry.backoff(attempt) {
                Some(delay) => {
                    tracing::info!(group = S::GROUP, topic, partition, offset = record.offset, attempt, %reason, "event failed; retrying");
                    if wait(stopped, delay).await {
                        return Err(Stopped);
                    }
                }
                None => {
                    tracing::warn!(group = S::GROUP, topic, partition, offset = record.offset, attempt, %reason, "event failed every attempt; sending it to the dead-letter topic");
                    return self
                        .dead_letter(topic, partition, record, &reason, attempt, stopped)
                        .await;
                }
            }
        }
    }

    /// Warns about the first refusal of each kind on `topic`; the rest are debug lines.
    fn report_refusal(
        &self,
        topic: &'static str,
        partition: i32,
        offset: i64,
        refusal: &Unverified,
    ) {
        let first = self
            .refusals_reported
            .lock()
            .map(|mut reported| reported.insert((topic, refusal.cause())))
            .unwrap_or(true);
        if first {
            tracing::warn!(group = S::GROUP, topic, partition, offset, cause = refusal.cause(), %refusal,
                "refused a record not written by this platform's services; sending it to the dead-letter topic (further refusals of this kind on this topic are logged at debug level)");
        } else {
            tracing::debug!(group = S::GROUP, topic, partition, offset, cause = refusal.cause(), %refusal,
                "refused a record not written by this platform's services");
        }
    }

    async fn apply(&self, topic: &str, record: &ConsumedRecord) -> Result<(), Failure> {
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| Failure::Event("the record has no value".into()))?;
        let event: EventEnvelope = serde_json::from_slice(value)
            .map_err(|error| Failure::Event(format!("not an event envelope: {error}")))?;
        let Some(command) = self
            .consumer
            .subscriber
            .command_for(topic, &event)
            .map_err(|rejection| Failure::Event(rejection.to_string()))?
        else {
            return Ok(());
        };
        let traceparent = record
            .headers
            .iter()
            .find(|(name, _)| name == TRACEPARENT_HEADER)
            .and_then(|(_, value)| value.as_deref())
            .and_then(|value| std::str::from_utf8(value).ok())
            .map(str::to_string);
        let context = CommandContext {
            correlation_id: event.correlation_id.clone(),
            causation_id: Some(event.id.clone()),
            traceparent,
            consumed_event: Some(event.id.clone()),
        };
        match self.consumer.engine.submit_consumed(command, context).await {
            Ok(Applied::Done(Ok(_)) | Applied::AlreadyApplied) => Ok(()),
            Ok(Applied::Done(Err(rejection))) => Err(Failure::Event(rejection.to_string())),
            Err(error) => Err(Failure::Platform(error.to_string())),
        }
    }

    async fn dead_letter(
        &self,
        topic: &str,
        partition: i32,
        record: &ConsumedRecord,
        reason: &str,
        attempts: u32,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let dlq = format!("{topic}.dlq");
        let mut headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.clone()?)))
            .collect();
        for (name, value) in [
            ("dlq-error", reason.to_string()),
            ("dlq-consumer-group", S::GROUP.to_string()),
            ("dlq-source-topic", topic.to_string()),
            ("dlq-source-partition", partition.to_string()),
            ("dlq-source-offset", record.offset.to_string()),
            ("dlq-attempts", attempts.to_string()),
        ] {
            headers.push((name.to_string(), value.into_bytes()));
        }
        let log = &self.consumer.log;
        self.platform_call(stopped, "write the dead letter", || {
            log.publish_record(PlainRecord {
                topic: &dlq,
                key: record.key.as_deref(),
                value: record.value.as_deref(),
                headers: headers.clone(),
                timestamp_ms: super::time::now_ms(),
            })
        })
        .await
    }

    /// Calls the log through the breaker until it succeeds or the consumer stops.
    async fn platform_call<T, F, Fut>(
        &self,
        stopped: &mut watch::Receiver<bool>,
        what: &str,
        mut call: F,
    ) -> Result<T, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, super::event_log::EventLogError>>,
    {
        loop {
            match self.guard.call(call()).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    tracing::warn!(group = S::GROUP, %error, "cannot {what}; retrying");
                    if wait(stopped, error.retry_after().unwrap_or(PLATFORM_BACKOFF)).await {
                        return Err(Stopped);
                    }
                }
            }
        }
    }
}

/// Whether `record` carries the platform's signature of itself on `topic`.
fn verify(key: &RecordKey, topic: &str, record: &ConsumedRecord) -> Result<(), Unverified> {
    let header = record
        .headers
        .iter()
        .find(|(name, _)| name == SIGNATURE_HEADER)
        .and_then(|(_, value)| value.as_deref());
    key.verify(
        SignedRecord {
            topic,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
        },
        header,
    )
}

/// Sleeps `delay` unless stopped first; true when stopped.
async fn wait(stopped: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}
