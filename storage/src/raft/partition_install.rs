//! A snapshot install on a partition log, and retention of batches that lie below Raft's
//! purge point (the retained batches themselves: `partition_retained`).
//!
//! After a replica installed a snapshot its log holds entries Raft has purged: the batches
//! the leader retained below the snapshot's last index (see `partition_snapshot`). Raft
//! never reads them again; Fetch does, and so does the next snapshot this replica sends.
//! The log store's invariant becomes `first_index <= last_purged + 1` instead of equality,
//! and retention deletes such batches here, locally, since a Raft purge cannot reach them.
//!
//! Install order, each step durable before the next, so a crash anywhere is redone on open
//! from the received snapshot file (which the state machine adapter makes durable before it
//! calls [`PartitionRaftLog::install_snapshot_log`], see `snapshot_files`):
//! 1. the purge mark (the snapshot's last id), the epoch cache of the retained entries,
//!    their side entries (replacing this log's) and a pending anchor (offset -1: open
//!    waits for the snapshot file to redo the install);
//! 2. the log reset to the first retained offset and the batches appended, fsynced, and the
//!    sender's log start where DeleteRecords had moved it;
//! 3. the real anchor.

use redb::Durability;

use super::partition_index::{Anchor, IndexState};
use super::partition_retained::{BatchSource, heads};
use super::partition_side::SideChange;
use super::partition_snapshot::RetainedHeader;
use super::partition_store::{ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog, PartitionStoreError};
use super::types::LogId;

impl PartitionRaftLog {
    /// The last entry Raft purged from this log (entries up to it may still be here, see
    /// the module comment).
    pub fn last_purged(&self) -> Option<LogId> {
        self.read().last_purged
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
        retained: Option<(&RetainedHeader, &dyn BatchSource)>,
    ) -> Result<(), PartitionStoreError> {
        let mut state = self.write();
        state.snapshot_next = Some((last.index, next_offset));
        if holds(&state, last, next_offset) {
            return Ok(());
        }
        match retained {
            Some((header, batches)) => {
                self.install_retained(&mut state, last, next_offset, header, batches)
            }
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
        header: &RetainedHeader,
        batches: &dyn BatchSource,
    ) -> Result<(), PartitionStoreError> {
        let RetainedHeader {
            first_index,
            first_offset,
            ref epochs,
            log_start_offset,
            ref side,
        } = *header;
        let inconsistent = |what: String| Err(PartitionStoreError::Inconsistent(what));
        let count = (last.index + 1).saturating_sub(first_index);
        if count == 0 {
            return inconsistent(format!(
                "retained batches start at entry {first_index}, after the snapshot's last entry \
                 {}",
                last.index
            ));
        }
        if epochs.first().is_none_or(|e| e.first_index > first_index) {
            return inconsistent(format!(
                "no epoch covers the first retained entry {first_index}"
            ));
        }
        if side
            .keys()
            .any(|index| !(first_index..=last.index).contains(index))
        {
            return inconsistent(format!(
                "retained side entries outside the retained entries {first_index}..={}",
                last.index
            ));
        }
        // Everything is checked before anything is written: bad input changes nothing.
        let heads = heads(batches)?;
        if (heads.len() + side.len()) as u64 != count {
            return inconsistent(format!(
                "{} retained batches and {} side entries for the {count} entries {first_index}..={}",
                heads.len(),
                side.len(),
                last.index
            ));
        }
        let purged = match state.last_purged {
            Some(purged) if purged >= last => purged,
            _ => last,
        };
        let mut planned = IndexState {
            first_index,
            positions: Vec::with_capacity(count.min(1 << 20) as usize),
            side: side.clone(),
            end_offset: first_offset,
            epochs: epochs.clone(),
            last_purged: Some(purged),
            committed: state.committed,
            snapshot_next: state.snapshot_next,
            pending_reset: true,
        };
        let mut batch_heads = heads.iter();
        for index in first_index..=last.index {
            if let Some(entry) = side.get(&index) {
                if entry.position != planned.end_offset {
                    return inconsistent(format!(
                        "retained side entry {index} is at offset {}, not at {} where the \
                         entries before it end",
                        entry.position, planned.end_offset
                    ));
                }
                planned.positions.push(entry.position);
                continue;
            }
            let Some(head) = batch_heads.next() else {
                return inconsistent(format!("no retained batch for entry {index}"));
            };
            let term = planned.epoch_at(index).map(|e| e.term);
            if term.and_then(|term| i32::try_from(term).ok()) != Some(head.epoch) {
                return inconsistent(format!(
                    "retained entry {index} has epoch {}, the epoch cache says {term:?}",
                    head.epoch
                ));
            }
            if head.base_offset != planned.end_offset {
                return inconsistent(format!(
                    "retained entry {index} is at offset {}, not at {} where the one before ends",
                    head.base_offset, planned.end_offset
                ));
            }
            planned.positions.push(head.base_offset);
            planned.end_offset = head.next_offset;
        }
        if planned.end_offset != next_offset {
            return inconsistent(format!(
                "retained batches end at {}, the snapshot says the log continues at {next_offset}",
                planned.end_offset
            ));
        }
        if let Some(start) = log_start_offset
            && !(first_offset..=next_offset).contains(&start)
        {
            return inconsistent(format!(
                "the sender's log start {start} lies outside its batches {first_offset}..{next_offset}"
            ));
        }
        // Step 1: the install is recorded, the retained side entries in place of any this
        // log had; a crash from here on redoes it on open.
        let rows = side
            .iter()
            .map(|(index, entry)| Ok((*index, entry.encode()?)))
            .collect::<Result<Vec<_>, PartitionStoreError>>()?;
        self.commit_meta(
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
            &SideChange {
                drop_from: Some(0),
                put: rows,
                ..SideChange::default()
            },
            Durability::Immediate,
        )?;
        // Step 2: the batches, one append each as the sender appended them, so segments
        // roll where the sender's did.
        self.log.reset_to(first_offset)?;
        let mut buffer = Vec::new();
        for head in &heads {
            buffer.resize(head.size, 0);
            batches
                .read_at(head.at, &mut buffer)
                .map_err(crate::log::LogError::Io)?;
            let appended = self.log.append(&mut buffer, head.epoch)?;
            if appended.base_offset != head.base_offset {
                return inconsistent(format!(
                    "a retained batch of offset {} was appended at {}",
                    head.base_offset, appended.base_offset
                ));
            }
        }
        self.log.flush()?;
        if let Some(start) = log_start_offset {
            // Where the sender's readers start (DeleteRecords); durable before step 3.
            self.log.raise_log_start(start)?;
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
            .positions
            .drain(..usize::try_from(first - state.first_index).unwrap_or(0));
        planned.side = planned.side.split_off(&first);
        planned.first_index = first;
        planned.forget_epochs_before(first);
        self.commit_meta(
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
            &SideChange {
                drop_below: Some(first),
                ..SideChange::default()
            },
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
