//! The log store of a partition group: the Raft log IS the partition's [`PartitionLog`].
//!
//! Each entry that is a Kafka batch (a normal entry's payload: a producer's batch or a
//! transaction marker) is stored once, as that batch in the partition's segments, with
//! partitionLeaderEpoch = the entry's term and offsets assigned by the append, so every
//! replica, appending the same entries in the same order from the same start, holds
//! byte-identical batches at identical offsets. The other entries (a new leader's blank
//! entry, membership changes, log-start moves) are *side entries*, kept in the metadata
//! file and taking no offset (see `partition_side`): the partition's offsets count its
//! records only, from 0 with no gap, whatever Raft did. Beside them, the small redb file
//! keeps what is not in the batches: the vote, the committed and last purged log ids, the
//! anchor (first index <-> its offset), the epoch cache (see `partition_index`) and the
//! format mark. Those writes are rare (a vote, a new term, a side entry, a purge) except
//! the committed id, which is written without fsync (as in the redb store: losing it only
//! means re-applying entries after a crash).
//!
//! openraft's operations map onto the log's: append -> `append` + one fsync per call
//! (side entries committed first, with the epochs), truncate -> `truncate_to(offset of
//! the index)` then the side entries from the index dropped, purge ->
//! `advance_log_start(offset after the index)` or, when the purge covers more than the log
//! (a snapshot installed on a replica that was behind), `reset_to(the snapshot's next
//! offset)`. Each writes its durable metadata first, so open can finish an interrupted
//! purge or reset, and none leaves a side entry behind while a batch after it remains, so
//! open's merge of batches and side entries cannot mistake one entry for another.
//!
//! Files: this one (the shared handle: open, recovery, the broker's accessors),
//! `partition_entries` (the writes), `partition_read` (reads by index),
//! `partition_side` (side entries),
//! `partition_install` (snapshots: the retained batches they carry, and installing them),
//! `partition_log_store` (openraft's traits).

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;

use super::control_batch::EntryBatchError;
use super::partition_index::{Anchor, IndexState};
use super::partition_side::{SIDE, SideChange};
use super::types::LogId;
use crate::log::{LogConfig, LogError, PartitionLog};

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const VOTE: &str = "vote";
pub(super) const COMMITTED: &str = "committed";
pub(super) const LAST_PURGED: &str = "last_purged";
pub(super) const ANCHOR: &str = "anchor";
pub(super) const EPOCHS: &str = "epochs";
/// The layout this store writes, kept in the metadata from the partition's first open.
pub(super) const FORMAT: &str = "format";
/// Version 2: Raft's own entries and log-start entries are side entries (see
/// `partition_side`); the segments hold only Kafka batches. Version 1 (no mark) stored
/// them as control batches that took Kafka offsets; it is not migrated: such a partition
/// is refused on open (its replica can be wiped and rebuilt from peers of this version).
pub(super) const FORMAT_VERSION: u32 = 2;
/// Bytes per read when serving entries; a batch larger than this is still read whole.
pub(super) const READ_CHUNK: usize = 1 << 20;

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
    #[error(
        "the partition in {0} was written by an older version, whose Raft entries took Kafka \
         offsets; it cannot be opened: remove this replica's data to rebuild it from its \
         peers, or recreate the topic"
    )]
    OldFormat(String),
    #[error("the partition in {dir} has format {format}, which this version does not know")]
    UnknownFormat { dir: String, format: u32 },
}

pub(super) fn meta_err(e: impl Into<redb::Error>) -> PartitionStoreError {
    PartitionStoreError::Meta(e.into())
}

/// A partition group's log, shared by its Raft log store, its state machine adapter and the
/// broker (Fetch reads the [`PartitionLog`] by offset, bounded by the high watermark).
pub struct PartitionRaftLog {
    pub(super) log: Arc<PartitionLog>,
    pub(super) meta: Database,
    pub(super) state: RwLock<IndexState>,
}

impl PartitionRaftLog {
    /// Opens the log in `dir/log` and its metadata in `dir/raft-meta.redb`, finishing an
    /// interrupted purge or reset and rebuilding the index -> offset mapping by merging the
    /// batches with the side entries. A partition written by the old format (Raft's own
    /// entries stored as control batches, taking offsets) is refused with
    /// [`PartitionStoreError::OldFormat`]: see [`FORMAT_VERSION`].
    pub fn open(dir: &Path, config: LogConfig) -> Result<Arc<Self>, PartitionStoreError> {
        std::fs::create_dir_all(dir).map_err(LogError::Io)?;
        let meta = Database::create(dir.join("raft-meta.redb")).map_err(meta_err)?;
        let txn = meta.begin_write().map_err(meta_err)?;
        txn.open_table(META).map_err(meta_err)?;
        txn.open_table(SIDE).map_err(meta_err)?;
        txn.commit().map_err(meta_err)?;
        let log = Arc::new(PartitionLog::open(&dir.join("log"), config)?);
        let this = Self {
            log,
            meta,
            state: RwLock::new(IndexState::default()),
        };
        this.check_format(dir)?;
        let last_purged: Option<LogId> = this.read_meta(LAST_PURGED)?;
        let committed: Option<LogId> = this.read_meta::<Option<LogId>>(COMMITTED)?.flatten();
        let anchor = this.read_meta::<Anchor>(ANCHOR)?.unwrap_or(Anchor {
            index: last_purged.map_or(0, |id| id.index + 1),
            // Not the log start: DeleteRecords may have raised it inside the first batch.
            offset: this.log.first_segment_base(),
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
        } else if this.log.first_segment_base() > anchor.offset {
            return Err(PartitionStoreError::Inconsistent(format!(
                "log segments start at {} but entry {} is at {}",
                this.log.first_segment_base(),
                anchor.index,
                anchor.offset
            )));
        }
        // A log start above the anchor is DeleteRecords' (`raise_log_start`): the entries
        // below it stay Raft's until a purge.
        let heads = this.log.batch_heads_from(anchor.offset)?;
        let mut state = IndexState {
            end_offset: this.log.log_end_offset(),
            epochs: this.read_meta(EPOCHS)?.unwrap_or_default(),
            last_purged,
            committed,
            ..IndexState::default()
        };
        let leftover = state
            .merge(anchor, &heads, this.load_side()?)
            .map_err(PartitionStoreError::Inconsistent)?;
        if !leftover.is_empty() {
            // Durably gone before anything is appended, so that a later entry at one of
            // those indexes can never be mistaken for them.
            this.commit_meta(
                &[],
                &SideChange {
                    drop_below: Some(state.first_index),
                    drop_from: Some(state.end_index()),
                    put: Vec::new(),
                },
                Durability::Immediate,
            )?;
        }
        // Epochs of entries a crash or torn tail took away.
        state.forget_epochs_from(state.end_index());
        *this.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        Ok(Arc::new(this))
    }

    /// Refuses a partition the old format wrote (no format mark, but entries or their
    /// metadata), and marks a new one.
    fn check_format(&self, dir: &Path) -> Result<(), PartitionStoreError> {
        match self.read_meta::<u32>(FORMAT)? {
            Some(FORMAT_VERSION) => Ok(()),
            Some(other) => Err(PartitionStoreError::UnknownFormat {
                dir: dir.display().to_string(),
                format: other,
            }),
            None => {
                let used = self.log.log_end_offset() > 0
                    || self.read_meta::<Anchor>(ANCHOR)?.is_some()
                    || self.read_meta::<serde_json::Value>(EPOCHS)?.is_some()
                    || self.read_meta::<LogId>(LAST_PURGED)?.is_some();
                if used {
                    return Err(PartitionStoreError::OldFormat(dir.display().to_string()));
                }
                self.write_meta(
                    &[(FORMAT, serde_json::to_vec(&FORMAT_VERSION)?)],
                    Durability::Immediate,
                )
            }
        }
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

    /// Kafka's OffsetForLeaderEpoch over this log: the largest term at or below `epoch` that
    /// has entries here, and the offset where it ends (the next term's first offset, or the
    /// log end for the last term). `None` when no term that old is still known.
    pub fn epoch_end(&self, epoch: u64) -> Option<(u64, i64)> {
        let state = self.read();
        let at = state.epochs.partition_point(|e| e.term <= epoch);
        let found = state.epochs.get(at.checked_sub(1)?)?;
        let end = match state.epochs.get(at) {
            Some(next) => state
                .offset_of(next.first_index)
                .unwrap_or(state.end_offset),
            None => state.end_offset,
        };
        Some((found.term, end))
    }

    /// The last entry whose batch lies wholly below `offset`: purging the log through it
    /// frees everything below `offset` and nothing above. `None` if there is none.
    pub fn last_index_below(&self, offset: i64) -> Option<u64> {
        self.read().last_index_below(offset)
    }

    /// The index of the first entry in the log and one past the last.
    pub fn index_range(&self) -> (u64, u64) {
        let state = self.read();
        (state.first_index, state.end_index())
    }

    /// Records the purge mark, the anchor and the epochs, then empties the log to restart at
    /// `offset`.
    pub(super) fn reset_locked(
        &self,
        state: &mut IndexState,
        offset: i64,
    ) -> Result<(), PartitionStoreError> {
        let anchor = Anchor {
            index: state.first_index,
            offset,
        };
        let mut meta = vec![
            (ANCHOR, serde_json::to_vec(&anchor)?),
            (EPOCHS, serde_json::to_vec(&state.epochs)?),
        ];
        if let Some(purged) = state.last_purged {
            meta.push((LAST_PURGED, serde_json::to_vec(&purged)?));
        }
        // No entry is left: every side entry goes with the batches.
        let side = SideChange {
            drop_from: Some(0),
            ..SideChange::default()
        };
        self.commit_meta(&meta, &side, Durability::Immediate)?;
        self.log.reset_to(offset)?;
        state.positions.clear();
        state.side.clear();
        state.end_offset = offset;
        state.pending_reset = false;
        Ok(())
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, IndexState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn read_meta<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, PartitionStoreError> {
        let txn = self.meta.begin_read().map_err(meta_err)?;
        let table = txn.open_table(META).map_err(meta_err)?;
        let Some(value) = table.get(key).map_err(meta_err)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(value.value())?))
    }

    pub(super) fn write_meta(
        &self,
        values: &[(&str, Vec<u8>)],
        durability: Durability,
    ) -> Result<(), PartitionStoreError> {
        self.commit_meta(values, &SideChange::default(), durability)
    }
}
