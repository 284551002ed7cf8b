//! A partition log's side of snapshots: the retained batches a sender attaches, a snapshot
//! install on a replica, and retention of batches that lie below Raft's purge point.
//!
//! After a replica installed a snapshot its log holds entries Raft has purged: the batches
//! the leader retained below the snapshot's last index (see `partition_snapshot`). Raft
//! never reads them again; Fetch does, and so does the next snapshot this replica sends.
//! The log store's invariant becomes `first_index <= last_purged + 1` instead of equality,
//! and retention deletes such batches here, locally, since a Raft purge cannot reach them.
//!
//! Install order, each step durable before the next, so a crash anywhere is redone on open
//! from the snapshot file (which the state machine adapter writes, with the batches, before
//! it calls [`PartitionRaftLog::install_snapshot_log`]):
//! 1. the purge mark (the snapshot's last id), the epoch cache of the retained entries and a
//!    pending anchor (offset -1: open waits for the snapshot file to redo the install);
//! 2. the log reset to the first retained offset and the batches appended, fsynced;
//! 3. the real anchor.

use redb::Durability;

use super::partition_index::{Anchor, Epoch, IndexState};
use super::partition_snapshot::{Retained, RetainedHeader};
use super::partition_store::{
    ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog, PartitionStoreError, READ_CHUNK,
};
use super::types::LogId;
use crate::log::ReadOptions;
use crate::log::batch::Batches;

/// The retained batches read from this log, owned (see [`Retained`] for the borrowed form
/// a snapshot encodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedBatches {
    pub header: RetainedHeader,
    pub batches: Vec<u8>,
}

impl RetainedBatches {
    pub fn as_retained(&self) -> Retained<'_> {
        Retained {
            header: self.header.clone(),
            batches: &self.batches,
        }
    }
}

impl PartitionRaftLog {
    /// The last entry Raft purged from this log (entries up to it may still be here, see
    /// the module comment).
    pub fn last_purged(&self) -> Option<LogId> {
        self.read().last_purged
    }

    /// The batches from the log start through entry `last_index`, for a snapshot whose last
    /// entry that is. `None` when the log holds none of them (it starts after it).
    pub(crate) fn retained_through(
        &self,
        last_index: u64,
    ) -> Result<Option<RetainedBatches>, PartitionStoreError> {
        // Held for the whole read: retention waits rather than deleting under it.
        let state = self.read();
        if state.pending_reset || last_index < state.first_index {
            return Ok(None);
        }
        let (Some(first_offset), Some(upper)) = (
            state.offset_of(state.first_index),
            state.offset_after(last_index),
        ) else {
            return Ok(None);
        };
        let mut batches = Vec::new();
        let mut offset = first_offset;
        while offset < upper {
            let read = self.log.read(
                offset,
                ReadOptions {
                    max_bytes: READ_CHUNK,
                    min_one_batch: true,
                    upper_bound: Some(upper),
                },
            )?;
            let mut read_to = offset;
            for (at, header) in Batches::new(&read.bytes) {
                let bytes = read.bytes.get(at..at + header.size()).unwrap_or_default();
                batches.extend_from_slice(bytes);
                read_to = header.last_offset() + 1;
            }
            if read_to == offset {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "retained batches end at {offset}, entry {last_index} ends at {upper}"
                )));
            }
            offset = read_to;
        }
        let covering = state
            .epochs
            .partition_point(|e| e.first_index <= state.first_index)
            .saturating_sub(1);
        let epochs: Vec<Epoch> = state
            .epochs
            .iter()
            .skip(covering)
            .take_while(|e| e.first_index <= last_index)
            .copied()
            .collect();
        Ok(Some(RetainedBatches {
            header: RetainedHeader {
                first_index: state.first_index,
                first_offset,
                epochs,
            },
            batches,
        }))
    }

    /// Makes the log continue where an installed snapshot says: its last entry is `last`
    /// and the sender's log continues at `next_offset`. With `retained`, the log is
    /// replaced by those batches; without, a purge past the log end that was waiting for
    /// `next_offset` restarts the log empty there. Nothing changes when the log already
    /// holds `last` (a restart after a finished install).
    pub(crate) fn install_snapshot_log(
        &self,
        last: LogId,
        next_offset: i64,
        retained: Option<&Retained<'_>>,
    ) -> Result<(), PartitionStoreError> {
        let mut state = self.write();
        state.snapshot_next = Some((last.index, next_offset));
        if holds(&state, last, next_offset) {
            return Ok(());
        }
        match retained {
            Some(retained) => self.install_retained(&mut state, last, next_offset, retained),
            None if state.pending_reset
                && state.first_index == last.index + 1
                && next_offset >= 0 =>
            {
                self.reset_locked(&mut state, next_offset)
            }
            None => Ok(()),
        }
    }

    fn install_retained(
        &self,
        state: &mut IndexState,
        last: LogId,
        next_offset: i64,
        retained: &Retained<'_>,
    ) -> Result<(), PartitionStoreError> {
        let RetainedHeader {
            first_index,
            first_offset,
            ref epochs,
        } = retained.header;
        let count = (last.index + 1)
            .checked_sub(first_index)
            .filter(|count| *count > 0)
            .ok_or_else(|| {
                PartitionStoreError::Inconsistent(format!(
                    "retained batches start at entry {first_index}, after the snapshot's last \
                     entry {}",
                    last.index
                ))
            })?;
        if epochs.first().is_none_or(|e| e.first_index > first_index) {
            return Err(PartitionStoreError::Inconsistent(format!(
                "no epoch covers the first retained entry {first_index}"
            )));
        }
        let heads: Vec<(usize, i64, i32, usize)> = Batches::new(retained.batches)
            .map(|(at, header)| (at, header.base_offset, header.leader_epoch, header.size()))
            .collect();
        let framed: usize = heads.iter().map(|(_, _, _, size)| size).sum();
        let end = Batches::new(retained.batches)
            .last()
            .map(|(_, header)| header.last_offset() + 1);
        if end != Some(next_offset) {
            return Err(PartitionStoreError::Inconsistent(format!(
                "retained batches end at {end:?}, the snapshot says the log continues at \
                 {next_offset}"
            )));
        }
        if framed != retained.batches.len() || heads.len() as u64 != count {
            return Err(PartitionStoreError::Inconsistent(format!(
                "retained batches frame as {} whole batches of {framed} bytes, the snapshot \
                 says {count} entries in {} bytes",
                heads.len(),
                retained.batches.len()
            )));
        }
        let purged = match state.last_purged {
            Some(purged) if purged >= last => purged,
            _ => last,
        };
        let mut planned = IndexState {
            first_index,
            offsets: Vec::with_capacity(heads.len()),
            end_offset: first_offset,
            epochs: epochs.clone(),
            last_purged: Some(purged),
            committed: state.committed,
            snapshot_next: state.snapshot_next,
            pending_reset: true,
        };
        for (slot, (_, base_offset, epoch, _)) in heads.iter().enumerate() {
            let index = first_index + slot as u64;
            let term = planned.epoch_at(index).map(|e| e.term);
            if term.and_then(|term| i32::try_from(term).ok()) != Some(*epoch) {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "retained entry {index} has epoch {epoch}, the epoch cache says {term:?}"
                )));
            }
            if planned
                .offsets
                .last()
                .is_some_and(|prev| prev >= base_offset)
            {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "retained entry {index} at offset {base_offset} does not follow the one before"
                )));
            }
            planned.offsets.push(*base_offset);
        }
        if planned.offsets.first() != Some(&first_offset) {
            return Err(PartitionStoreError::Inconsistent(format!(
                "the first retained batch is not at offset {first_offset}"
            )));
        }
        // Step 1: the install is recorded; a crash from here on redoes it on open.
        self.write_meta(
            &[
                (LAST_PURGED, serde_json::to_vec(&purged)?),
                (
                    ANCHOR,
                    serde_json::to_vec(&Anchor {
                        index: first_index,
                        offset: -1,
                    })?,
                ),
                (EPOCHS, serde_json::to_vec(&planned.epochs)?),
            ],
            Durability::Immediate,
        )?;
        // Step 2: the batches, one append each as the sender appended them, so segments
        // roll where the sender's did.
        self.log.reset_to(first_offset)?;
        let mut buffer = Vec::new();
        for (at, base_offset, epoch, size) in heads {
            buffer.clear();
            buffer.extend_from_slice(retained.batches.get(at..at + size).unwrap_or_default());
            let appended = self.log.append(&mut buffer, epoch)?;
            if appended.base_offset != base_offset {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "a retained batch of offset {base_offset} was appended at {}",
                    appended.base_offset
                )));
            }
            planned.end_offset = appended.last_offset + 1;
        }
        self.log.flush()?;
        if planned.end_offset != next_offset {
            return Err(PartitionStoreError::Inconsistent(format!(
                "retained batches end at {}, the snapshot says the log continues at {next_offset}",
                planned.end_offset
            )));
        }
        // Step 3: the anchor of a log that holds them.
        planned.pending_reset = false;
        self.write_meta(
            &[(ANCHOR, serde_json::to_vec(&planned.anchor())?)],
            Durability::Immediate,
        )?;
        *state = planned;
        Ok(())
    }

    /// Retention below Raft's purge point: deletes the batches wholly below `offset` that
    /// Raft has already purged (a Raft purge cannot reach them). Batches above the purge
    /// point stay for [`crate::raft::RaftNode::purge_through`]. Returns whether the log
    /// start moved.
    pub fn discard_purged_below(&self, offset: i64) -> Result<bool, PartitionStoreError> {
        let mut state = self.write();
        let Some(purged) = state.last_purged.map(|id| id.index) else {
            return Ok(false);
        };
        if state.pending_reset || state.first_index > purged {
            return Ok(false);
        }
        let Some(below) = state.last_index_below(offset) else {
            return Ok(false);
        };
        let first = below.min(purged) + 1;
        if first <= state.first_index {
            return Ok(false);
        }
        let start = state.offset_of(first).unwrap_or(state.end_offset);
        let mut planned = state.clone();
        planned
            .offsets
            .drain(..usize::try_from(first - state.first_index).unwrap_or(0));
        planned.first_index = first;
        planned.forget_epochs_before(first);
        self.write_meta(
            &[
                (
                    ANCHOR,
                    serde_json::to_vec(&Anchor {
                        index: first,
                        offset: start,
                    })?,
                ),
                (EPOCHS, serde_json::to_vec(&planned.epochs)?),
            ],
            Durability::Immediate,
        )?;
        self.log.advance_log_start(start)?;
        *state = planned;
        Ok(true)
    }
}

/// Whether the log holds entry `last` of an installed snapshot where the sender had it.
fn holds(state: &IndexState, last: LogId, next_offset: i64) -> bool {
    !state.pending_reset
        && state.offset_of(last.index).is_some()
        && state.offset_after(last.index) == Some(next_offset)
        && state
            .epoch_at(last.index)
            .is_some_and(|e| e.term == last.leader_id.term && e.leader == last.leader_id.node_id)
}
