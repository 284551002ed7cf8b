//! The services' `EventLog` port over a cluster's replicated topics, through the broker
//! crate's Kafka wire client: what `BrokerEventLog` does in process on one node, done over
//! the Kafka protocol so that it works from any node of a cluster (or against any Kafka).
//!
//! The records are the same as `BrokerEventLog`'s (`event_log::outbox_record`): an outbox
//! event is a one-record v2 batch stamped with the service's fixed producer id, epoch 0 and
//! the relay's sequence, with the `outbox-seq` and `traceparent` headers; partitions are
//! chosen with Kafka's murmur2 partitioner. Publishing is idempotent across a leader change:
//! the client re-sends the same batch to the new leader, which holds the producer state of
//! every batch the old one committed and answers a re-send with the stored offset.
//! The consuming side is in `cluster_event_consume.rs`.

use crate::event_log::{outbox_record, partition_for, tail_read, tail_windows};
use commerce_broker::client::{ClientConfig, ClientError, IsolationLevel, KafkaClient, OffsetSpec};
use commerce_broker::record_batch;
use commerce_services::platform::{EventLog, EventLogError, Fetched, PlainRecord, PublishedEvent};
use kafka_protocol::records::Record;
use std::time::Duration;

/// How long one request (a produce's replication included) may take before it is sent
/// again, to the partition's leader as then known. Shorter than a Kafka client's 30 s: the
/// services' relays publish one event after another and a saga step waits 30 s for its
/// reply, so one request held by a node that was cut off or paused must not hold up every
/// event behind it that long (a re-send is idempotent).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes asked for per fetch (the broker returns at least one whole batch).
pub(crate) const FETCH_BYTES: i32 = 1024 * 1024;

#[derive(Clone)]
pub struct ClusterEventLog {
    pub(crate) client: KafkaClient,
}

impl ClusterEventLog {
    /// An event log on the cluster `bootstrap` names: Kafka addresses, comma-separated
    /// (`"n1:9092,n2:9092,n3:9092"`). Connects on first use.
    pub fn connect(bootstrap: &str) -> Result<ClusterEventLog, EventLogError> {
        let mut config = ClientConfig::from_list(bootstrap);
        config.request_timeout = REQUEST_TIMEOUT;
        ClusterEventLog::with_config(config)
    }

    /// An event log with the client configured as given (timeouts, retry deadline).
    pub fn with_config(config: ClientConfig) -> Result<ClusterEventLog, EventLogError> {
        Ok(ClusterEventLog {
            client: KafkaClient::new(config).map_err(error)?,
        })
    }

    #[cfg(test)]
    pub fn client(&self) -> &KafkaClient {
        &self.client
    }

    /// Produces `record` as its own batch.
    pub(crate) async fn produce_record(
        &self,
        topic: &str,
        partition: i32,
        record: Record,
    ) -> Result<(), EventLogError> {
        let batch =
            record_batch::encode_uncompressed(std::slice::from_ref(&record)).map_err(|encode| {
                EventLogError(format!("cannot encode a record for {topic}: {encode}"))
            })?;
        self.client
            .produce(topic, partition, batch.freeze())
            .await
            .map_err(error)?;
        Ok(())
    }

    /// The partition count of `topic`, created if missing.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<i32, EventLogError> {
        Ok(self.client.ensure_topic(topic).await.map_err(error)?.max(1))
    }

    /// The highest `outbox-seq` of `producer_id`'s records in the partition, scanning back
    /// from the high watermark in windows and stopping at the first window that has any.
    async fn scan_tail(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
    ) -> Result<Option<u64>, EventLogError> {
        let end = self
            .client
            .list_offset(topic, partition, OffsetSpec::Latest)
            .await
            .map_err(error)?;
        if end <= 0 {
            return Ok(None);
        }
        let start = self
            .client
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await
            .map_err(error)?;
        for (from, upper) in tail_windows(start, end) {
            let mut best: Option<u64> = None;
            let mut offset = from;
            while offset < upper {
                let fetched = self
                    .client
                    .fetch(
                        topic,
                        partition,
                        offset,
                        Duration::ZERO,
                        FETCH_BYTES,
                        IsolationLevel::ReadUncommitted,
                    )
                    .await
                    .map_err(error)?;
                if fetched.records.is_empty() {
                    break;
                }
                let (found, next) = tail_read(topic, fetched.records, producer_id, offset, upper)?;
                best = best.max(found);
                if next <= offset {
                    break;
                }
                offset = next;
            }
            if best.is_some() {
                return Ok(best);
            }
        }
        Ok(None)
    }
}

impl EventLog for ClusterEventLog {
    async fn partition_for(&self, topic: &str, key: &str) -> Result<i32, EventLogError> {
        let partitions = self.partition_count(topic).await?;
        Ok(partition_for(key.as_bytes(), partitions))
    }

    async fn publish(&self, event: PublishedEvent<'_>) -> Result<(), EventLogError> {
        self.client.ensure_topic(event.topic).await.map_err(error)?;
        let record = outbox_record(&event);
        self.produce_record(event.topic, event.partition, record)
            .await
    }

    async fn last_published(
        &self,
        topic: &str,
        producer_id: i64,
    ) -> Result<Option<u64>, EventLogError> {
        let Some(partitions) = self.client.partition_count(topic).await.map_err(error)? else {
            return Ok(None);
        };
        let mut last: Option<u64> = None;
        for partition in 0..partitions.max(1) {
            let found = self.scan_tail(topic, partition, producer_id).await?;
            last = last.max(found);
        }
        Ok(last)
    }

    async fn partitions(&self, topic: &str) -> Result<i32, EventLogError> {
        self.partition_count(topic).await
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<Fetched, EventLogError> {
        self.fetch_records(topic, partition, offset, max_wait).await
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, EventLogError> {
        self.client
            .committed_offset(group, topic, partition)
            .await
            .map_err(error)
    }

    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), EventLogError> {
        self.client
            .commit_offset(group, topic, partition, offset)
            .await
            .map_err(error)
    }

    async fn publish_record(&self, record: PlainRecord<'_>) -> Result<(), EventLogError> {
        self.append_plain(record).await
    }
}

pub(crate) fn error(client: ClientError) -> EventLogError {
    EventLogError(client.to_string())
}

#[cfg(test)]
#[path = "cluster_event_log_tests.rs"]
mod tests;
