//! The storage-neutral transactional interface handlers see.
//!
//! Handlers read and write typed records ([`Table`]), keep unique secondary indexes
//! ([`UniqueIndex`]), record consumed event ids ([`inbox`]) and emit events — all through
//! [`Transaction`], which knows nothing of the engine underneath: the fjall store
//! (`super::store`) implements it, and a PostgreSQL transaction can implement the same trait.
//! Keys: records `<table>\0<id>`, index entries `\x01<index>\0<value>`, inbox `\x02<event id>`.

use super::envelope::EventEnvelope;
use super::error::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

const INDEX_PREFIX: u8 = 1;
const INBOX_PREFIX: u8 = 2;

/// A raw (key, value) pair.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Reads, committed or inside a transaction.
pub trait ReadTx {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;
}

/// What `apply` may do: reads plus buffered writes and events, committed atomically by the
/// engine after `apply` returns Ok (and dropped when it returns a rejection).
pub trait Transaction: ReadTx {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn delete_raw(&mut self, key: Vec<u8>);
    /// Adds an event to the outbox, for `topic`, keyed by its aggregate id.
    fn emit(&mut self, topic: &str, event: EventEnvelope);
}

/// A typed table: JSON records under `<name>\0<id>`.
pub struct Table<T> {
    name: &'static str,
    record: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    pub const fn new(name: &'static str) -> Table<T> {
        Table {
            name,
            record: PhantomData,
        }
    }

    fn key(&self, id: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.name.len() + 1 + id.len());
        key.extend_from_slice(self.name.as_bytes());
        key.push(0);
        key.extend_from_slice(id.as_bytes());
        key
    }

    fn prefix(&self) -> Vec<u8> {
        self.key("")
    }

    pub fn get(&self, tx: &(impl ReadTx + ?Sized), id: &str) -> Result<Option<T>, StoreError> {
        match tx.get_raw(&self.key(id))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn put(
        &self,
        tx: &mut (impl Transaction + ?Sized),
        id: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        tx.put_raw(self.key(id), serde_json::to_vec(record)?);
        Ok(())
    }

    pub fn delete(&self, tx: &mut (impl Transaction + ?Sized), id: &str) {
        tx.delete_raw(self.key(id));
    }

    /// Records whose id starts with `id_prefix`, in id order (a cheap one-to-many index when
    /// ids are `<parent>/<child>`).
    pub fn scan_prefix(
        &self,
        tx: &(impl ReadTx + ?Sized),
        id_prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        tx.scan_raw(&self.key(id_prefix))?
            .into_iter()
            .map(|(_, value)| serde_json::from_slice(&value).map_err(StoreError::from))
            .collect()
    }

    /// Every record, in id order.
    pub fn scan(&self, tx: &(impl ReadTx + ?Sized)) -> Result<Vec<T>, StoreError> {
        tx.scan_raw(&self.prefix())?
            .into_iter()
            .map(|(_, value)| serde_json::from_slice(&value).map_err(StoreError::from))
            .collect()
    }
}

/// A unique secondary index: value -> record id (emails, SKUs). Values are matched exactly;
/// normalise them (e.g. lowercase) before use.
pub struct UniqueIndex {
    name: &'static str,
}

impl UniqueIndex {
    pub const fn new(name: &'static str) -> UniqueIndex {
        UniqueIndex { name }
    }

    fn key(&self, value: &str) -> Vec<u8> {
        let mut key = vec![INDEX_PREFIX];
        key.extend_from_slice(self.name.as_bytes());
        key.push(0);
        key.extend_from_slice(value.as_bytes());
        key
    }

    pub fn get(
        &self,
        tx: &(impl ReadTx + ?Sized),
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(tx
            .get_raw(&self.key(value))?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    pub fn put(&self, tx: &mut (impl Transaction + ?Sized), value: &str, id: &str) {
        tx.put_raw(self.key(value), id.as_bytes().to_vec());
    }

    pub fn delete(&self, tx: &mut (impl Transaction + ?Sized), value: &str) {
        tx.delete_raw(self.key(value));
    }
}

/// The inbox: ids of consumed events, recorded in the same batch as their effect so that a
/// redelivered event is applied at most once.
pub mod inbox {
    use super::{INBOX_PREFIX, ReadTx, StoreError, Transaction};

    fn key(event_id: &str) -> Vec<u8> {
        let mut key = vec![INBOX_PREFIX];
        key.extend_from_slice(event_id.as_bytes());
        key
    }

    pub fn seen(tx: &(impl ReadTx + ?Sized), event_id: &str) -> Result<bool, StoreError> {
        Ok(tx.get_raw(&key(event_id))?.is_some())
    }

    pub fn record(tx: &mut (impl Transaction + ?Sized), event_id: &str) {
        tx.put_raw(key(event_id), Vec::new());
    }
}
