//! Installing a snapshot (see `store_snapshot`) into a service store: in place, in batches
//! of bounded size, and redoable after a crash at any point.
//!
//! In place, because the service's handles (the engine, its readers, its relay) share one
//! open `Store` and fjall cannot swap a database under them. So:
//! 1. The snapshot's header: a store that has applied as far already keeps its own state (a
//!    node reopening its own snapshot; nothing more is read).
//! 2. The whole snapshot is checked in one streaming pass (framing, keyspace tags, key
//!    order, end mark): bad input changes nothing.
//! 3. The store is marked mid-install (`install_pending` in `meta`, the applied index
//!    removed) and synced. From here to step 5 it refuses commits and reports itself
//!    unhealthy, across a restart too. The group's state machine adapter made the snapshot
//!    file durable before calling in and installs it again on open (the storage crate's
//!    `snapshot_install`), which starts over here.
//! 4. The replicated keyspaces are cleared, then the snapshot's records written, in batches
//!    of at most [`INSTALL_BATCH`] bytes: memory is one batch, whatever the store's size.
//! 5. One last batch writes the applied index and removes the mark; synced.
//!
//! After a crash the store is its old self (before step 3), or marked and redone into the
//! new one; it never serves a mix.

use super::store::{META_INSTALL_PENDING, META_RAFT_APPLIED, Store};
use super::store_snapshot::{META_TAG, SnapshotError, SnapshotReader};
use fjall::{Keyspace, OwnedWriteBatch as WriteBatch, PersistMode, UserKey};
use std::io::{Read, Seek, SeekFrom};

/// The most an install writes in one batch (keys and values; fjall holds a batch in memory
/// until it commits).
pub(crate) const INSTALL_BATCH: usize = 4 << 20;

impl Store {
    /// Replaces the replicated state with the snapshot in `source` (buffered), unless this
    /// store has applied as far already. Returns the store's applied index after.
    pub(crate) fn install_snapshot(
        &self,
        source: &mut (impl Read + Seek + ?Sized),
    ) -> Result<u64, SnapshotError> {
        self.install_snapshot_in_batches(source, INSTALL_BATCH)
    }

    /// [`Store::install_snapshot`] with batches of at most `batch_bytes`.
    pub(crate) fn install_snapshot_in_batches(
        &self,
        source: &mut (impl Read + Seek + ?Sized),
        batch_bytes: usize,
    ) -> Result<u64, SnapshotError> {
        source.seek(SeekFrom::Start(0))?;
        let applied = SnapshotReader::open(&mut *source)?.applied;
        let own = self.raft_applied()?;
        if !self.is_installing() && own >= applied {
            return Ok(own);
        }
        self.check_not_poisoned()?;

        source.seek(SeekFrom::Start(0))?;
        let mut reader = SnapshotReader::open(&mut *source)?;
        while reader.next_record()?.is_some() {}

        let mut batch = self.db.batch();
        batch.insert(&self.meta, META_INSTALL_PENDING, applied.to_be_bytes());
        batch.remove(&self.meta, META_RAFT_APPLIED);
        self.commit_install(batch)?;
        self.db.persist(PersistMode::SyncData)?;
        self.set_installing(true);

        let mut batches = Batches::new(self, batch_bytes);
        for (tag, keyspace) in self.replicated_keyspaces() {
            // The iterator reads one point in time: the batches it removes are not seen.
            for guard in keyspace.iter() {
                let key = guard.key()?;
                if tag == META_TAG && key.as_ref() == META_INSTALL_PENDING {
                    continue;
                }
                batches.remove(keyspace, key)?;
            }
        }
        // A key removed and written again in one batch would share one sequence number:
        // the removals are committed on their own.
        batches.flush()?;
        source.seek(SeekFrom::Start(0))?;
        let mut reader = SnapshotReader::open(&mut *source)?;
        while let Some(record) = reader.next_record()? {
            let meta = record.tag == META_TAG;
            if meta && [META_RAFT_APPLIED, META_INSTALL_PENDING].contains(&record.key.as_slice()) {
                continue;
            }
            if let Some((_, keyspace)) = self
                .replicated_keyspaces()
                .into_iter()
                .find(|(tag, _)| *tag == record.tag)
            {
                batches.insert(keyspace, record.key, record.value)?;
            }
        }

        let mut batch = batches.into_batch();
        batch.insert(&self.meta, META_RAFT_APPLIED, applied.to_be_bytes());
        batch.remove(&self.meta, META_INSTALL_PENDING);
        self.commit_install(batch)?;
        self.db.persist(PersistMode::SyncData)?;
        self.set_installing(false);
        Ok(applied)
    }

    /// A failed commit poisons the store, as any other (see [`Store::commit`]).
    fn commit_install(&self, batch: WriteBatch) -> Result<(), SnapshotError> {
        batch.commit().map_err(|error| {
            self.poison();
            SnapshotError::from(error)
        })
    }
}

/// A write batch committed whenever it holds `limit` bytes.
struct Batches<'a> {
    store: &'a Store,
    batch: WriteBatch,
    bytes: usize,
    limit: usize,
}

impl<'a> Batches<'a> {
    fn new(store: &'a Store, limit: usize) -> Self {
        Batches {
            store,
            batch: store.db.batch(),
            bytes: 0,
            limit,
        }
    }

    fn remove(&mut self, keyspace: &Keyspace, key: UserKey) -> Result<(), SnapshotError> {
        self.bytes += key.len();
        self.batch.remove(keyspace, key);
        self.flush_when_full()
    }

    fn insert(
        &mut self,
        keyspace: &Keyspace,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), SnapshotError> {
        self.bytes += key.len() + value.len();
        self.batch.insert(keyspace, key, value);
        self.flush_when_full()
    }

    fn flush_when_full(&mut self) -> Result<(), SnapshotError> {
        if self.bytes >= self.limit {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        let batch = std::mem::replace(&mut self.batch, self.store.db.batch());
        self.bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        self.store.commit_install(batch)
    }

    fn into_batch(self) -> WriteBatch {
        self.batch
    }
}
