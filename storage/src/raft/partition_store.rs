//! The log store of a partition group: the Raft log IS the partition's [`PartitionLog`].
//!
//! Each entry is stored once, as one Kafka v2 batch in the partition's segments (a normal
//! entry's payload is the producer's batch; blank and membership entries are control
//! batches, see `control_batch`), with partitionLeaderEpoch = the entry's term and offsets
//! assigned by the append, so every replica, appending the same entries in the same order
//! from the same start, holds byte-identical batches at identical offsets. Beside the
//! segments, a small redb file keeps what is not in the batches: the vote, the committed
//! and last purged log ids, the anchor (first index <-> its offset) and the epoch cache
//! (see `partition_index`). Those writes are rare (a vote, a new term, a purge) except the
//! committed id, which is written without fsync (as in the redb store: losing it only
//! means re-applying entries after a crash).
//!
//! openraft's operations map onto the log's: append -> `append` + one fsync per call,
//! truncate -> `truncate_to(offset of the index)`, purge -> `advance_log_start(offset after
//! the index)` or, when the purge covers more than the log (a snapshot installed on a
//! replica that was behind), `reset_to(the snapshot's next offset)`. Each writes its
//! durable metadata first, so open can finish an interrupted purge or reset.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, LogState, OptionalSend, RaftLogReader, StorageIOError,
};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::control_batch::{self, EntryBatchError};
use super::partition_index::{Anchor, Epoch, IndexState};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::log::batch::Batches;
use crate::log::{LogConfig, LogError, PartitionLog, ReadOptions};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const ANCHOR: &str = "anchor";
const EPOCHS: &str = "epochs";
/// Bytes per read when serving entries; a batch larger than this is still read whole.
const READ_CHUNK: usize = 1 << 20;

/// What can go wrong in the partition log store.
#[derive(Debug, thiserror::Error)]
pub enum PartitionStoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("raft metadata: {0}")]
    Meta(#[from] redb::Error),
    #[error("raft metadata encoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Entry(#[from] EntryBatchError),
    #[error("term {0} does not fit a batch's partitionLeaderEpoch (int32)")]
    TermTooLarge(u64),
    #[error("entry index {got} does not follow the log (expected {expected})")]
    Gap { expected: u64, got: u64 },
    #[error("log and raft metadata disagree: {0}")]
    Inconsistent(String),
}

fn meta_err(e: impl Into<redb::Error>) -> PartitionStoreError {
    PartitionStoreError::Meta(e.into())
}

/// A partition group's log, shared by its Raft log store, its state machine adapter and the
/// broker (Fetch reads the [`PartitionLog`] by offset, bounded by the high watermark).
pub struct PartitionRaftLog {
    log: Arc<PartitionLog>,
    meta: Database,
    state: RwLock<IndexState>,
}

impl PartitionRaftLog {
    /// Opens the log in `dir/log` and its metadata in `dir/raft-meta.redb`, finishing an
    /// interrupted purge or reset and rebuilding the index -> offset mapping.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Arc<Self>, PartitionStoreError> {
        std::fs::create_dir_all(dir).map_err(LogError::Io)?;
        let meta = Database::create(dir.join("raft-meta.redb")).map_err(meta_err)?;
        let txn = meta.begin_write().map_err(meta_err)?;
        txn.open_table(META).map_err(meta_err)?;
        txn.commit().map_err(meta_err)?;
        let log = Arc::new(PartitionLog::open(&dir.join("log"), config)?);
        let this = Self {
            log,
            meta,
            state: RwLock::new(IndexState::default()),
        };
        let last_purged: Option<LogId> = this.read_meta(LAST_PURGED)?;
        let committed: Option<LogId> = this.read_meta::<Option<LogId>>(COMMITTED)?.flatten();
        let anchor = this.read_meta::<Anchor>(ANCHOR)?.unwrap_or(Anchor {
            index: last_purged.map_or(0, |id| id.index + 1),
            offset: this.log.log_start_offset(),
        });
        if anchor.offset < 0 {
            // Purged past the log end before the snapshot said where the log continues;
            // the state machine adapter's open supplies that from the snapshot file.
            let state = IndexState {
                first_index: anchor.index,
                end_offset: this.log.log_end_offset(),
                epochs: this.read_meta(EPOCHS)?.unwrap_or_default(),
                last_purged,
                committed,
                pending_reset: true,
                ..IndexState::default()
            };
            *this.state.write().unwrap_or_else(PoisonError::into_inner) = state;
            return Ok(Arc::new(this));
        }
        let (start, end) = (this.log.log_start_offset(), this.log.log_end_offset());
        if end < anchor.offset {
            // A reset (snapshot install) was recorded but not done, or the log was lost.
            this.log.reset_to(anchor.offset)?;
        } else if start < anchor.offset {
            this.log.advance_log_start(anchor.offset)?;
        } else if start > anchor.offset {
            return Err(PartitionStoreError::Inconsistent(format!(
                "log starts at {start} but entry {} is at {}",
                anchor.index, anchor.offset
            )));
        }
        let heads = this.log.batch_heads_from(anchor.offset)?;
        if heads
            .first()
            .is_some_and(|(base, _)| *base != anchor.offset)
        {
            return Err(PartitionStoreError::Inconsistent(format!(
                "no batch starts at the anchor offset {}",
                anchor.offset
            )));
        }
        let mut state = IndexState {
            first_index: anchor.index,
            offsets: heads.iter().map(|(base, _)| *base).collect(),
            end_offset: this.log.log_end_offset(),
            epochs: this.read_meta(EPOCHS)?.unwrap_or_default(),
            last_purged,
            committed,
            snapshot_next: None,
            pending_reset: false,
        };
        // Epochs of entries a crash or torn tail took away.
        state.forget_epochs_from(state.end_index());
        if let (Some((_, term)), Some(last)) = (heads.last(), state.last_log_id())
            && i64::from(*term) != last.leader_id.term as i64
        {
            return Err(PartitionStoreError::Inconsistent(format!(
                "last batch has epoch {term}, the epoch cache says term {}",
                last.leader_id.term
            )));
        }
        *this.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        Ok(Arc::new(this))
    }

    /// The partition's log (Fetch reads it by offset; never write to it directly).
    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    /// The offset after the last committed batch: consumers read below it. While a
    /// snapshot's log reset is pending it is the log start, so nothing stale is served.
    pub fn high_watermark(&self) -> i64 {
        let state = self.read();
        if state.pending_reset {
            return self.log.log_start_offset();
        }
        state
            .committed
            .and_then(|committed| state.offset_after(committed.index))
            .unwrap_or_else(|| state.anchor().offset)
    }

    /// The offset after entry `index`'s batch (for a committed index: the high watermark).
    pub fn offset_after(&self, index: u64) -> Option<i64> {
        self.read().offset_after(index)
    }

    /// The base offset of entry `index`'s batch, if it is in the log.
    pub fn offset_of(&self, index: u64) -> Option<i64> {
        self.read().offset_of(index)
    }

    /// The index of the first entry in the log and one past the last.
    pub fn index_range(&self) -> (u64, u64) {
        let state = self.read();
        (state.first_index, state.end_index())
    }

    /// Remembers where the leader's log continues after an installed snapshot (its last
    /// index and the offset after it), and finishes a purge past the log end that was
    /// waiting for exactly that: the log restarts empty at `next_offset`.
    pub(crate) fn set_snapshot_next(
        &self,
        last_index: u64,
        next_offset: i64,
    ) -> Result<(), PartitionStoreError> {
        let mut state = self.write();
        state.snapshot_next = Some((last_index, next_offset));
        if state.pending_reset && state.first_index == last_index + 1 && next_offset >= 0 {
            self.reset_locked(&mut state, next_offset)?;
        }
        Ok(())
    }

    /// Records the anchor, then empties the log to restart at `offset`.
    fn reset_locked(&self, state: &mut IndexState, offset: i64) -> Result<(), PartitionStoreError> {
        let anchor = Anchor {
            index: state.first_index,
            offset,
        };
        self.write_meta(
            &[(ANCHOR, serde_json::to_vec(&anchor)?)],
            Durability::Immediate,
        )?;
        self.log.reset_to(offset)?;
        state.offsets.clear();
        state.end_offset = offset;
        state.pending_reset = false;
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, IndexState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PartitionStoreError> {
        let txn = self.meta.begin_read().map_err(meta_err)?;
        let table = txn.open_table(META).map_err(meta_err)?;
        let Some(value) = table.get(key).map_err(meta_err)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(value.value())?))
    }

    fn write_meta(
        &self,
        values: &[(&str, Vec<u8>)],
        durability: Durability,
    ) -> Result<(), PartitionStoreError> {
        let mut txn = self.meta.begin_write().map_err(meta_err)?;
        txn.set_durability(durability).map_err(meta_err)?;
        {
            let mut table = txn.open_table(META).map_err(meta_err)?;
            for (key, value) in values {
                table.insert(*key, value.as_slice()).map_err(meta_err)?;
            }
        }
        txn.commit().map_err(meta_err)
    }

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
        let mut entries = Vec::with_capacity((end.saturating_sub(start)) as usize);
        let mut index = start;
        while index < end {
            let read = self.log.read(
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
                if index >= end {
                    break;
                }
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
            // worker installed it; the reset then waits for `set_snapshot_next`.
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

/// openraft's handle on a [`PartitionRaftLog`]; cheap to clone (the log reader is a clone).
#[derive(Clone)]
pub struct PartitionLogStore {
    shared: Arc<PartitionRaftLog>,
}

impl PartitionLogStore {
    pub fn new(shared: Arc<PartitionRaftLog>) -> Self {
        Self { shared }
    }

    /// Runs a write on the blocking pool (it fsyncs); awaiting it keeps writes serialized.
    async fn blocking<F>(&self, write: F) -> Result<(), StorageError>
    where
        F: FnOnce(&PartitionRaftLog) -> Result<(), PartitionStoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || write(&shared))
            .await
            .map_err(|e| write_err(&e))?
            .map_err(|e| write_err(&e))
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| write_err(&e))?;
        self.blocking(move |shared| shared.write_meta(&[(key, bytes)], durability))
            .await
    }
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

impl RaftLogReader<TypeConfig> for PartitionLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        self.shared
            .read_entries(start, end)
            .map_err(|e| read_err(&e))
    }
}

impl RaftLogStorage<TypeConfig> for PartitionLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let state = self.shared.read();
        Ok(LogState {
            last_purged_log_id: state.last_purged,
            last_log_id: state.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, Durability::Immediate).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.shared.read_meta(VOTE).map_err(|e| read_err(&e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.shared.write().committed = committed;
        // Not fsynced: a lost value only means re-applying entries after a crash.
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.read().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.blocking(move |shared| shared.append_entries(&entries))
            .await?;
        // append_entries fsynced the batches.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |shared| shared.truncate_entries(log_id.index))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |shared| shared.purge_entries(log_id))
            .await
    }
}
