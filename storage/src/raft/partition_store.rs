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
//!
//! Files: this one (the shared handle: open, recovery, the broker's accessors),
//! `partition_entries` (the log operations), `partition_install` (snapshots: the retained
//! batches they carry, and installing them), `partition_log_store` (openraft's traits).

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;

use super::control_batch::EntryBatchError;
use super::partition_index::{Anchor, IndexState};
use super::types::LogId;
use crate::log::{LogConfig, LogError, PartitionLog};

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const VOTE: &str = "vote";
pub(super) const COMMITTED: &str = "committed";
pub(super) const LAST_PURGED: &str = "last_purged";
pub(super) const ANCHOR: &str = "anchor";
pub(super) const EPOCHS: &str = "epochs";
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
}

fn meta_err(e: impl Into<redb::Error>) -> PartitionStoreError {
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
        self.write_meta(&meta, Durability::Immediate)?;
        self.log.reset_to(offset)?;
        state.offsets.clear();
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
}
