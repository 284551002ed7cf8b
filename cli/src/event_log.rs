//! The services' `EventLog` port over the built-in broker's in-process client (`LocalLog`):
//! an outbox event becomes a one-record v2 batch stamped with the service's fixed producer id,
//! epoch 0 and the relay's producer sequence for the partition (so the broker's
//! idempotent-producer check can drop a re-send), plus an `outbox-seq` header, which is how a restarted relay reads back from the
//! topic's tail what it already published. Partitions are chosen as Kafka's Java client does
//! (murmur2 of the key), so one aggregate's events stay in order on one partition.

use bytes::Bytes;
use commerce_broker::record_batch;
use commerce_broker::{Broker, LocalLog};
use commerce_services::platform::record_signature::SIGNATURE_HEADER;
use commerce_services::platform::{EventLog, EventLogError, Fetched, PlainRecord, PublishedEvent};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use std::sync::Arc;
use std::time::Duration;

const OUTBOX_SEQ_HEADER: &str = "outbox-seq";
const TRACEPARENT_HEADER: &str = "traceparent";
/// Offsets read per step when scanning a partition's tail backwards (both event logs).
const TAIL_WINDOW: i64 = 256;
/// How far back the tail scan goes at most: the relay marks each event right after publishing
/// it, so its last batch is near the end unless other producers wrote a great deal since.
const TAIL_LIMIT: i64 = 1_000_000;

#[derive(Clone)]
pub struct BrokerEventLog {
    pub(crate) log: LocalLog,
    pub(crate) broker: Arc<Broker>,
}

impl BrokerEventLog {
    /// Appends one record as its own batch. The append may fsync: it runs off the async
    /// workers.
    pub(crate) async fn append_record(
        &self,
        topic: &str,
        partition: i32,
        record: Record,
    ) -> Result<(), EventLogError> {
        let mut batch =
            record_batch::encode_uncompressed(std::slice::from_ref(&record)).map_err(|encode| {
                EventLogError(format!("cannot encode a record for {topic}: {encode}"))
            })?;
        let (log, topic) = (self.log.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || log.append(&topic, partition, &mut batch))
            .await
            .map_err(|join| EventLogError(join.to_string()))?
            .map_err(error)?;
        Ok(())
    }

    pub fn new(broker: Arc<Broker>) -> BrokerEventLog {
        BrokerEventLog {
            log: LocalLog::new(broker.clone()),
            broker,
        }
    }

    pub(crate) fn partition_count(&self, topic: &str) -> Result<i32, EventLogError> {
        self.log.ensure_topic(topic).map_err(error)?;
        let count = self
            .broker
            .topic(topic)
            .map(|topic| topic.partitions.len())
            .unwrap_or(1);
        Ok(i32::try_from(count).unwrap_or(1).max(1))
    }
}

impl EventLog for BrokerEventLog {
    async fn partition_for(&self, topic: &str, key: &str) -> Result<i32, EventLogError> {
        let partitions = self.partition_count(topic)?;
        Ok(partition_for(key.as_bytes(), partitions))
    }

    async fn publish(&self, event: PublishedEvent<'_>) -> Result<(), EventLogError> {
        let partition = event.partition;
        self.log.ensure_topic(event.topic).map_err(error)?;
        let record = outbox_record(&event);
        self.append_record(event.topic, partition, record).await
    }

    async fn last_published(
        &self,
        topic: &str,
        producer_id: i64,
    ) -> Result<Option<u64>, EventLogError> {
        if self.broker.topic(topic).is_none() {
            return Ok(None);
        }
        let partitions = self.partition_count(topic)?;
        let mut last: Option<u64> = None;
        for partition in 0..partitions {
            let found = self.scan_tail(topic, partition, producer_id)?;
            last = last.max(found);
        }
        Ok(last)
    }

    // The consuming side lives in event_consume.rs.

    async fn partitions(&self, topic: &str) -> Result<i32, EventLogError> {
        self.partition_count(topic)
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
        Ok(self.committed(group, topic, partition))
    }

    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), EventLogError> {
        self.commit(group, topic, partition, offset).await
    }

    async fn publish_record(&self, record: PlainRecord<'_>) -> Result<(), EventLogError> {
        self.append_plain(record).await
    }
}

impl BrokerEventLog {
    /// The highest `outbox-seq` of `producer_id`'s records in the partition, scanning back
    /// from the end in windows and stopping at the first window that has any.
    fn scan_tail(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
    ) -> Result<Option<u64>, EventLogError> {
        let end = *self
            .log
            .subscribe(topic, partition)
            .map_err(error)?
            .borrow();
        if end <= 0 {
            return Ok(None);
        }
        let start = self
            .log
            .read(topic, partition, end - 1, 1)
            .map_err(error)?
            .log_start_offset;
        for (from, upper) in tail_windows(start, end) {
            let mut best: Option<u64> = None;
            let mut offset = from;
            while offset < upper {
                let read = self
                    .log
                    .read(topic, partition, offset, 1024 * 1024)
                    .map_err(error)?;
                if read.bytes.is_empty() {
                    break;
                }
                let (found, next) = tail_read(topic, read.bytes, producer_id, offset, upper)?;
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

/// An outbox event as the record both event logs publish: stamped with the service's
/// producer id, epoch 0 and the relay's sequence, with the `outbox-seq` header (how a
/// restarted relay finds what it published), the trace context and the platform's
/// `commerce-signature`.
pub(crate) fn outbox_record(event: &PublishedEvent<'_>) -> Record {
    let mut headers = indexmap::IndexMap::new();
    headers.insert(
        StrBytes::from_static_str(OUTBOX_SEQ_HEADER),
        Some(Bytes::from(event.outbox_seq.to_string())),
    );
    if let Some(traceparent) = event.traceparent {
        headers.insert(
            StrBytes::from_static_str(TRACEPARENT_HEADER),
            Some(Bytes::from(traceparent.to_string())),
        );
    }
    headers.insert(
        StrBytes::from_static_str(SIGNATURE_HEADER),
        Some(Bytes::from(event.signature.to_string())),
    );
    Record {
        producer_id: event.producer_id,
        producer_epoch: 0,
        sequence: event.sequence,
        headers,
        ..record_batch::plain_record(
            0,
            event.timestamp_ms,
            Some(Bytes::from(event.key.to_string())),
            Some(Bytes::copy_from_slice(event.value)),
        )
    }
}

/// The windows a tail scan reads, newest first: `(from, upper)` offset ranges going back
/// from `end` to `start` in steps of [`TAIL_WINDOW`], no further than [`TAIL_LIMIT`].
pub(crate) fn tail_windows(start: i64, end: i64) -> impl Iterator<Item = (i64, i64)> {
    std::iter::successors(Some(end), move |upper| {
        Some((upper - TAIL_WINDOW).max(start))
    })
    .take_while(move |upper| *upper > start && end - upper < TAIL_LIMIT)
    .map(move |upper| ((upper - TAIL_WINDOW).max(start), upper))
}

/// What one read of a tail window holds: the highest `outbox-seq` of `producer_id`'s
/// records below `upper`, and the offset after the last record read (where the next read
/// of the window starts).
pub(crate) fn tail_read(
    topic: &str,
    mut bytes: Bytes,
    producer_id: i64,
    offset: i64,
    upper: i64,
) -> Result<(Option<u64>, i64), EventLogError> {
    let sets = RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|decode| EventLogError(format!("cannot decode {topic}: {decode}")))?;
    let mut best = None;
    let mut next = offset;
    for record in sets.iter().flat_map(|set| set.records.iter()) {
        next = next.max(record.offset + 1);
        if record.producer_id == producer_id && record.offset < upper {
            best = best.max(outbox_seq(record));
        }
    }
    Ok((best, next))
}

/// The `outbox-seq` header of a record, if it has a readable one.
pub(crate) fn outbox_seq(record: &Record) -> Option<u64> {
    record
        .headers
        .get(OUTBOX_SEQ_HEADER.as_bytes())
        .and_then(|value| value.as_ref())
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| value.parse::<u64>().ok())
}

pub(crate) fn error(broker: commerce_broker::BrokerError) -> EventLogError {
    EventLogError(broker.to_string())
}

/// Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`.
pub(crate) fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2(key) & 0x7fff_ffff;
    i32::try_from(hash).unwrap_or(0) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h = SEED ^ u32::try_from(length).unwrap_or(u32::MAX);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = chunk
            .iter()
            .rev()
            .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if let Some(byte) = rest.get(2) {
        h ^= u32::from(*byte) << 16;
    }
    if let Some(byte) = rest.get(1) {
        h ^= u32::from(*byte) << 8;
    }
    if let Some(byte) = rest.first() {
        h ^= u32::from(*byte);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_windows_go_back_from_the_end_to_the_start_in_steps() {
        let windows: Vec<(i64, i64)> = tail_windows(100, 700).collect();
        assert_eq!(windows, vec![(444, 700), (188, 444), (100, 188)]);
        assert_eq!(tail_windows(5, 5).count(), 0);
        // No further back than the limit below the end.
        let far = tail_windows(0, 3 * TAIL_LIMIT).last();
        assert!(far.is_some_and(|(_, upper)| 3 * TAIL_LIMIT - upper < TAIL_LIMIT));
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), (-973_932_308i32).cast_unsigned());
        assert_eq!(murmur2(b"foobar"), (-790_332_482i32).cast_unsigned());
        assert_eq!(
            murmur2(b"a-little-bit-long-string"),
            (-985_981_536i32).cast_unsigned()
        );
        assert_eq!(
            murmur2(b"a-little-bit-longer-string"),
            (-1_486_304_829i32).cast_unsigned()
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            (-58_897_971i32).cast_unsigned()
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }
}
