//! The durable Raft log of one group: entries, vote, committed and purged log ids.
//!
//! Kept in one redb file per group (`<group dir>/raft-log.redb`). Why redb and not a
//! segmented file: openraft needs atomic truncation of a suffix, purging of a prefix and a
//! durable vote ordered with the appends; redb gives all three in one fsynced transaction,
//! and a group's files are removed by removing its directory. Cost: every append is one
//! fsynced commit (fine for the controller and for service groups; partition groups use the
//! other kind, `partition_store`, where the Raft log is the partition's own segment log).
//!
//! Writes run on tokio's blocking pool (they fsync); reads are short and run in place.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::entry_codec;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

/// One group's log store; cheap to clone (the log reader handed to replication tasks is a
/// clone of it).
#[derive(Clone)]
pub struct GroupLogStore {
    db: Arc<Database>,
}

impl GroupLogStore {
    /// Opens (or creates) the log kept in `dir`.
    pub fn open(dir: &Path) -> Result<Self, redb::Error> {
        std::fs::create_dir_all(dir).map_err(redb::Error::Io)?;
        let db = Database::create(dir.join("raft-log.redb"))?;
        // Create both tables up front so readers never meet a missing table.
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    // openraft's own error type, returned as its traits return it.
    #[allow(clippy::result_large_err)]
    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| read_err(&e))?;
        let table = txn.open_table(META).map_err(|e| read_err(&e))?;
        let Some(value) = table.get(key).map_err(|e| read_err(&e))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| read_err(&e))
    }

    /// Runs one write transaction on the blocking pool: a commit may fsync, and a worker
    /// thread stalled on the disk would delay every other group's heartbeats. Awaiting it
    /// keeps writes serialized, as openraft requires.
    async fn write_txn<F>(&self, durability: Durability, write: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            write(&txn)?;
            txn.commit()?;
            Ok(())
        })
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
        self.write_txn(durability, move |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    // openraft's own error type, returned as its traits return it.
    #[allow(clippy::result_large_err)]
    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| read_err(&e))?;
        let table = txn.open_table(LOG).map_err(|e| read_err(&e))?;
        let Some(last) = table.last().map_err(|e| read_err(&e))? else {
            return Ok(None);
        };
        let entry = entry_codec::decode(last.1.value()).map_err(|e| read_err(&e))?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| read_err(&e))?;
        let table = txn.open_table(LOG).map_err(|e| read_err(&e))?;
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in table.range::<u64>((start, end)).map_err(|e| read_err(&e))? {
            let (_, value) = item.map_err(|e| read_err(&e))?;
            entries.push(entry_codec::decode(value.value()).map_err(|e| read_err(&e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, Durability::Immediate).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: the committed id only saves re-applying entries after a restart. If a
        // crash loses the latest value, an older one is read back and the leader tells the
        // node the rest; it becomes durable with the next fsynced commit anyway.
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
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
        let encoded = entries
            .into_iter()
            .map(|entry| entry_codec::encode(&entry).map(|bytes| (entry.log_id.index, bytes)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| write_err(&e))?;
        self.write_txn(Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in &encoded {
                table.insert(index, bytes.as_slice())?;
            }
            Ok(())
        })
        .await?;
        // The commit above fsynced, so the entries are on disk.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_txn(Durability::Immediate, move |txn| {
            txn.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| write_err(&e))?;
        // The purge mark and the removal commit together, so a crash never leaves a hole
        // between the last purged id and the first entry.
        self.write_txn(Durability::Immediate, move |txn| {
            txn.open_table(META)?
                .insert(LAST_PURGED, bytes.as_slice())?;
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
    }
}
