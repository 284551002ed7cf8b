//! The consuming half of the services' `EventLog` over the built-in broker, in process:
//! reading a partition as a read_committed Kafka consumer would (up to the last stable offset,
//! without transaction markers or aborted records), the broker's own consumer-group offsets
//! (the same ones `OffsetCommit`/`OffsetFetch` serve, so Kafka tools show a service's lag), and
//! plain appends for dead letters.

use crate::event_log::{BrokerEventLog, error, partition_for};
use bytes::Bytes;
use commerce_broker::group::commit::{Commit, PartitionCommit};
use commerce_broker::record_batch;
use commerce_services::platform::{ConsumedRecord, EventLogError, Fetched, PlainRecord};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use std::time::Duration;

/// Bytes read per fetch (at least one whole batch).
const FETCH_BYTES: usize = 1024 * 1024;
/// The wait when records exist but an open transaction hides them (the log end moved, the
/// last stable offset did not), so the consumer does not spin.
const UNSTABLE_WAIT: Duration = Duration::from_millis(100);

impl BrokerEventLog {
    pub(crate) async fn fetch_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<Fetched, EventLogError> {
        self.log.ensure_topic(topic).map_err(error)?;
        let log = self.broker.partition(topic, partition).map_err(error)?;
        // Retention may have removed what the group had not read yet: go on from what is left.
        let offset = offset.max(log.log_start_offset());
        if log.last_stable_offset() <= offset {
            let mut end = log.subscribe();
            let _ = tokio::time::timeout(max_wait, end.wait_for(|end| *end > offset)).await;
        }
        let stable = log.last_stable_offset();
        if stable <= offset {
            if log.high_watermark() > offset {
                tokio::time::sleep(UNSTABLE_WAIT).await;
            }
            return Ok(Fetched {
                records: Vec::new(),
                next_offset: offset,
            });
        }
        let read = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.read_below(offset, FETCH_BYTES, true, stable))
                .await
                .map_err(|join| EventLogError(join.to_string()))?
                .map_err(error)?
        };
        let aborted = log.aborted_between(offset, stable);
        let mut bytes = read.bytes;
        let sets = RecordBatchDecoder::decode_all(&mut bytes)
            .map_err(|decode| EventLogError(format!("cannot decode {topic}: {decode}")))?;
        let mut next_offset = offset;
        let mut records = Vec::new();
        for record in sets.into_iter().flat_map(|set| set.records) {
            // A read starts at the batch holding `offset`; the last batch may reach past the
            // stable offset only if it started below it, which a transaction's cannot.
            if record.offset < offset || record.offset >= stable {
                continue;
            }
            next_offset = next_offset.max(record.offset + 1);
            let in_aborted = record.transactional
                && aborted.iter().any(|txn| {
                    txn.producer_id == record.producer_id
                        && (txn.first_offset..=txn.last_offset).contains(&record.offset)
                });
            if record.control || in_aborted {
                continue;
            }
            records.push(consumed(record));
        }
        Ok(Fetched {
            records,
            next_offset,
        })
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.broker
            .groups()
            .fetch_offsets(group)
            .get(&(topic.to_string(), partition))
            .map(|committed| committed.offset)
    }

    /// A "simple" commit (no member, no generation), as admin tools and manually assigned
    /// consumers make.
    pub(crate) async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), EventLogError> {
        let commit = Commit {
            group_id: group.to_string(),
            member_id: String::new(),
            instance_id: None,
            generation: -1,
            offsets: vec![PartitionCommit {
                topic: topic.to_string(),
                partition,
                offset,
                leader_epoch: -1,
                metadata: String::new(),
            }],
        };
        let broker = self.broker.clone();
        // The commit appends to __consumer_offsets, which may fsync.
        let results = tokio::task::spawn_blocking(move || broker.groups().commit(&broker, commit))
            .await
            .map_err(|join| EventLogError(join.to_string()))?;
        match results.into_iter().flatten().next() {
            None => Ok(()),
            Some(refused) => Err(EventLogError(format!(
                "the group coordinator refused the commit of {group}: {refused:?}"
            ))),
        }
    }

    pub(crate) async fn append_plain(&self, plain: PlainRecord<'_>) -> Result<(), EventLogError> {
        let partition = match plain.key {
            Some(key) => partition_for(key, self.partition_count(plain.topic)?),
            None => {
                self.log.ensure_topic(plain.topic).map_err(error)?;
                0
            }
        };
        let topic = plain.topic;
        self.append_record(topic, partition, plain_record(plain))
            .await
    }
}

/// A plain record (no producer id: a non-idempotent append), as both event logs write dead
/// letters.
pub(crate) fn plain_record(plain: PlainRecord<'_>) -> Record {
    let headers = plain
        .headers
        .into_iter()
        .map(|(name, value)| (StrBytes::from_string(name), Some(Bytes::from(value))))
        .collect();
    Record {
        headers,
        ..record_batch::plain_record(
            0,
            plain.timestamp_ms,
            plain.key.map(Bytes::copy_from_slice),
            plain.value.map(Bytes::copy_from_slice),
        )
    }
}

/// A decoded record as a consumer receives it.
pub(crate) fn consumed(record: Record) -> ConsumedRecord {
    ConsumedRecord {
        offset: record.offset,
        key: record.key.map(|key| key.to_vec()),
        value: record.value.map(|value| value.to_vec()),
        headers: record
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.map(|value| value.to_vec())))
            .collect(),
    }
}
