//! The `EventLog` port: what services need from a log of events. Services never name the
//! broker; the composition root implements this over the built-in broker's in-process client
//! (or, later, an external Kafka).

use std::future::Future;

/// One outbox event on its way to a topic.
#[derive(Debug, Clone)]
pub struct PublishedEvent<'a> {
    pub topic: &'a str,
    /// The aggregate id.
    pub key: &'a str,
    /// From [`EventLog::partition_for`] the key: one aggregate's events stay in order.
    pub partition: i32,
    /// The JSON envelope.
    pub value: &'a [u8],
    pub timestamp_ms: i64,
    /// The publishing service's fixed producer id (idempotent producer).
    pub producer_id: i64,
    /// The producer sequence on this partition (Kafka numbers a producer's batches per
    /// partition, from 0, without gaps), so an idempotent broker drops a re-send.
    pub sequence: i32,
    /// The event's outbox sequence: how a restarted relay finds what already reached the
    /// topic (carried in the record, e.g. as a header).
    pub outbox_seq: u64,
    /// W3C trace context of the request that caused the event, carried as a record header.
    pub traceparent: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
#[error("event log: {0}")]
pub struct EventLogError(pub String);

pub trait EventLog: Send + Sync + 'static {
    /// The partition of `topic` that events keyed `key` go to (the topic is created if
    /// missing). Stable while the partition count is.
    fn partition_for(
        &self,
        topic: &str,
        key: &str,
    ) -> impl Future<Output = Result<i32, EventLogError>> + Send;

    /// Appends one event to its topic (created if missing). Returns once it is durable as the
    /// log defines it.
    fn publish(
        &self,
        event: PublishedEvent<'_>,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;

    /// The highest outbox sequence `producer_id` has on `topic`, looking at the tail: what a
    /// relay that crashed between publishing and marking must not publish again.
    fn last_published(
        &self,
        topic: &str,
        producer_id: i64,
    ) -> impl Future<Output = Result<Option<u64>, EventLogError>> + Send;
}
