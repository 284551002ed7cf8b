//! openraft's `RaftLogStorage` / `RaftLogReader` over a [`PartitionRaftLog`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::Durability;
use serde::Serialize;

use super::network::MAX_APPEND_BYTES;
use super::partition_store::{COMMITTED, PartitionRaftLog, PartitionStoreError, VOTE};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

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

    /// What replication sends in one AppendEntries: entries up to
    /// [`MAX_APPEND_BYTES`] of batches, so a follower far behind is not sent (or read for)
    /// hundreds of MiB at once.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared
            .read_entries_limited(start, end, MAX_APPEND_BYTES)
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
