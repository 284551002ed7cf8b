//! The Raft index <-> partition log offset mapping of a partition group, in memory.
//!
//! Entries have consecutive Raft indexes and each one is exactly one batch, so the mapping
//! is: the *anchor* (the index of the first entry still in the log, kept durably with the
//! offset where it starts) plus the base offset of every batch from there, in order. It is
//! rebuilt on open by walking the batch headers (never the bodies) from the anchor offset,
//! so it cannot disagree with the log: a batch recovery cut off as a torn tail is simply
//! not there, and the entry is gone with it. Lookup of an index is O(1) (a vector slot).
//!
//! The leader node of each term comes from a small durable epoch cache like Kafka's
//! `leader-epoch-checkpoint`: (term, leader node, first index of the term), one row per
//! term change, written before the term's first batch. The term itself is in every batch
//! (its partitionLeaderEpoch). Why not openraft's `single-term-leader` feature (which makes
//! the committed leader id just the term): it is a crate-wide feature that would change the
//! log id type, and with it the on-disk and wire formats, of every other group too.

use serde::{Deserialize, Serialize};

use super::types::{LogId, NodeId};

/// Where a term starts and who led it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub term: u64,
    pub leader: NodeId,
    pub first_index: u64,
}

/// The index of the first entry in the log and the offset it starts at (its base offset,
/// which is also the log start offset; the log end offset when the log is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub index: u64,
    pub offset: i64,
}

/// Everything the store knows about its entries besides their bytes.
#[derive(Debug, Clone, Default)]
pub struct IndexState {
    /// Raft index of `offsets[0]`. At most `last_purged + 1`: after a snapshot install the
    /// log also holds the batches the sender retained below its snapshot.
    pub first_index: u64,
    /// Base offset of each entry's batch, entry `first_index + k` at slot `k`.
    pub offsets: Vec<i64>,
    /// The log end offset: where the next entry's batch will start.
    pub end_offset: i64,
    pub epochs: Vec<Epoch>,
    pub last_purged: Option<LogId>,
    pub committed: Option<LogId>,
    /// Set by a snapshot install: its last index and the offset after it on the leader,
    /// where this replica's log restarts when the snapshot covers more than its log.
    pub snapshot_next: Option<(u64, i64)>,
    /// The log was purged past its end and the offset where it continues is not known yet:
    /// openraft may purge before its state machine worker has installed the snapshot that
    /// says. The log is reset when that arrives (see `PartitionRaftLog::install_snapshot_log`).
    /// Also set while a snapshot's retained batches are being installed.
    pub pending_reset: bool,
}

impl IndexState {
    /// One past the last entry's index.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    /// The durable anchor; offset -1 while a reset is pending.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            index: self.first_index,
            offset: match self.offsets.first() {
                Some(&offset) => offset,
                None if self.pending_reset => -1,
                None => self.end_offset,
            },
        }
    }

    /// Base offset of entry `index`, if it is in the log.
    pub fn offset_of(&self, index: u64) -> Option<i64> {
        let slot = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.offsets.get(slot).copied()
    }

    /// The offset just after entry `index`'s batch: the next entry's base offset, or the log
    /// end after the last entry. Also defined for `first_index - 1` (the anchor offset).
    pub fn offset_after(&self, index: u64) -> Option<i64> {
        let next = index.checked_add(1)?;
        if next == self.end_index() {
            return Some(self.end_offset);
        }
        self.offset_of(next)
    }

    /// The last entry whose batch lies wholly below `offset`. `None` if there is none.
    pub fn last_index_below(&self, offset: i64) -> Option<u64> {
        let starting_at_or_below = self.offsets.partition_point(|base| *base <= offset);
        let wholly_below =
            if starting_at_or_below == self.offsets.len() && self.end_offset <= offset {
                starting_at_or_below
            } else {
                starting_at_or_below.checked_sub(1)?
            };
        let count = u64::try_from(wholly_below).ok()?;
        (self.first_index + count).checked_sub(1)
    }

    /// The epoch entry `index` belongs to.
    pub fn epoch_at(&self, index: u64) -> Option<Epoch> {
        let after = self.epochs.partition_point(|e| e.first_index <= index);
        after
            .checked_sub(1)
            .and_then(|at| self.epochs.get(at))
            .copied()
    }

    /// The log id of the last entry, or the last purged one when the log is empty.
    pub fn last_log_id(&self) -> Option<LogId> {
        let Some(last) = self
            .end_index()
            .checked_sub(1)
            .filter(|_| !self.offsets.is_empty())
        else {
            return self.last_purged;
        };
        self.epoch_at(last).map(|epoch| {
            LogId::new(
                openraft::CommittedLeaderId::new(epoch.term, epoch.leader),
                last,
            )
        })
    }

    /// Drops epochs that start at or after `index` (entries truncated or never written).
    /// Returns whether any was dropped.
    pub fn forget_epochs_from(&mut self, index: u64) -> bool {
        let before = self.epochs.len();
        self.epochs.retain(|e| e.first_index < index);
        self.epochs.len() != before
    }

    /// Drops epochs wholly before `first_index`, keeping the one it belongs to.
    pub fn forget_epochs_before(&mut self, first_index: u64) {
        let covering = self
            .epochs
            .partition_point(|e| e.first_index <= first_index);
        let drop = covering.saturating_sub(1);
        self.epochs.drain(..drop);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn state() -> IndexState {
        IndexState {
            first_index: 10,
            offsets: vec![100, 103, 104, 110],
            end_offset: 115,
            epochs: vec![
                Epoch {
                    term: 1,
                    leader: 1,
                    first_index: 2,
                },
                Epoch {
                    term: 3,
                    leader: 2,
                    first_index: 12,
                },
            ],
            ..IndexState::default()
        }
    }

    #[test]
    fn offsets_by_index_including_the_edges() {
        let s = state();
        assert_eq!(s.offset_of(9), None);
        assert_eq!(s.offset_of(10), Some(100));
        assert_eq!(s.offset_of(13), Some(110));
        assert_eq!(s.offset_of(14), None);
        assert_eq!(s.offset_after(9), Some(100));
        assert_eq!(s.offset_after(12), Some(110));
        assert_eq!(s.offset_after(13), Some(115));
        assert_eq!(s.offset_after(14), None);
        assert_eq!(
            s.anchor(),
            Anchor {
                index: 10,
                offset: 100
            }
        );
    }

    #[test]
    fn epochs_give_each_index_its_term_and_leader() {
        let mut s = state();
        assert_eq!(s.epoch_at(11).unwrap().term, 1);
        assert_eq!(s.epoch_at(12).unwrap().leader, 2);
        let last = s.last_log_id().unwrap();
        assert_eq!(
            (last.leader_id.term, last.leader_id.node_id, last.index),
            (3, 2, 13)
        );
        assert!(s.forget_epochs_from(12));
        assert_eq!(s.epochs.len(), 1);
        let mut s2 = state();
        s2.forget_epochs_before(13);
        assert_eq!(s2.epochs.len(), 1);
        assert_eq!(s2.epochs[0].term, 3);
    }
}
