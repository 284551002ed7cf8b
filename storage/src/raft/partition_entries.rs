//! The writes of a partition group's Raft log: append, truncate and purge, each mapped
//! onto the partition log and the side entries (see `partition_store`; reads:
//! `partition_read`).

use openraft::EntryPayload;
use redb::Durability;

use super::control_batch;
use super::partition_index::{Anchor, Epoch, IndexState};
use super::partition_side::{SideChange, SideEntry, is_side_payload};
use super::partition_store::{ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog, PartitionStoreError};
use super::types::{Entry, LogId};
use crate::log::batch::BatchHeader;

/// One entry of an append, as it will be stored.
enum Planned {
    /// A batch and the offset the log will give it.
    Batch {
        bytes: Vec<u8>,
        epoch: i32,
        base_offset: i64,
    },
    Side(SideEntry),
}

impl PartitionRaftLog {
    /// Appends entries: side entries and the epoch cache (and, for the first entry of an
    /// empty log, the anchor) are made durable first, in one metadata transaction, then the
    /// batches are appended and fsynced. A side entry is thus never behind a batch that
    /// precedes it; one whose earlier batch a crash took is dropped on open.
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
        // Only the small parts are copied: the positions vector may be long.
        let mut first_index = state.first_index;
        let mut epochs = state.epochs.clone();
        let mut meta_changed = false;
        let mut planned = Vec::with_capacity(entries.len());
        let mut side_rows = Vec::new();
        let mut next_offset = state.end_offset;
        for entry in entries {
            let index = entry.log_id.index;
            if state.positions.is_empty() && planned.is_empty() && index != first_index {
                first_index = index;
                meta_changed = true;
            }
            let expected = first_index + (state.positions.len() + planned.len()) as u64;
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
            let command = match &entry.payload {
                EntryPayload::Normal(command) if !is_side_payload(&entry.payload) => command,
                payload => {
                    let side = SideEntry {
                        position: next_offset,
                        payload: payload.clone(),
                    };
                    side_rows.push((index, side.encode()?));
                    planned.push(Planned::Side(side));
                    continue;
                }
            };
            control_batch::validate_command(&command.0)?;
            let records = BatchHeader::parse(&command.0)
                .map_or(1, |header| i64::from(header.last_offset_delta) + 1);
            planned.push(Planned::Batch {
                bytes: command.0.clone(),
                epoch,
                base_offset: next_offset,
            });
            next_offset += records;
        }
        if meta_changed || !side_rows.is_empty() {
            let anchor = Anchor {
                index: first_index,
                offset: state.positions.first().copied().unwrap_or(state.end_offset),
            };
            let side = SideChange {
                // Rows at the indexes written now are these entries' alone.
                drop_from: entries.first().map(|entry| entry.log_id.index),
                put: side_rows,
                ..SideChange::default()
            };
            self.commit_meta(
                &[
                    (ANCHOR, serde_json::to_vec(&anchor)?),
                    (EPOCHS, serde_json::to_vec(&epochs)?),
                ],
                &side,
                Durability::Immediate,
            )?;
            state.first_index = first_index;
            state.epochs = epochs;
        }
        for (entry, planned) in entries.iter().zip(planned) {
            match planned {
                Planned::Side(side) => {
                    state.positions.push(side.position);
                    state.side.insert(entry.log_id.index, side);
                }
                Planned::Batch {
                    mut bytes,
                    epoch,
                    base_offset,
                } => {
                    let appended = self.log.append(&mut bytes, epoch)?;
                    if appended.base_offset != base_offset {
                        return Err(PartitionStoreError::Inconsistent(format!(
                            "entry {} was appended at offset {}, expected at {base_offset}",
                            entry.log_id.index, appended.base_offset
                        )));
                    }
                    state.positions.push(appended.base_offset);
                    state.end_offset = appended.last_offset + 1;
                }
            }
        }
        self.log.flush()?;
        Ok(())
    }

    /// Removes entries from `index` on: their batches first, then their side entries and
    /// epochs, so a crash between the two leaves side entries only where no batch follows
    /// them (open then keeps them, as if the truncation had not begun; see the module
    /// comment of `partition_store`).
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
        state.positions.truncate(keep);
        state.end_offset = self.log.log_end_offset();
        let dropped_side = !state.side.split_off(&index).is_empty();
        let dropped_epochs = state.forget_epochs_from(index);
        if dropped_side || dropped_epochs {
            let side = SideChange {
                drop_from: Some(index),
                ..SideChange::default()
            };
            self.commit_meta(
                &[(EPOCHS, serde_json::to_vec(&state.epochs)?)],
                &side,
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
            positions: Vec::new(),
            side: Default::default(),
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
            planned.positions = state
                .positions
                .get(usize::try_from(first - state.first_index).unwrap_or(usize::MAX)..)
                .unwrap_or_default()
                .to_vec();
            planned.side = state.side.split_off(&first);
            if planned.positions.is_empty() {
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
            planned.positions = std::mem::take(&mut state.positions);
            planned.side = std::mem::take(&mut state.side);
        }
        if matches!(then, Then::AwaitSnapshot) {
            // Nothing durable yet: a crash before the install leaves the old log and its
            // metadata as they were, and the leader sends the snapshot again. The install
            // (`install_snapshot_log`) makes the purge durable with the new log.
            *state = planned;
            return Ok(());
        }
        let side = SideChange {
            drop_below: Some(planned.first_index),
            ..SideChange::default()
        };
        self.commit_meta(
            &[
                (LAST_PURGED, serde_json::to_vec(&log_id)?),
                (ANCHOR, serde_json::to_vec(&planned.anchor())?),
                (EPOCHS, serde_json::to_vec(&planned.epochs)?),
            ],
            &side,
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
