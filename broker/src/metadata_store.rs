//! Durable metadata of a single node: its cluster id and every topic with its id, partition count and
//! config overrides, in a redb database in the data directory (fsync on every commit: these
//! writes are rare and must survive a crash). Shaped as a table of records so that it can
//! become the controller's replicated state machine when the cluster lands.

use crate::error::Result;
use crate::topic_config::TopicConfig;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use uuid::Uuid;

const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
const CLUSTER: TableDefinition<&str, &str> = TableDefinition::new("cluster");
const CLUSTER_ID_KEY: &str = "cluster_id";

/// What is stored for a topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub config: TopicConfig,
}

/// A fresh cluster id: a random UUID as 32 hex digits. A single node keeps its own in this
/// store; a cluster node proposes one to the controller, which keeps the first.
pub fn new_cluster_id() -> String {
    Uuid::new_v4().simple().to_string()
}

pub struct MetadataStore {
    db: Database,
}

impl MetadataStore {
    pub fn open(path: &Path) -> Result<MetadataStore> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(TOPICS)?;
            let mut cluster = txn.open_table(CLUSTER)?;
            if cluster.get(CLUSTER_ID_KEY)?.is_none() {
                cluster.insert(CLUSTER_ID_KEY, new_cluster_id().as_str())?;
            }
        }
        txn.commit()?;
        Ok(MetadataStore { db })
    }

    pub fn cluster_id(&self) -> Result<String> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CLUSTER)?;
        Ok(table
            .get(CLUSTER_ID_KEY)?
            .map(|guard| guard.value().to_string())
            .unwrap_or_default())
    }

    pub fn topics(&self) -> Result<Vec<TopicRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOPICS)?;
        let mut topics = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            topics.push(serde_json::from_slice(value.value())?);
        }
        Ok(topics)
    }

    pub fn put_topic(&self, topic: &TopicRecord) -> Result<()> {
        let encoded = serde_json::to_vec(topic)?;
        let txn = self.db.begin_write()?;
        txn.open_table(TOPICS)?
            .insert(topic.name.as_str(), encoded.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(TOPICS)?.remove(name)?;
        txn.commit()?;
        Ok(())
    }
}
