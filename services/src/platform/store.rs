//! The fjall implementation of the [`Transaction`] interface: one database per service. A
//! transaction buffers writes (its reads see them) and the engine commits them, with the
//! outbox entries and the command-log position, as ONE atomic batch.
//!
//! Layout of one service database (`<data-dir>/services/<service>/`): keyspace `state` holds
//! records (`<table>\0<id>`), index entries (`\x01<index>\0<value>`) and the inbox
//! (`\x02<event id>`); `log` the command log (entries not yet applied); `outbox` pending
//! events by sequence; `meta` the applied index and the next outbox sequence.

use super::envelope::EventEnvelope;
use super::error::StoreError;
pub use super::transaction::{KeyValue, ReadTx, Table, Transaction, UniqueIndex, inbox};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The last entry applied from the node-local command log the engine had before service
/// groups (an upgraded data directory's).
pub(crate) const META_APPLIED: &[u8] = b"applied_index";
/// The last entry of the service's Raft group applied here.
pub(crate) const META_RAFT_APPLIED: &[u8] = b"raft_applied_index";
pub(crate) const META_OUTBOX_NEXT: &[u8] = b"outbox_next";
/// Present while a snapshot is being installed (see `store_install`): the state is neither
/// the old one nor the new one yet.
pub(crate) const META_INSTALL_PENDING: &[u8] = b"install_pending";

fn producer_sequence_key(topic: &str, partition: i32) -> Vec<u8> {
    format!("producer_sequence/{topic}/{partition}").into_bytes()
}

/// Where an applied command stands in a log: the store records it in the command's batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Position {
    /// Entry `n` of the service's Raft group.
    Raft(u64),
    /// Entry `n` of the node-local command log of an upgraded data directory.
    Upgrade(u64),
}

/// One outbox entry as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub topic: String,
    pub event: EventEnvelope,
    pub traceparent: Option<String>,
}

/// One service's fjall database.
pub struct Store {
    pub(crate) db: Database,
    pub(crate) state: Keyspace,
    pub(crate) log: Keyspace,
    pub(crate) outbox: Keyspace,
    pub(crate) meta: Keyspace,
    /// Set after a failed commit: fjall may hold a half-applied view in memory, so the store
    /// refuses further writes (fjall's own "poisoned" idea) until the node restarts and
    /// recovers from its journal.
    poisoned: AtomicBool,
    /// Set while a snapshot install is under way or was cut short (a restart redoes it): the
    /// state is half old, half new, so the store refuses writes and reports itself unready.
    installing: AtomicBool,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder(path).open()?;
        let state = db.keyspace("state", KeyspaceCreateOptions::default)?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let outbox = db.keyspace("outbox", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let installing = meta.contains_key(META_INSTALL_PENDING)?;
        Ok(Store {
            db,
            state,
            log,
            outbox,
            meta,
            poisoned: AtomicBool::new(false),
            installing: AtomicBool::new(installing),
        })
    }

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        self.check_not_poisoned()?;
        if self.is_installing() {
            return Err(StoreError::Installing);
        }
        Ok(())
    }

    pub(crate) fn check_not_poisoned(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Whether a snapshot install is under way or was cut short (see `store_install`).
    pub(crate) fn is_installing(&self) -> bool {
        self.installing.load(Ordering::Acquire)
    }

    pub(crate) fn set_installing(&self, installing: bool) {
        self.installing.store(installing, Ordering::Release);
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    pub fn is_healthy(&self) -> bool {
        !self.poisoned.load(Ordering::Acquire) && !self.is_installing()
    }

    pub(crate) fn meta_u64(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(match self.meta.get(key)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0),
            None => 0,
        })
    }

    /// Appends a command-log entry and syncs it: after this, the command survives a crash and
    /// is applied (again) by replay.
    #[cfg(test)]
    pub(crate) fn append_log(&self, index: u64, entry: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        self.log.insert(index.to_be_bytes(), entry)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// Log entries after `index`, in order.
    pub(crate) fn log_after(&self, index: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut entries = Vec::new();
        for guard in self.log.range((index + 1).to_be_bytes()..) {
            let (key, value) = guard.into_inner()?;
            if let Ok(bytes) = <[u8; 8]>::try_from(key.as_ref()) {
                entries.push((u64::from_be_bytes(bytes), value.to_vec()));
            }
        }
        Ok(entries)
    }

    /// A write buffer over the committed state.
    pub(crate) fn begin(&self) -> WriteTx<'_> {
        WriteTx {
            store: self,
            writes: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Commits the buffered writes, the emitted events (into the outbox, numbered from the
    /// stored next sequence) and the applied log index in one atomic batch. Only the engine
    /// calls it, one command at a time.
    pub(crate) fn commit(
        &self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        events: Vec<(String, EventEnvelope)>,
        traceparent: Option<&str>,
        position: Position,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut batch = self.db.batch();
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(&self.state, key, value),
                None => batch.remove(&self.state, key),
            }
        }
        // Starts at 0, as a Kafka producer's first sequence does.
        let mut next = self.meta_u64(META_OUTBOX_NEXT)?;
        for (topic, event) in events {
            let entry = OutboxEntry {
                topic,
                event,
                traceparent: traceparent.map(str::to_string),
            };
            batch.insert(
                &self.outbox,
                next.to_be_bytes(),
                serde_json::to_vec(&entry)?,
            );
            next += 1;
        }
        batch.insert(&self.meta, META_OUTBOX_NEXT, next.to_be_bytes());
        match position {
            Position::Raft(index) => {
                batch.insert(&self.meta, META_RAFT_APPLIED, index.to_be_bytes());
            }
            Position::Upgrade(index) => {
                batch.insert(&self.meta, META_APPLIED, index.to_be_bytes());
                batch.remove(&self.log, index.to_be_bytes());
            }
        }
        // The entry is already durable in the Raft log, so this batch needs no fsync of its
        // own: if a crash loses it, Raft applies the entry again on restart.
        if let Err(error) = batch.commit() {
            self.poison();
            return Err(error.into());
        }
        Ok(())
    }

    /// Pending outbox entries, oldest first, at most `limit`.
    pub(crate) fn outbox_pending(
        &self,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let mut pending = Vec::new();
        for guard in self.outbox.iter().take(limit) {
            let (key, value) = guard.into_inner()?;
            if let Ok(bytes) = <[u8; 8]>::try_from(key.as_ref()) {
                pending.push((u64::from_be_bytes(bytes), serde_json::from_slice(&value)?));
            }
        }
        Ok(pending)
    }

    /// The next producer sequence for `topic`/`partition`.
    pub(crate) fn producer_sequence(&self, topic: &str, partition: i32) -> Result<u64, StoreError> {
        self.meta_u64(&producer_sequence_key(topic, partition))
    }

    /// Marks an outbox entry published (removes it) and advances that partition's producer
    /// sequence, in one batch: a crash leaves both as they were, so the re-send carries the
    /// same sequence.
    pub(crate) fn outbox_done(
        &self,
        seq: u64,
        topic: &str,
        partition: i32,
        next_sequence: u64,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut batch = self.db.batch();
        batch.remove(&self.outbox, seq.to_be_bytes());
        batch.insert(
            &self.meta,
            producer_sequence_key(topic, partition),
            next_sequence.to_be_bytes(),
        );
        batch.commit()?;
        Ok(())
    }

    /// The last entry of the service's Raft group applied here (0 before any).
    pub(crate) fn raft_applied(&self) -> Result<u64, StoreError> {
        self.meta_u64(META_RAFT_APPLIED)
    }

    /// Applies a relay's `OutboxPublished` record at Raft entry `index`: drops the outbox
    /// entries through `through` and raises each producer sequence to the recorded one (a
    /// leader's own relay may be further along already; a sequence never goes back).
    pub(crate) fn record_published(
        &self,
        through: u64,
        sequences: &[super::outbox::ProducerSequence],
        index: u64,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut batch = self.db.batch();
        for guard in self.outbox.range(..=through.to_be_bytes()) {
            let key = guard.key()?;
            batch.remove(&self.outbox, key.to_vec());
        }
        for sequence in sequences {
            let current = self.producer_sequence(&sequence.topic, sequence.partition)?;
            if sequence.next > current {
                batch.insert(
                    &self.meta,
                    producer_sequence_key(&sequence.topic, sequence.partition),
                    sequence.next.to_be_bytes(),
                );
            }
        }
        batch.insert(&self.meta, META_RAFT_APPLIED, index.to_be_bytes());
        if let Err(error) = batch.commit() {
            self.poison();
            return Err(error.into());
        }
        Ok(())
    }

    /// Flushes the journal to disk (used on a clean stop).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }
}

impl ReadTx for Store {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.get(key)?.map(|value| value.to_vec()))
    }

    fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        for guard in self.state.prefix(prefix) {
            let (key, value) = guard.into_inner()?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }
}

/// The fjall transaction: reads see the committed state overlaid with this command's own
/// writes.
pub struct WriteTx<'a> {
    store: &'a Store,
    pub(crate) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(crate) events: Vec<(String, EventEnvelope)>,
}

impl ReadTx for WriteTx<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.store.get_raw(key),
        }
    }

    fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.store.scan_raw(prefix)?.into_iter().collect();
        for (key, value) in self.writes.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

impl Transaction for WriteTx<'_> {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete_raw(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    fn emit(&mut self, topic: &str, event: EventEnvelope) {
        self.events.push((topic.to_string(), event));
    }
}
