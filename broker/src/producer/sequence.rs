//! Per-partition idempotence: for each producer id, its current epoch and the last five
//! batches it wrote here (Kafka keeps five because a producer has at most five requests in
//! flight, so any retry it can send is one of them). A pure state machine: `check` decides,
//! `record` remembers what was appended; the partition holds its lock across both and the
//! append in between, so two retries of one batch cannot both get in.

use super::batch_header::ProducerBatch;
use super::error::ProducerError;
use std::collections::{HashMap, VecDeque};

/// How many recent batches per producer are remembered for duplicate detection.
pub const RETAINED_BATCHES: usize = 5;

/// Where a batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// The verdict on a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// New data in order: append it.
    Append,
    /// A retry of a batch already in the log: answer with where it went, append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerSequences {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerSequences {
    /// Decides whether `batch` (which has a producer id) may be appended.
    pub fn check(&self, batch: &ProducerBatch) -> Result<Admission, ProducerError> {
        let entry = self.producers.get(&batch.producer_id);
        // A stale epoch is INVALID_PRODUCER_EPOCH for every producer, transactional or not,
        // as Kafka's partition leaders answer since 2.7 (KIP-588): PRODUCER_FENCED is the
        // coordinator's answer. Clients rely on the difference: librdkafka takes
        // INVALID_PRODUCER_EPOCH on a produce for fencing (fatal), but PRODUCER_FENCED there
        // only for a failed transaction to abort, so a fenced producer's commit would not
        // fail fatally.
        if let Some(entry) = entry
            && batch.producer_epoch < entry.epoch
        {
            return Err(ProducerError::InvalidProducerEpoch);
        }
        // Markers carry no sequence; only the epoch matters for them.
        if batch.control {
            return Ok(Admission::Append);
        }
        let last = entry
            .filter(|entry| entry.epoch == batch.producer_epoch)
            .and_then(|entry| {
                let duplicate = entry.batches.iter().find(|meta| {
                    meta.first_sequence == batch.base_sequence
                        && meta.last_sequence == batch.last_sequence()
                });
                duplicate.map(Err).or(entry.batches.back().map(Ok))
            });
        match last {
            Some(Err(duplicate)) => Ok(Admission::Duplicate {
                base_offset: duplicate.base_offset,
                last_offset: duplicate.last_offset,
            }),
            Some(Ok(last)) => {
                let expected = next_sequence(last.last_sequence);
                if batch.base_sequence == expected {
                    Ok(Admission::Append)
                } else {
                    Err(ProducerError::OutOfOrderSequence {
                        expected,
                        got: batch.base_sequence,
                    })
                }
            }
            // A new producer, a new epoch, or an epoch only markers have touched: sequences
            // start over at zero.
            None if batch.base_sequence == 0 => Ok(Admission::Append),
            None => Err(ProducerError::OutOfOrderSequence {
                expected: 0,
                got: batch.base_sequence,
            }),
        }
    }

    /// Remembers an appended batch (also used when rebuilding from the log).
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: i64, last_offset: i64) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if batch.control {
            return;
        }
        entry.batches.push_back(BatchMeta {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
            last_offset,
        });
        while entry.batches.len() > RETAINED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// The epoch last seen for a producer here.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|entry| entry.epoch)
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn batch(producer_id: i64, epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch: epoch,
            base_sequence: first,
            last_offset_delta: count - 1,
            transactional: false,
            control: false,
        }
    }

    /// Checks and, if admitted, records at `offset`; returns the verdict.
    fn offer(
        state: &mut ProducerSequences,
        batch: ProducerBatch,
        offset: i64,
    ) -> Result<Admission, ProducerError> {
        let admission = state.check(&batch)?;
        if admission == Admission::Append {
            state.record(&batch, offset, offset + i64::from(batch.last_offset_delta));
        }
        Ok(admission)
    }

    #[test]
    fn in_order_batches_are_appended() {
        let mut state = ProducerSequences::default();
        assert_eq!(
            offer(&mut state, batch(7, 0, 0, 3), 0),
            Ok(Admission::Append)
        );
        assert_eq!(
            offer(&mut state, batch(7, 0, 3, 2), 3),
            Ok(Admission::Append)
        );
    }

    #[test]
    fn a_retry_of_any_of_the_last_five_batches_is_a_duplicate() {
        let mut state = ProducerSequences::default();
        for n in 0..6 {
            offer(&mut state, batch(7, 0, n * 2, 2), i64::from(n) * 10).unwrap();
        }
        // Batch 0 fell out of the window; batches 1..=5 are remembered.
        assert_eq!(
            offer(&mut state, batch(7, 0, 2, 2), 99),
            Ok(Admission::Duplicate {
                base_offset: 10,
                last_offset: 11
            })
        );
        assert_eq!(
            offer(&mut state, batch(7, 0, 10, 2), 99),
            Ok(Admission::Duplicate {
                base_offset: 50,
                last_offset: 51
            })
        );
        assert!(matches!(
            offer(&mut state, batch(7, 0, 0, 2), 99),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn a_gap_is_out_of_order() {
        let mut state = ProducerSequences::default();
        offer(&mut state, batch(7, 0, 0, 2), 0).unwrap();
        assert_eq!(
            offer(&mut state, batch(7, 0, 3, 1), 2),
            Err(ProducerError::OutOfOrderSequence {
                expected: 2,
                got: 3
            })
        );
    }

    #[test]
    fn an_unknown_producer_must_start_at_zero() {
        let mut state = ProducerSequences::default();
        assert!(matches!(
            offer(&mut state, batch(7, 0, 5, 1), 0),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn an_older_epoch_is_refused_and_a_new_epoch_starts_at_zero() {
        let mut state = ProducerSequences::default();
        offer(&mut state, batch(7, 1, 0, 4), 0).unwrap();
        assert_eq!(
            offer(&mut state, batch(7, 0, 4, 1), 4),
            Err(ProducerError::InvalidProducerEpoch)
        );
        let mut transactional = batch(7, 0, 4, 1);
        transactional.transactional = true;
        assert_eq!(
            offer(&mut state, transactional, 4),
            Err(ProducerError::InvalidProducerEpoch),
            "a transactional producer's stale epoch is refused as Kafka's leaders refuse it"
        );
        assert!(matches!(
            offer(&mut state, batch(7, 2, 4, 1), 4),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            offer(&mut state, batch(7, 2, 0, 1), 4),
            Ok(Admission::Append)
        );
        assert_eq!(state.epoch(7), Some(2));
    }

    #[test]
    fn a_marker_with_a_new_epoch_fences_the_old_one() {
        let mut state = ProducerSequences::default();
        offer(&mut state, batch(7, 0, 0, 1), 0).unwrap();
        let mut marker = batch(7, 1, -1, 1);
        marker.control = true;
        offer(&mut state, marker, 1).unwrap();
        assert_eq!(
            offer(&mut state, batch(7, 0, 1, 1), 2),
            Err(ProducerError::InvalidProducerEpoch)
        );
        assert_eq!(
            offer(&mut state, batch(7, 1, 0, 1), 2),
            Ok(Admission::Append)
        );
    }

    #[test]
    fn sequences_wrap_around_after_i32_max() {
        let mut state = ProducerSequences::default();
        offer(&mut state, batch(7, 0, 0, 1), 0).unwrap();
        // Jump near the end by recording directly (as a long-lived producer would reach it).
        state.record(&batch(7, 0, i32::MAX - 2, 3), 1, 3);
        assert_eq!(
            offer(&mut state, batch(7, 0, 0, 2), 4),
            Ok(Admission::Append)
        );
        assert_eq!(
            offer(&mut state, batch(7, 0, i32::MAX - 2, 3), 9),
            Ok(Admission::Duplicate {
                base_offset: 1,
                last_offset: 3
            })
        );
        let mut straddling = batch(7, 0, i32::MAX, 3);
        straddling.base_sequence = 2;
        assert_eq!(offer(&mut state, straddling, 6), Ok(Admission::Append));
    }

    #[test]
    fn producers_are_independent() {
        let mut state = ProducerSequences::default();
        offer(&mut state, batch(1, 0, 0, 1), 0).unwrap();
        assert_eq!(
            offer(&mut state, batch(2, 0, 0, 1), 1),
            Ok(Admission::Append)
        );
        assert_eq!(
            offer(&mut state, batch(1, 0, 1, 1), 2),
            Ok(Admission::Append)
        );
    }
}
