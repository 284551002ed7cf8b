//! The state machine of a partition group: what every replica keeps beside the log.
//!
//! The log itself is the group's Raft log (storage writes each entry once, as the batch),
//! so applying an entry only updates what is derived from the batches: the idempotent
//! producers' sequences and the transaction index ([`ProducerState`]), and the watch that
//! wakes long-polling fetches. Every replica applies the same batches in the same order,
//! so a follower that becomes leader already knows every producer's last batches and
//! deduplicates a retry that reaches it after a failover.

use crate::producer::batch_header::{Marker, ProducerBatch, control_marker};
use crate::producer::partition_state::ProducerState;
use commerce_storage::raft::{SnapshotSource, StateMachine};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The answer to a proposed batch: its base and last offset, 8 bytes each, big-endian.
pub(crate) fn encode_answer(base_offset: i64, last_offset: i64) -> Vec<u8> {
    let mut answer = base_offset.to_be_bytes().to_vec();
    answer.extend_from_slice(&last_offset.to_be_bytes());
    answer
}

/// Reads [`encode_answer`]'s bytes.
pub(crate) fn decode_answer(answer: &[u8]) -> Option<(i64, i64)> {
    let (base, rest) = answer.split_first_chunk::<8>()?;
    let (last, _) = rest.split_first_chunk::<8>()?;
    Some((i64::from_be_bytes(*base), i64::from_be_bytes(*last)))
}

/// Told of every transaction marker a replica applies: the producer id, whether it
/// commits, and the marker's offset. The group coordinator watches its offsets partitions
/// this way, since a transaction's offsets become the group's when its marker lands there,
/// whoever wrote the marker. Called on Raft's apply path: it must not block.
pub type MarkerObserver = Arc<dyn Fn(i64, bool, i64) + Send + Sync>;

pub struct PartitionMachine {
    producers: Arc<Mutex<ProducerState>>,
    /// The offset after the last applied batch (committed: apply follows commit).
    applied_end: Arc<watch::Sender<i64>>,
    observer: Option<MarkerObserver>,
}

impl PartitionMachine {
    pub fn new(
        producers: Arc<Mutex<ProducerState>>,
        applied_end: Arc<watch::Sender<i64>>,
    ) -> PartitionMachine {
        PartitionMachine {
            producers,
            applied_end,
            observer: None,
        }
    }

    /// Tells `observer` of each marker applied here.
    pub fn observing_markers(mut self, observer: Option<MarkerObserver>) -> PartitionMachine {
        self.observer = observer;
        self
    }

    fn producers(&self) -> std::sync::MutexGuard<'_, ProducerState> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateMachine for PartitionMachine {
    /// `batch` is the entry as stored: base offset and leader epoch already assigned.
    fn apply(&mut self, _index: u64, batch: &[u8]) -> Vec<u8> {
        let Some(header) = ProducerBatch::parse(batch) else {
            // Storage admits only whole v2 batches; nothing to derive from anything else.
            return Vec::new();
        };
        let base_offset = batch
            .first_chunk::<8>()
            .map(|bytes| i64::from_be_bytes(*bytes))
            .unwrap_or(-1);
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        if header.has_producer() {
            self.producers().record(&header, batch, base_offset);
        }
        if header.control
            && let (Some(observer), Some(marker)) = (&self.observer, control_marker(batch))
        {
            observer(header.producer_id, marker == Marker::Commit, base_offset);
        }
        self.applied_end.send_replace(last_offset + 1);
        encode_answer(base_offset, last_offset)
    }

    fn snapshot_to(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(serde_json::to_writer(out, &*self.producers())?)
    }

    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // The producer state is small: read whole.
        let mut bytes = Vec::new();
        snapshot.read_to_end(&mut bytes)?;
        let restored: ProducerState = if bytes.is_empty() {
            ProducerState::default()
        } else {
            serde_json::from_slice(&bytes)?
        };
        *self.producers() = restored;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::producer::partition_state::Verdict;

    /// A producer's batch as stored at `base_offset`: header fields at their v2 positions.
    fn stored_batch(
        base_offset: i64,
        producer_id: i64,
        base_sequence: i32,
        records: i32,
    ) -> Vec<u8> {
        let mut batch = vec![0u8; 61];
        batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
        batch[8..12].copy_from_slice(&49i32.to_be_bytes());
        batch[16] = 2;
        batch[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        batch[51..53].copy_from_slice(&0i16.to_be_bytes());
        batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        batch[57..61].copy_from_slice(&records.to_be_bytes());
        batch
    }

    #[test]
    fn applied_batches_make_a_retry_a_duplicate_on_every_replica() {
        let producers = Arc::new(Mutex::new(ProducerState::default()));
        let (end, watcher) = watch::channel(0);
        let mut machine = PartitionMachine::new(producers.clone(), Arc::new(end));
        let answer = machine.apply(1, &stored_batch(10, 7, 0, 3));
        assert_eq!(decode_answer(&answer), Some((10, 12)));
        assert_eq!(*watcher.borrow(), 13);
        // The producer retries the batch (base offset 0 as a producer sends it).
        let verdict = producers
            .lock()
            .unwrap()
            .admit(&stored_batch(0, 7, 0, 3))
            .unwrap();
        assert_eq!(
            verdict,
            Verdict::Duplicate {
                base_offset: 10,
                last_offset: 12
            }
        );
        // A replica restored from the snapshot knows it too.
        let mut snapshot = Vec::new();
        machine.snapshot_to(&mut snapshot).unwrap();
        let other = Arc::new(Mutex::new(ProducerState::default()));
        let (end, _) = watch::channel(0);
        let mut restored = PartitionMachine::new(other.clone(), Arc::new(end));
        restored
            .restore_from(&mut std::io::Cursor::new(&snapshot))
            .unwrap();
        let verdict = other
            .lock()
            .unwrap()
            .admit(&stored_batch(0, 7, 0, 3))
            .unwrap();
        assert!(matches!(verdict, Verdict::Duplicate { .. }));
        let next = other
            .lock()
            .unwrap()
            .admit(&stored_batch(0, 7, 3, 1))
            .unwrap();
        assert!(matches!(next, Verdict::Producer(_)));
    }
}
