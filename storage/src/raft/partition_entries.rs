//! The log operations of a partition group's Raft log: append, read by index range,
//! truncate and purge, each mapped onto the partition log (see `partition_store`).

use redb::Durability;

use super::control_batch;
use super::partition_index::{Anchor, Epoch, IndexState};
use super::partition_store::{
    ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog, PartitionStoreError, READ_CHUNK,
};
use super::types::{Entry, LogId};
use crate::log::ReadOptions;
use crate::log::batch::Batches;
use openraft::CommittedLeaderId;

impl PartitionRaftLog {
    /// Appends entries as batches and fsyncs them. The epoch cache and (for the first entry
    /// of an empty log) the anchor are made durable before any batch is written.
    pub(crate) fn append_entries(&self, entries: &[Entry]) -> Result<(), PartitionStoreError> {
        let mut state = self.write();
        if state.pending_reset {
            return Err(PartitionStoreError::Inconsistent(format!(
                "cannot append at {}: the log was purged past its end and the snapshot that \
                 says where it continues is not installed",
                state.first_index
            )));
        }
        // Appending at an index the log holds replaces it and everything after (openraft
        // truncates first anyway; a log cannot hold two entries at one position).
        if let Some(first) = entries.first()
            && first.log_id.index >= state.first_index
            && first.log_id.index < state.end_index()
        {
            self.truncate_locked(&mut state, first.log_id.index)?;
        }
        // Only the small parts are copied: the offsets vector may be long.
        let mut first_index = state.first_index;
        let mut epochs = state.epochs.clone();
        let mut meta_changed = false;
        let mut batches = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.log_id.index;
            if state.offsets.is_empty() && batches.is_empty() && index != first_index {
                first_index = index;
                meta_changed = true;
            }
            let expected = first_index + (state.offsets.len() + batches.len()) as u64;
            if index != expected {
                return Err(PartitionStoreError::Gap {
                    expected,
                    got: index,
                });
            }
            let term = entry.log_id.leader_id.term;
            let epoch = i32::try_from(term).map_err(|_| PartitionStoreError::TermTooLarge(term))?;
            let before = epochs.len();
            epochs.retain(|e| e.first_index < index);
            meta_changed |= epochs.len() != before;
            let leader = entry.log_id.leader_id.node_id;
            if epochs.last().map(|e| (e.term, e.leader)) != Some((term, leader)) {
                epochs.push(Epoch {
                    term,
                    leader,
                    first_index: index,
                });
                meta_changed = true;
            }
            batches.push((control_batch::encode(entry)?, epoch));
        }
        if meta_changed {
            let anchor = Anchor {
                index: first_index,
                offset: state.offsets.first().copied().unwrap_or(state.end_offset),
            };
            self.write_meta(
                &[
                    (ANCHOR, serde_json::to_vec(&anchor)?),
                    (EPOCHS, serde_json::to_vec(&epochs)?),
                ],
                Durability::Immediate,
            )?;
            state.first_index = first_index;
            state.epochs = epochs;
        }
        for (mut batch, epoch) in batches {
            let appended = self.log.append(&mut batch, epoch)?;
            state.offsets.push(appended.base_offset);
            state.end_offset = appended.last_offset + 1;
        }
        self.log.flush()?;
        Ok(())
    }

    /// Entries with indexes in `[start, end)` that are in the log, read sequentially from
    /// the first one's offset.
    pub(crate) fn read_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, PartitionStoreError> {
        self.read_entries_limited(start, end, usize::MAX)
    }

    /// Like [`PartitionRaftLog::read_entries`], stopping after the entry that brings the
    /// batches read to `max_bytes` (the first entry always comes, whatever its size).
    pub(crate) fn read_entries_limited(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, PartitionStoreError> {
        // Held for the whole read: a truncation or purge waits rather than pulling batches
        // from under it.
        let state = self.read();
        let start = start.max(state.first_index);
        let end = end.min(state.end_index());
        let (Some(mut offset), Some(upper)) = (
            state.offset_of(start),
            end.checked_sub(1).and_then(|last| state.offset_after(last)),
        ) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::with_capacity((end.saturating_sub(start)).min(1024) as usize);
        let mut index = start;
        let mut read_bytes = 0usize;
        while index < end && read_bytes < max_bytes {
            let read = self.log.read_below_start(
                offset,
                ReadOptions {
                    max_bytes: READ_CHUNK,
                    min_one_batch: true,
                    upper_bound: Some(upper),
                },
            )?;
            if read.bytes.is_empty() {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "entry {index} should be at offset {offset}, the log has nothing there"
                )));
            }
            for (at, header) in Batches::new(&read.bytes) {
                if index >= end || read_bytes >= max_bytes {
                    break;
                }
                read_bytes += header.size();
                let bytes = read.bytes.get(at..at + header.size()).unwrap_or_default();
                if Some(header.base_offset) != state.offset_of(index) {
                    return Err(PartitionStoreError::Inconsistent(format!(
                        "entry {index} expected at offset {:?}, found a batch at {}",
                        state.offset_of(index),
                        header.base_offset
                    )));
                }
                let epoch = state
                    .epoch_at(index)
                    .filter(|e| i64::try_from(e.term).ok() == Some(i64::from(header.leader_epoch)));
                let Some(epoch) = epoch else {
                    return Err(PartitionStoreError::Inconsistent(format!(
                        "entry {index} has epoch {}, the epoch cache disagrees",
                        header.leader_epoch
                    )));
                };
                entries.push(Entry {
                    log_id: LogId::new(CommittedLeaderId::new(epoch.term, epoch.leader), index),
                    payload: control_batch::decode_payload(bytes)?,
                });
                index += 1;
                offset = header.last_offset() + 1;
            }
        }
        Ok(entries)
    }

    /// Removes entries from `index` on.
    pub(crate) fn truncate_entries(&self, index: u64) -> Result<(), PartitionStoreError> {
        let mut state = self.write();
        self.truncate_locked(&mut state, index)
    }

    fn truncate_locked(
        &self,
        state: &mut IndexState,
        index: u64,
    ) -> Result<(), PartitionStoreError> {
        let index = index.max(state.first_index);
        let Some(offset) = state.offset_of(index) else {
            return Ok(());
        };
        self.log.truncate_to(offset)?;
        let keep = usize::try_from(index - state.first_index).unwrap_or(usize::MAX);
        state.offsets.truncate(keep);
        state.end_offset = self.log.log_end_offset();
        if state.forget_epochs_from(index) {
            self.write_meta(
                &[(EPOCHS, serde_json::to_vec(&state.epochs)?)],
                Durability::Immediate,
            )?;
        }
        Ok(())
    }

    /// Removes entries up to and including `log_id`; the log then starts after it.
    pub(crate) fn purge_entries(&self, log_id: LogId) -> Result<(), PartitionStoreError> {
        let mut state = self.write();
        if state.last_purged >= Some(log_id) {
            return Ok(());
        }
        let first = log_id.index + 1;
        let mut planned = IndexState {
            first_index: state.first_index,
            offsets: Vec::new(),
            end_offset: state.end_offset,
            epochs: state.epochs.clone(),
            last_purged: Some(log_id),
            committed: state.committed,
            snapshot_next: state.snapshot_next,
            pending_reset: state.pending_reset,
        };
        enum Then {
            Nothing,
            AdvanceStart(i64),
            Reset(i64),
            AwaitSnapshot,
        }
        let then = if first <= state.first_index {
            Then::Nothing
        } else if first <= state.end_index() {
            let offset = state.offset_after(log_id.index).unwrap_or(state.end_offset);
            planned.offsets = state
                .offsets
                .get(usize::try_from(first - state.first_index).unwrap_or(usize::MAX)..)
                .unwrap_or_default()
                .to_vec();
            if planned.offsets.is_empty() {
                planned.end_offset = offset;
            }
            Then::AdvanceStart(offset)
        } else {
            // Past the log end: only a snapshot install does that, and the snapshot says
            // where the leader's log continues. openraft may purge before its state machine
            // worker installed it; the reset then waits for `install_snapshot_log`.
            planned.pending_reset = true;
            match state.snapshot_next {
                Some((index, offset)) if index == log_id.index && offset >= 0 => {
                    Then::Reset(offset)
                }
                _ => Then::AwaitSnapshot,
            }
        };
        if !matches!(then, Then::Nothing) {
            planned.first_index = first;
            planned.forget_epochs_before(first);
        }
        if matches!(then, Then::Nothing) {
            planned.offsets = std::mem::take(&mut state.offsets);
        }
        if matches!(then, Then::AwaitSnapshot) {
            // Nothing durable yet: a crash before the install leaves the old log and its
            // metadata as they were, and the leader sends the snapshot again. The install
            // (`install_snapshot_log`) makes the purge durable with the new log.
            *state = planned;
            return Ok(());
        }
        self.write_meta(
            &[
                (LAST_PURGED, serde_json::to_vec(&log_id)?),
                (ANCHOR, serde_json::to_vec(&planned.anchor())?),
                (EPOCHS, serde_json::to_vec(&planned.epochs)?),
            ],
            Durability::Immediate,
        )?;
        match then {
            Then::AdvanceStart(offset) => {
                self.log.advance_log_start(offset)?;
            }
            Then::Reset(offset) => {
                self.log.reset_to(offset)?;
                planned.end_offset = offset;
                planned.pending_reset = false;
            }
            Then::Nothing | Then::AwaitSnapshot => {}
        }
        *state = planned;
        if let Then::Reset(offset) = then {
            // The pending anchor (-1) went to disk with the purge mark; now the real one.
            self.reset_locked(&mut state, offset)?;
        }
        Ok(())
    }
}
