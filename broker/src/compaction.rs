//! Log compaction for `cleanup.policy=compact` topics: keep only the latest record of every
//! key, as Kafka's log cleaner does.
//!
//! From the node's maintenance tick, for each compacted partition whose sealed segments
//! changed since its last cleaning (or that holds a tombstone about to expire):
//! 1. build the offset map: key -> offset of its latest record, over the whole log up to the
//!    high watermark (so a newer value in the active segment already supersedes older ones);
//! 2. rewrite each sealed segment through the storage log's crash-safe `rewrite_segment`,
//!    keeping a record only if it is the latest for its key; a latest record that is a
//!    tombstone (null value) goes too once it is older than `delete.retention.ms`, giving
//!    consumers that time to see the delete. Records without a key and control batches are
//!    kept. Batches that lose records are re-encoded with the survivors — same offsets,
//!    timestamps, producer id/epoch/sequence, leader epoch and compression; untouched
//!    batches are kept byte for byte. The active segment is never touched.
//!
//! The storage log stays Kafka-agnostic: it only swaps batches for batches; the knowledge of
//! keys, values and tombstones lives here.

use crate::broker::Broker;
use crate::error::Result;
use crate::partition::Partition;
use bytes::Bytes;
use commerce_storage::SealedSegment;
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, RecordSet,
};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How much the offset-map pass reads per call.
const MAP_READ_BYTES: usize = 1 << 20;

/// What the cleaner remembers per partition between ticks.
#[derive(Debug, Clone, Default)]
struct Cleaned {
    /// The sealed segments as the last cleaning left them.
    sealed: Vec<SealedSegment>,
    /// When the oldest tombstone the last cleaning had to keep becomes removable.
    next_tombstone_expiry: Option<i64>,
}

/// The cleaner's state; one per broker.
#[derive(Default)]
pub struct Cleaner {
    cleaned: Mutex<HashMap<(uuid::Uuid, i32), Cleaned>>,
}

impl Cleaner {
    /// Cleans every compacted partition that needs it. Failures are logged; the partition
    /// is retried on a later tick.
    pub fn run(&self, broker: &Broker, now_ms: i64) {
        let topics = broker.topics();
        // Forget deleted topics (and topics no longer compacted).
        self.state().retain(|(id, _), _| {
            topics
                .iter()
                .any(|topic| topic.id == *id && topic.config().is_compacted())
        });
        for topic in topics {
            let config = topic.config();
            if !config.is_compacted() {
                continue;
            }
            let retention = config.delete_retention_ms();
            for partition in &topic.partitions {
                if partition.replica().is_some() {
                    // Rewriting a Raft log's segments under it would change entries
                    // replicas agreed on; compaction of partition groups is not done yet.
                    continue;
                }
                let key = (topic.id, partition.index);
                let sealed = partition.log().sealed_segments();
                let previous = self.state().get(&key).cloned().unwrap_or_default();
                let tombstone_due = previous
                    .next_tombstone_expiry
                    .is_some_and(|expiry| expiry <= now_ms);
                // An empty active segment (only after a crash right after a roll) would let
                // the cleaner empty the log's tail, leaving a fetch there nothing to return.
                let active_has_data = sealed
                    .last()
                    .is_some_and(|last| last.next_offset < partition.high_watermark());
                if !active_has_data || (previous.sealed == sealed && !tombstone_due) {
                    continue;
                }
                match clean_partition(partition, retention, now_ms) {
                    Ok(next_tombstone_expiry) => {
                        let cleaned = Cleaned {
                            sealed: partition.log().sealed_segments(),
                            next_tombstone_expiry,
                        };
                        self.state().insert(key, cleaned);
                    }
                    Err(error) => {
                        tracing::error!(topic = %topic.name, partition = partition.index, %error, "compaction failed")
                    }
                }
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<(uuid::Uuid, i32), Cleaned>> {
        self.cleaned.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Compacts one partition's sealed segments. Returns when the oldest kept tombstone
/// becomes removable, if any was kept.
fn clean_partition(partition: &Partition, retention_ms: i64, now_ms: i64) -> Result<Option<i64>> {
    let latest = offset_map(partition)?;
    let horizon = now_ms.saturating_sub(retention_ms);
    let mut next_expiry: Option<i64> = None;
    let mut removed = 0usize;
    for segment in partition.log().sealed_segments() {
        partition
            .log()
            .rewrite_segment(segment.base_offset, |stored| {
                let Some(set) = decode(stored) else {
                    return Some(stored.to_vec());
                };
                if set.records.first().is_some_and(|record| record.control) {
                    return Some(stored.to_vec());
                }
                let kept: Vec<&Record> = set
                    .records
                    .iter()
                    .filter(|record| {
                        let Some(key) = &record.key else {
                            return true;
                        };
                        if latest.get(key) != Some(&record.offset) {
                            return false;
                        }
                        if record.value.is_none() {
                            if record.timestamp < horizon {
                                return false;
                            }
                            let expiry = record.timestamp.saturating_add(retention_ms);
                            next_expiry = Some(next_expiry.map_or(expiry, |e| e.min(expiry)));
                        }
                        true
                    })
                    .collect();
                removed += set.records.len() - kept.len();
                if kept.len() == set.records.len() {
                    return Some(stored.to_vec());
                }
                if kept.is_empty() {
                    return None;
                }
                encode(&set, kept).or_else(|| Some(stored.to_vec()))
            })?;
    }
    if removed > 0 {
        tracing::info!(topic = %partition.topic, partition = partition.index, removed, "compacted");
    }
    Ok(next_expiry)
}

/// Key -> offset of the latest record with that key, up to the high watermark.
fn offset_map(partition: &Partition) -> Result<HashMap<Bytes, i64>> {
    let mut latest = HashMap::new();
    let mut next = partition.log_start_offset();
    let end = partition.high_watermark();
    while next < end {
        let read = partition.read(next, MAP_READ_BYTES, true)?;
        let mut advanced = false;
        for batch in split_batches(&read.bytes) {
            next = next.max(batch.last_offset + 1);
            advanced = true;
            let Some(set) = decode(batch.bytes) else {
                continue;
            };
            for record in set.records.iter().filter(|record| !record.control) {
                if let Some(key) = &record.key {
                    latest.insert(key.clone(), record.offset);
                }
            }
        }
        if !advanced {
            break;
        }
    }
    Ok(latest)
}

struct RawBatch<'a> {
    bytes: &'a [u8],
    last_offset: i64,
}

/// Splits stored bytes into whole batches by their v2 header (base offset, length, last
/// offset delta); the log hands out whole batches only.
fn split_batches(mut bytes: &[u8]) -> impl Iterator<Item = RawBatch<'_>> {
    std::iter::from_fn(move || {
        let base = i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
        let length = i32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
        let delta = i32::from_be_bytes(bytes.get(23..27)?.try_into().ok()?);
        let size = 12 + usize::try_from(length).ok()?;
        let batch = bytes.get(..size)?;
        bytes = bytes.get(size..)?;
        Some(RawBatch {
            bytes: batch,
            last_offset: base + i64::from(delta),
        })
    })
}

fn decode(stored: &[u8]) -> Option<RecordSet> {
    let mut bytes = Bytes::copy_from_slice(stored);
    match RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => Some(set),
        Err(error) => {
            // An unknown codec, say: such a batch is kept as it is.
            tracing::warn!(%error, "compaction cannot decode a batch; keeping it");
            None
        }
    }
}

/// The survivors as v2 batches with the original compression (the encoder splits them only
/// where the batch-level fields differ, which within one original batch they do not).
fn encode(set: &RecordSet, kept: Vec<&Record>) -> Option<Vec<u8>> {
    // A batch without a producer id has base sequence -1, which the decoder spreads as
    // -1 + delta per record; re-base it on the first survivor so the new batch says -1 too.
    let first_offset = kept.first().map_or(0, |record| record.offset);
    let kept: Vec<Record> = kept
        .into_iter()
        .map(|record| {
            let mut record = record.clone();
            if record.producer_id < 0 {
                let delta = i32::try_from(record.offset - first_offset).unwrap_or(i32::MAX);
                record.sequence = delta.wrapping_sub(1);
            }
            record
        })
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression: set.compression,
    };
    let mut out = Vec::new();
    match RecordBatchEncoder::encode(&mut out, &kept, &options) {
        Ok(()) => Some(out),
        Err(error) => {
            tracing::warn!(%error, "compaction cannot re-encode a batch; keeping it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::topic_name::TopicName;
    use commerce_storage::{FlushPolicy, LogConfig, PartitionLog};
    use kafka_protocol::records::{Compression, TimestampType};

    fn record(key: &str, value: Option<&str>, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        }
    }

    /// One batch as a producer sends it (offsets 0.., sequences -1).
    fn batch(records: &[Record], compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                offset: i as i64,
                ..r.clone()
            })
            .collect();
        let mut out = Vec::new();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        out
    }

    fn all_records(partition: &Partition) -> Vec<Record> {
        let read = partition
            .read(partition.log_start_offset(), usize::MAX, true)
            .unwrap();
        let mut records = Vec::new();
        let mut next = partition.log_start_offset();
        let mut bytes = read.bytes;
        loop {
            for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
                records.extend(set.records);
            }
            next = records.last().map_or(next, |r| r.offset + 1);
            if next >= partition.high_watermark() {
                return records;
            }
            bytes = partition.read(next, usize::MAX, true).unwrap().bytes;
        }
    }

    #[test]
    fn a_batch_losing_records_is_re_encoded_with_the_survivors_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 150,
            segment_ms: None,
            flush: FlushPolicy::Os,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path(), config).unwrap();
        let partition =
            Partition::open(TopicName::parse("t").unwrap(), 0, log, dir.path()).unwrap();
        let first = [
            record("a", Some("a0"), 10),
            record("b", Some("b0"), 11),
            record("c", Some("c0"), 12),
            record("d", None, 13),
        ];
        partition
            .append(&mut batch(&first, Compression::Lz4))
            .unwrap();
        partition
            .append(&mut batch(
                &[record("a", Some("a1"), 20), record("c", None, 21)],
                Compression::None,
            ))
            .unwrap();
        for i in 0..4 {
            let value = format!("z{i}");
            partition
                .append(&mut batch(
                    &[record("z", Some(&value), 30 + i)],
                    Compression::None,
                ))
                .unwrap();
        }
        assert!(partition.log().sealed_segments().len() >= 2);

        // Tombstones with timestamps below 1000 - 985 = 15 are expired: d (13) goes, c (21) stays.
        let expiry = clean_partition(&partition, 985, 1000).unwrap();
        assert_eq!(expiry, Some(21 + 985), "c's tombstone is kept until then");

        let text = |bytes: &Option<Bytes>| {
            bytes
                .as_deref()
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        let kept: Vec<(i64, Option<String>, Option<String>, i64)> = all_records(&partition)
            .iter()
            .map(|r| (r.offset, text(&r.key), text(&r.value), r.timestamp))
            .collect();
        let expected = |offset, key: &str, value: Option<&str>, timestamp| {
            (
                offset,
                Some(key.to_string()),
                value.map(str::to_string),
                timestamp,
            )
        };
        assert_eq!(
            kept[..3],
            [
                expected(1, "b", Some("b0"), 11),
                expected(4, "a", Some("a1"), 20),
                expected(5, "c", None, 21),
            ]
        );
        // Older z values may survive only in the active segment, which is never cleaned.
        assert!(kept[3..].iter().all(|k| k.1.as_deref() == Some("z")));
        assert_eq!(kept.last(), Some(&expected(9, "z", Some("z3"), 33)));
        assert_eq!(partition.high_watermark(), 10, "the log end does not move");
        assert_eq!(partition.log_start_offset(), 0, "nor does the log start");
    }
}
