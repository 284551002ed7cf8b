//! The consuming half of `ClusterEventLog`: reading a partition as a read_committed Kafka
//! consumer does (the broker stops at the last stable offset; transaction markers and the
//! records of aborted transactions are skipped here, as the Java consumer skips them), and
//! plain appends for dead letters. Group offsets go through the client's coordinator calls.

use crate::cluster_event_log::{ClusterEventLog, FETCH_BYTES, error};
use crate::event_consume::{consumed, plain_record};
use crate::event_log::partition_for;
use commerce_broker::client::{AbortedTransaction, IsolationLevel, OffsetSpec};
use commerce_services::platform::{EventLogError, Fetched, PlainRecord};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use std::collections::HashSet;
use std::time::Duration;

/// The wait when records exist but an open transaction hides them (the high watermark
/// moved, the last stable offset did not), so the consumer does not spin.
const UNSTABLE_WAIT: Duration = Duration::from_millis(100);

impl ClusterEventLog {
    pub(crate) async fn fetch_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<Fetched, EventLogError> {
        self.client.ensure_topic(topic).await.map_err(error)?;
        let mut offset = offset;
        let fetched = loop {
            let answer = self
                .client
                .fetch(
                    topic,
                    partition,
                    offset,
                    max_wait,
                    FETCH_BYTES,
                    IsolationLevel::ReadCommitted,
                )
                .await;
            match answer {
                Ok(fetched) => break fetched,
                Err(failed) if failed.kafka_error() == Some(ResponseError::OffsetOutOfRange) => {
                    // Retention may have removed what the group had not read yet: go on from
                    // what is left. Past the end there is nothing to read yet.
                    let start = self
                        .client
                        .list_offset(topic, partition, OffsetSpec::Earliest)
                        .await
                        .map_err(error)?;
                    if offset >= start {
                        tokio::time::sleep(max_wait).await;
                        return Ok(Fetched {
                            records: Vec::new(),
                            next_offset: offset,
                        });
                    }
                    offset = start;
                }
                Err(failed) => return Err(error(failed)),
            }
        };
        let stable = fetched.last_stable_offset;
        if fetched.records.is_empty() {
            if stable <= offset && fetched.high_watermark > offset {
                tokio::time::sleep(UNSTABLE_WAIT).await;
            }
            return Ok(Fetched {
                records: Vec::new(),
                next_offset: offset,
            });
        }
        let mut bytes = fetched.records;
        let sets = RecordBatchDecoder::decode_all(&mut bytes)
            .map_err(|decode| EventLogError(format!("cannot decode {topic}: {decode}")))?;
        let mut skip = AbortedSkipper::new(fetched.aborted);
        let mut next_offset = offset;
        let mut records = Vec::new();
        for record in sets.into_iter().flat_map(|set| set.records) {
            // A fetch starts at the batch holding `offset`; the broker stops at the last
            // stable offset, which only a batch that started below it may reach past.
            if record.offset < offset || (stable >= 0 && record.offset >= stable) {
                continue;
            }
            next_offset = next_offset.max(record.offset + 1);
            if skip.skips(&record) {
                continue;
            }
            records.push(consumed(record));
        }
        Ok(Fetched {
            records,
            next_offset,
        })
    }

    pub(crate) async fn append_plain(&self, plain: PlainRecord<'_>) -> Result<(), EventLogError> {
        let topic = plain.topic;
        let partition = match plain.key {
            Some(key) => partition_for(key, self.partition_count(topic).await?),
            None => {
                self.client.ensure_topic(topic).await.map_err(error)?;
                0
            }
        };
        self.produce_record(topic, partition, plain_record(plain))
            .await
    }
}

/// Which records a read_committed consumer does not see, going through a fetch in offset
/// order: transaction markers, and a producer's transactional records from the first offset
/// of one of its aborted transactions up to the marker that ended it.
struct AbortedSkipper {
    /// Aborted transactions not yet reached, latest first (popped from the end).
    ahead: Vec<AbortedTransaction>,
    /// Producers inside an aborted transaction at the current offset.
    aborting: HashSet<i64>,
}

impl AbortedSkipper {
    fn new(mut aborted: Vec<AbortedTransaction>) -> AbortedSkipper {
        aborted.sort_by_key(|txn| std::cmp::Reverse(txn.first_offset));
        AbortedSkipper {
            ahead: aborted,
            aborting: HashSet::new(),
        }
    }

    fn skips(&mut self, record: &Record) -> bool {
        while self
            .ahead
            .last()
            .is_some_and(|txn| txn.first_offset <= record.offset)
        {
            if let Some(txn) = self.ahead.pop() {
                self.aborting.insert(txn.producer_id);
            }
        }
        if record.control {
            // A marker (commit or abort) ends the producer's transaction.
            self.aborting.remove(&record.producer_id);
            return true;
        }
        record.transactional && self.aborting.contains(&record.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_broker::record_batch;

    fn record(offset: i64, producer_id: i64, transactional: bool, control: bool) -> Record {
        Record {
            offset,
            producer_id,
            transactional,
            control,
            ..record_batch::plain_record(offset, 0, None, None)
        }
    }

    #[test]
    fn aborted_transactions_and_markers_are_skipped_committed_ones_kept() {
        let mut skip = AbortedSkipper::new(vec![AbortedTransaction {
            producer_id: 7,
            first_offset: 1,
        }]);
        let seen: Vec<bool> = [
            record(0, 7, true, false),  // an earlier, committed transaction of 7
            record(1, 7, true, false),  // 7's aborted transaction
            record(2, 8, true, false),  // 8's transaction, committed
            record(3, 9, false, false), // a plain record
            record(4, 7, true, true),   // 7's abort marker
            record(5, 8, true, true),   // 8's commit marker
            record(6, 7, true, false),  // 7's next transaction
        ]
        .iter()
        .map(|record| !skip.skips(record))
        .collect();
        assert_eq!(seen, vec![true, false, true, true, false, false, true]);
    }
}
