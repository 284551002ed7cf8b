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
//! from the received snapshot file (which the state machine adapter makes durable before it
//! calls [`PartitionRaftLog::install_snapshot_log`], see `snapshot_files`):
//! 1. the purge mark (the snapshot's last id), the epoch cache of the retained entries and a
//!    pending anchor (offset -1: open waits for the snapshot file to redo the install);
//! 2. the log reset to the first retained offset and the batches appended, fsynced;
//! 3. the real anchor.

use std::io::Write;

use redb::Durability;

use super::partition_index::{Anchor, Epoch, IndexState};
use super::partition_snapshot::RetainedHeader;
use super::partition_store::{
    ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog, PartitionStoreError, READ_CHUNK,
};
use super::types::LogId;
use crate::log::ReadOptions;
use crate::log::batch::{BatchHeader, Batches, HEADER_SIZE};

/// The retained batches a snapshot will carry, located in this log (see
/// [`PartitionRaftLog::copy_retained`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedPlan {
    pub header: RetainedHeader,
    /// The offset after the snapshot's last entry: the batches are `first_offset..upper`.
    pub upper: i64,
}

/// Where a snapshot's retained batches are read from when it is installed: one section of
/// the received snapshot file (or, in tests, memory). Read in place, never whole.
pub trait BatchSource {
    /// Bytes of the batches.
    fn len(&self) -> u64;
    /// Fills `buf` from position `at` of the batches.
    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl BatchSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let bytes = usize::try_from(at)
            .ok()
            .and_then(|at| self.get(at..at.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// The section `start..start + len` of a file.
pub struct FileSection {
    pub file: std::fs::File,
    pub start: u64,
    pub len: u64,
}

impl BatchSource for FileSection {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if at.saturating_add(buf.len() as u64) > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.file.read_exact_at(buf, self.start + at)
    }
}

/// One retained batch as found in a [`BatchSource`]: where, its offsets and epoch.
struct Head {
    at: u64,
    size: usize,
    base_offset: i64,
    next_offset: i64,
    epoch: i32,
}

/// Walks the batch headers of `source` (not the bodies). Errors if they do not frame it.
fn heads(source: &dyn BatchSource) -> Result<Vec<Head>, PartitionStoreError> {
    let mut heads = Vec::new();
    let mut at = 0u64;
    let mut buf = [0u8; HEADER_SIZE];
    while at < source.len() {
        let header = source
            .read_at(at, &mut buf)
            .ok()
            .and_then(|()| BatchHeader::parse(&buf));
        let Some((header, size)) = header.and_then(|h| h.check().ok().map(|size| (h, size))) else {
            return Err(PartitionStoreError::Inconsistent(format!(
                "retained batches: no whole batch header at byte {at} of {}",
                source.len()
            )));
        };
        heads.push(Head {
            at,
            size,
            base_offset: header.base_offset,
            next_offset: header.last_offset() + 1,
            epoch: header.leader_epoch,
        });
        at += size as u64;
    }
    if at != source.len() {
        return Err(PartitionStoreError::Inconsistent(format!(
            "retained batches: the last batch runs past the {} bytes",
            source.len()
        )));
    }
    Ok(heads)
}

impl PartitionRaftLog {
    /// The last entry Raft purged from this log (entries up to it may still be here, see
    /// the module comment).
    pub fn last_purged(&self) -> Option<LogId> {
        self.read().last_purged
    }

    /// Where the batches from the log start through entry `last_index` are, for a snapshot
    /// whose last entry that is. `None` when the log holds none of them (it starts after it).
    pub(crate) fn retained_plan(&self, last_index: u64) -> Option<RetainedPlan> {
        let state = self.read();
        if state.pending_reset || last_index < state.first_index {
            return None;
        }
        let first_offset = state.offset_of(state.first_index)?;
        let upper = state.offset_after(last_index)?;
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
        Some(RetainedPlan {
            header: RetainedHeader {
                first_index: state.first_index,
                first_offset,
                epochs,
            },
            upper,
        })
    }

    /// Copies the batches `plan` names to `out`, a chunk at a time, and returns how many
    /// bytes. The log is not locked meanwhile (appends go on); if retention deletes a
    /// segment first, the read fails and openraft sends a newer snapshot later.
    pub(crate) fn copy_retained(
        &self,
        plan: &RetainedPlan,
        out: &mut dyn Write,
    ) -> Result<u64, PartitionStoreError> {
        let mut offset = plan.header.first_offset;
        let mut copied = 0u64;
        while offset < plan.upper {
            let read = self.log.read(
                offset,
                ReadOptions {
                    max_bytes: READ_CHUNK,
                    min_one_batch: true,
                    upper_bound: Some(plan.upper),
                },
            )?;
            let mut read_to = offset;
            for (at, header) in Batches::new(&read.bytes) {
                let bytes = read.bytes.get(at..at + header.size()).unwrap_or_default();
                out.write_all(bytes).map_err(crate::log::LogError::Io)?;
                copied += bytes.len() as u64;
                read_to = header.last_offset() + 1;
            }
            if read_to == offset {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "retained batches end at {offset}, the snapshot's last entry at {}",
                    plan.upper
                )));
            }
            offset = read_to;
        }
        Ok(copied)
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
        // Everything is checked before anything is written: bad input changes nothing.
        let heads = heads(batches)?;
        if heads.len() as u64 != count {
            return inconsistent(format!(
                "{} retained batches for the {count} entries {first_index}..={}",
                heads.len(),
                last.index
            ));
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
        for (slot, head) in heads.iter().enumerate() {
            let index = first_index + slot as u64;
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
            planned.offsets.push(head.base_offset);
            planned.end_offset = head.next_offset;
        }
        if planned.end_offset != next_offset {
            return inconsistent(format!(
                "retained batches end at {}, the snapshot says the log continues at {next_offset}",
                planned.end_offset
            ));
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
