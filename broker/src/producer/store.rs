//! Durable producer metadata, in its own redb database (`producers.redb`): the producer-id
//! high-water mark and each transactional id's record. Every commit fsyncs: an id handed out
//! must never be handed out again, and an epoch bump must survive a crash, or a fenced
//! producer could come back.
//!
//! Why redb and not an internal `__transaction_state` topic as Kafka does: the record per
//! transactional id is overwritten on every state change, which a log without compaction
//! (ours has none yet) would grow without bound; redb overwrites in place. With replication
//! this becomes the coordinator's replicated state machine, like the metadata store.

use super::coordinator::TxnMetadata;
use crate::error::Result;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const COUNTERS: TableDefinition<&str, i64> = TableDefinition::new("counters");
const TRANSACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("transactions");
const PRODUCER_ID_HIGH_WATER: &str = "producer_id_high_water";

pub struct ProducerStore {
    db: Database,
}

impl ProducerStore {
    pub fn open(path: &Path) -> Result<ProducerStore> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(COUNTERS)?;
            txn.open_table(TRANSACTIONS)?;
        }
        txn.commit()?;
        Ok(ProducerStore { db })
    }

    /// The first producer id not yet promised to anyone.
    pub fn producer_id_high_water(&self) -> Result<i64> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(COUNTERS)?;
        Ok(table
            .get(PRODUCER_ID_HIGH_WATER)?
            .map_or(0, |guard| guard.value()))
    }

    pub fn set_producer_id_high_water(&self, value: i64) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(COUNTERS)?
            .insert(PRODUCER_ID_HIGH_WATER, value)?;
        txn.commit()?;
        Ok(())
    }

    pub fn transactions(&self) -> Result<Vec<TxnMetadata>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TRANSACTIONS)?;
        let mut all = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            all.push(serde_json::from_slice(value.value())?);
        }
        Ok(all)
    }

    pub fn put_transaction(&self, metadata: &TxnMetadata) -> Result<()> {
        let encoded = serde_json::to_vec(metadata)?;
        let txn = self.db.begin_write()?;
        txn.open_table(TRANSACTIONS)?
            .insert(metadata.transactional_id.as_str(), encoded.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}
