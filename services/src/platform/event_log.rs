//! The `EventLog` port: what services need from a log of events. Services never name the
//! broker; the composition root implements this over the built-in broker's in-process client
//! (or, later, an external Kafka).
//!
//! Publishing side: `partition_for`, `publish` (idempotent, from the outbox relay),
//! `last_published`. Consuming side: `partitions`, `fetch` (committed records only, as a
//! read_committed Kafka consumer sees them), the group's committed offsets
//! (`committed_offset` / `commit_offset`, Kafka's consumer-group offsets), and
//! `publish_record` for plain records such as dead letters.

use std::future::Future;
use std::time::Duration;

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
    /// The `commerce-signature` header's value (see `record_signature`): how consumers know
    /// the platform wrote the record.
    pub signature: &'a str,
}

/// One record as a consumer receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What one fetch returned: the records, and the offset to fetch next (past records the
/// consumer must not see, such as transaction markers and aborted records).
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub records: Vec<ConsumedRecord>,
    pub next_offset: i64,
}

/// A plain record to append (no idempotent producer): dead letters.
#[derive(Debug, Clone)]
pub struct PlainRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: i64,
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

    /// The partition count of `topic`, created if missing.
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<i32, EventLogError>> + Send;

    /// Committed records of `topic`/`partition` from `offset`, waiting up to `max_wait` for
    /// some when there are none yet. An offset below the log start is read from the log
    /// start (retention removed what was there).
    fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> impl Future<Output = Result<Fetched, EventLogError>> + Send;

    /// The offset `group` committed for `topic`/`partition` (the next one to consume).
    fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, EventLogError>> + Send;

    /// Commits `offset` (the next one to consume) for `group` on `topic`/`partition`.
    fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;

    /// Appends one plain record (keyed records go where `partition_for` says).
    fn publish_record(
        &self,
        record: PlainRecord<'_>,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;
}
