//! The Raft index <-> partition log offset mapping of a partition group, in memory.
//!
//! Entries have consecutive Raft indexes. A *batch entry* (a produced record batch or a
//! transaction marker) is one batch of the segment log; a *side entry* (the blank entry a
//! new leader appends, a membership change, a log-start move) is not: it is kept beside
//! the segments (see `partition_side`) and takes no Kafka offset, so the log's offsets
//! count records only, as Kafka's do. Every entry has a *position*: a batch entry's base
//! offset, or for a side entry the log end offset when it was appended (the base offset
//! of the next batch). Positions never decrease, and the offset after entry `i` is the
//! position of entry `i + 1` (the log end after the last one), whatever kind either is.
//!
//! The mapping is the *anchor* (the index of the first entry still in the log, kept
//! durably with its position) plus every entry's position from there, in order, and the
//! side entries by index. It is rebuilt on open by merging the batch headers (never the
//! bodies) walked from the anchor offset with the side entries: entry `i` is the side
//! entry stored at `i` when there is one at the current position, else the next batch.
//! So it cannot disagree with the log: a batch recovery cut off as a torn tail is simply
//! not there, and the entry is gone with it (see `PartitionRaftLog::open` for why a side
//! entry is never left behind by the batches after it). Lookup of an index is O(1).
//!
//! The leader node of each term comes from a small durable epoch cache like Kafka's
//! `leader-epoch-checkpoint`: (term, leader node, first index of the term), one row per
//! term change, written before the term's first entry. The term itself is in every batch
//! (its partitionLeaderEpoch). Why not openraft's `single-term-leader` feature (which makes
//! the committed leader id just the term): it is a crate-wide feature that would change the
//! log id type, and with it the on-disk and wire formats, of every other group too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::partition_side::SideEntry;
use super::types::{LogId, NodeId};

/// Where a term starts and who led it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub term: u64,
    pub leader: NodeId,
    pub first_index: u64,
}

/// The index of the first entry in the log and its position (which is also the log start
/// offset, unless DeleteRecords raised it; the log end offset when the log is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub index: u64,
    pub offset: i64,
}

/// Everything the store knows about its entries besides the batches' bytes.
#[derive(Debug, Clone, Default)]
pub struct IndexState {
    /// Raft index of `positions[0]`. At most `last_purged + 1`: after a snapshot install
    /// the log also holds the entries the sender retained below its snapshot.
    pub first_index: u64,
    /// The position of each entry (module comment), entry `first_index + k` at slot `k`.
    pub positions: Vec<i64>,
    /// The side entries among them, by index.
    pub side: BTreeMap<u64, SideEntry>,
    /// The log end offset: where the next batch will start.
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
        self.first_index + self.positions.len() as u64
    }

    /// The durable anchor; offset -1 while a reset is pending.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            index: self.first_index,
            offset: match self.positions.first() {
                Some(&offset) => offset,
                None if self.pending_reset => -1,
                None => self.end_offset,
            },
        }
    }

    /// The position of entry `index` (its batch's base offset, or where a side entry
    /// sits), if it is in the log.
    pub fn offset_of(&self, index: u64) -> Option<i64> {
        let slot = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.positions.get(slot).copied()
    }

    /// The offset just after entry `index`: the next entry's position, or the log end after
    /// the last entry. Also defined for `first_index - 1` (the anchor offset).
    pub fn offset_after(&self, index: u64) -> Option<i64> {
        let next = index.checked_add(1)?;
        if next == self.end_index() {
            return Some(self.end_offset);
        }
        self.offset_of(next)
    }

    /// The last entry that lies wholly below `offset` (the offset after it is at most
    /// `offset`): purging through it frees nothing at or above `offset`. `None` if there
    /// is none.
    pub fn last_index_below(&self, offset: i64) -> Option<u64> {
        // Slot k's next position is positions[k + 1] (the log end for the last slot); they
        // never decrease, so the slots wholly below `offset` are a prefix.
        let followed = self
            .positions
            .get(1..)
            .unwrap_or_default()
            .partition_point(|next| *next <= offset);
        let below = if followed + 1 == self.positions.len() && self.end_offset <= offset {
            followed + 1
        } else {
            followed
        };
        let count = u64::try_from(below).ok().filter(|count| *count > 0)?;
        Some(self.first_index + count - 1)
    }

    /// Rebuilds the entries from `anchor` on, as open does: `heads` are the log's batches
    /// from the anchor offset (base offset, leader epoch), in order, ending at
    /// `self.end_offset`; `stored` are the side entries kept beside them. Entry `i` is the
    /// side entry stored at `i` (which must sit where the entries before it end), else the
    /// next batch (which must start there and carry the term of `i`). Stops at the first
    /// index that is neither. Returns the stored side entries no entry took: below the
    /// anchor, or past the end (an append's side entries whose batches before them were
    /// lost). Errors when the two stores disagree.
    pub fn merge(
        &mut self,
        anchor: Anchor,
        heads: &[(i64, i32)],
        mut stored: BTreeMap<u64, SideEntry>,
    ) -> Result<BTreeMap<u64, SideEntry>, String> {
        self.first_index = anchor.index;
        self.positions.clear();
        self.side.clear();
        let mut cursor = anchor.offset;
        let mut heads = heads.iter().peekable();
        loop {
            let index = self.end_index();
            if let Some(entry) = stored.remove(&index) {
                if entry.position != cursor {
                    return Err(format!(
                        "side entry {index} is at offset {}, the entries before it end at \
                         {cursor}",
                        entry.position
                    ));
                }
                self.positions.push(cursor);
                self.side.insert(index, entry);
                continue;
            }
            let Some(&&(base, epoch)) = heads.peek() else {
                break;
            };
            if base != cursor {
                return Err(format!(
                    "entry {index} should start at offset {cursor}, the next batch is at {base}"
                ));
            }
            let term = self.epoch_at(index).map(|e| e.term);
            if term.and_then(|term| i32::try_from(term).ok()) != Some(epoch) {
                return Err(format!(
                    "entry {index} has epoch {epoch}, the epoch cache says term {term:?}"
                ));
            }
            heads.next();
            self.positions.push(base);
            cursor = heads.peek().map_or(self.end_offset, |(next, _)| *next);
        }
        Ok(stored)
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
            .filter(|_| !self.positions.is_empty())
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

    /// Entry 10: a batch of 3 records at 100; 11: term 3's blank entry, a side entry at 103;
    /// 12: a batch of 7 at 103; 13: a batch of 5 at 110; log end 115.
    fn state() -> IndexState {
        IndexState {
            first_index: 10,
            positions: vec![100, 103, 103, 110],
            side: BTreeMap::from([(
                11,
                SideEntry {
                    position: 103,
                    payload: openraft::EntryPayload::Blank,
                },
            )]),
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
                    first_index: 11,
                },
            ],
            ..IndexState::default()
        }
    }

    #[test]
    fn positions_by_index_including_the_edges_and_a_side_entry() {
        let s = state();
        assert_eq!(s.offset_of(9), None);
        assert_eq!(s.offset_of(10), Some(100));
        assert_eq!(s.offset_of(11), Some(103), "where the side entry sits");
        assert!(s.side.contains_key(&11) && !s.side.contains_key(&12));
        assert_eq!(s.offset_of(12), Some(103), "the next batch takes no gap");
        assert_eq!(s.offset_of(13), Some(110));
        assert_eq!(s.offset_of(14), None);
        assert_eq!(s.offset_after(9), Some(100));
        assert_eq!(s.offset_after(10), Some(103));
        assert_eq!(
            s.offset_after(11),
            Some(103),
            "a side entry is zero offsets wide"
        );
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
    fn the_entries_wholly_below_an_offset_include_side_entries_at_it() {
        let s = state();
        let below = |offset| s.last_index_below(offset);
        assert_eq!(below(99), None);
        assert_eq!(below(102), None, "entry 10 runs to 102");
        assert_eq!(below(103), Some(11), "the side entry at 103 goes with it");
        assert_eq!(below(109), Some(11));
        assert_eq!(below(110), Some(12));
        assert_eq!(below(114), Some(12));
        assert_eq!(below(115), Some(13));
        assert_eq!(below(1_000), Some(13));
        let empty = IndexState {
            first_index: 4,
            end_offset: 50,
            ..IndexState::default()
        };
        assert_eq!(empty.last_index_below(60), None);
    }

    #[test]
    fn epochs_give_each_index_its_term_and_leader() {
        let mut s = state();
        assert_eq!(s.epoch_at(10).unwrap().term, 1);
        assert_eq!(s.epoch_at(11).unwrap().leader, 2);
        let last = s.last_log_id().unwrap();
        assert_eq!(
            (last.leader_id.term, last.leader_id.node_id, last.index),
            (3, 2, 13)
        );
        assert!(s.forget_epochs_from(11));
        assert_eq!(s.epochs.len(), 1);
        let mut s2 = state();
        s2.forget_epochs_before(13);
        assert_eq!(s2.epochs.len(), 1);
        assert_eq!(s2.epochs[0].term, 3);
    }
}
