//! Per-partition transaction bookkeeping for read_committed consumers: the transactions still
//! open here (producer id -> offset of their first batch), which bound the last stable offset
//! (LSO), and the index of aborted transactions, which a read_committed fetch returns so the
//! client can drop their records. Pure; rebuilt from the log's batch headers on open.

use super::batch_header::{Marker, ProducerBatch};
use std::collections::HashMap;

/// A transaction that ended in an abort: its records lie in [first_offset, last_offset],
/// `last_offset` being the offset of the abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TxnIndex {
    ongoing: HashMap<i64, i64>,
    /// In marker-offset order (appends come in offset order).
    aborted: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Notes an appended batch at `base_offset`; `marker` is set for a control batch.
    pub fn on_append(&mut self, batch: &ProducerBatch, base_offset: i64, marker: Option<Marker>) {
        if !batch.transactional {
            return;
        }
        if !batch.control {
            self.ongoing.entry(batch.producer_id).or_insert(base_offset);
            return;
        }
        let Some(first_offset) = self.ongoing.remove(&batch.producer_id) else {
            return;
        };
        if marker == Some(Marker::Abort) {
            self.aborted.push(AbortedTxn {
                producer_id: batch.producer_id,
                first_offset,
                last_offset: base_offset,
            });
        }
    }

    /// Offset of the first record of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// Nothing at or past the LSO may reach a read_committed consumer.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Aborted transactions with records in [from, to): what a read_committed fetch of that
    /// range must list.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|txn| txn.last_offset >= from && txn.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly before the log start (retention removed them).
    pub fn trim_before(&mut self, log_start_offset: i64) {
        self.aborted
            .retain(|txn| txn.last_offset >= log_start_offset);
    }

    /// Whether `producer_id` has an open transaction here.
    pub fn is_ongoing(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn data(producer_id: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            last_offset_delta: 0,
            transactional: true,
            control: false,
        }
    }

    fn marker(producer_id: i64) -> ProducerBatch {
        ProducerBatch {
            control: true,
            base_sequence: -1,
            ..data(producer_id)
        }
    }

    #[test]
    fn the_lso_stops_at_the_oldest_open_transaction() {
        let mut index = TxnIndex::default();
        assert_eq!(index.last_stable_offset(10), 10);
        index.on_append(&data(1), 10, None);
        index.on_append(&data(2), 12, None);
        index.on_append(&data(1), 13, None);
        assert_eq!(index.last_stable_offset(14), 10);
        index.on_append(&marker(1), 14, Some(Marker::Commit));
        assert_eq!(index.last_stable_offset(15), 12);
        index.on_append(&marker(2), 15, Some(Marker::Commit));
        assert_eq!(index.last_stable_offset(16), 16);
        assert!(index.aborted_between(0, 16).is_empty());
    }

    #[test]
    fn aborted_transactions_are_listed_for_overlapping_ranges() {
        let mut index = TxnIndex::default();
        index.on_append(&data(1), 5, None);
        index.on_append(&marker(1), 8, Some(Marker::Abort));
        index.on_append(&data(2), 9, None);
        index.on_append(&marker(2), 11, Some(Marker::Abort));
        let first = AbortedTxn {
            producer_id: 1,
            first_offset: 5,
            last_offset: 8,
        };
        let second = AbortedTxn {
            producer_id: 2,
            first_offset: 9,
            last_offset: 11,
        };
        assert_eq!(index.aborted_between(0, 5), vec![]);
        assert_eq!(index.aborted_between(0, 6), vec![first]);
        assert_eq!(index.aborted_between(8, 20), vec![first, second]);
        assert_eq!(index.aborted_between(12, 20), vec![]);
        index.trim_before(9);
        assert_eq!(index.aborted_between(0, 20), vec![second]);
    }

    #[test]
    fn non_transactional_batches_do_not_hold_the_lso() {
        let mut index = TxnIndex::default();
        let mut plain = data(1);
        plain.transactional = false;
        index.on_append(&plain, 3, None);
        assert_eq!(index.last_stable_offset(4), 4);
    }
}
