//! `Broker`: the node's topics and partitions, and the operations every front end uses —
//! the Kafka handlers, the in-process client and the maintenance tasks share this one core.

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::group::GroupCoordinator;
use crate::metadata_store::{MetadataStore, TopicRecord};
use crate::partition::Partition;
use crate::producer::TransactionCoordinator;
use crate::replication::Replication;
use crate::topic_config::TopicConfig;
use crate::topic_name::TopicName;
use commerce_storage::PartitionLog;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use uuid::Uuid;

/// Kafka's limit on partitions per topic is far higher; this guards the node against a typo
/// creating a hundred thousand directories.
pub(crate) const MAX_PARTITIONS: i32 = 10_000;

pub struct Topic {
    pub name: TopicName,
    pub id: Uuid,
    pub(crate) config: RwLock<TopicConfig>,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn config(&self) -> TopicConfig {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Partition `index` if this node hosts it (a cluster node may hold only some).
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        let at = usize::try_from(index).ok()?;
        match self.partitions.get(at) {
            Some(partition) if partition.index == index => Some(partition),
            _ => self
                .partitions
                .iter()
                .find(|partition| partition.index == index),
        }
    }
}

pub struct Broker {
    config: BrokerConfig,
    /// A single node's own cluster id (a cluster node answers the controller's).
    cluster_id: String,
    pub(crate) store: MetadataStore,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes topic creation and deletion (metadata store + directories).
    pub(crate) admin: Mutex<()>,
    /// Log compaction state for `cleanup.policy=compact` topics.
    cleaner: crate::compaction::Cleaner,
    /// Producer ids, transactional ids and their transactions.
    pub transactions: TransactionCoordinator,
    /// Consumer groups and committed offsets (kept in `__consumer_offsets`).
    groups: GroupCoordinator,
    /// Set in a cluster: topics come from the controller and partitions are Raft groups.
    replication: Option<Arc<Replication>>,
}

impl Broker {
    /// Opens the metadata store and every topic's partition logs (recovering them).
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
        Self::open_with(config, None)
    }

    /// A cluster node's broker: no topic is opened here; the reconciler
    /// ([`crate::replication::run_reconciler`]) opens the partition groups this node holds
    /// as the controller's metadata names them.
    pub fn open_replicated(config: BrokerConfig, replication: Replication) -> Result<Arc<Broker>> {
        Self::open_with(config, Some(Arc::new(replication)))
    }

    fn open_with(
        config: BrokerConfig,
        replication: Option<Arc<Replication>>,
    ) -> Result<Arc<Broker>> {
        std::fs::create_dir_all(config.data_dir.join("topics"))?;
        let store = MetadataStore::open(&config.data_dir.join("metadata.redb"))?;
        let cluster_id = store.cluster_id()?;
        let transactions = TransactionCoordinator::open_for(
            &config.data_dir.join("producers.redb"),
            replication.as_ref().map(|replication| replication.node_id),
        )?;
        let broker = Broker {
            config,
            cluster_id,
            store,
            topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            cleaner: crate::compaction::Cleaner::default(),
            transactions,
            groups: GroupCoordinator::default(),
            replication,
        };
        // A cluster node's topics are the controller's, never the local store's.
        let local_topics = if broker.replication.is_some() {
            Vec::new()
        } else {
            broker.store.topics()?
        };
        for record in local_topics {
            let topic = broker.open_topic(&record)?;
            broker
                .write_topics()
                .insert(record.name.clone(), Arc::new(topic));
        }
        broker.groups.load(&broker)?;
        let broker = Arc::new(broker);
        // Offsets sent with a transaction become the group's when it commits.
        broker
            .transactions
            .set_offset_sink(Arc::new(crate::group::txn_sink::GroupOffsetSink {
                broker: Arc::downgrade(&broker),
            }));
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// The cluster id this node answers: in a cluster, the one the controller decided
    /// (`None` until this node has applied it), so that every node answers the same; on a
    /// single node, its own, kept in its metadata store across restarts.
    pub fn cluster_id(&self) -> Option<String> {
        match &self.replication {
            Some(replication) => replication.metadata.cluster_id(),
            None => Some(self.cluster_id.clone()),
        }
    }

    /// The cluster this node is part of, if it is.
    pub fn replication(&self) -> Option<&Arc<Replication>> {
        self.replication.as_ref()
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write_topics(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.read_topics()
            .values()
            .find(|topic| topic.id == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.read_topics().values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        self.topic(topic)
            .and_then(|topic| topic.partition(index).cloned())
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(format!("{topic}-{index}")))
    }

    pub(crate) fn partition_dir(&self, topic: &TopicName, index: i32) -> PathBuf {
        self.config
            .data_dir
            .join("topics")
            .join(format!("{topic}-{index}"))
    }

    /// Opens (recovering) one partition's log and its producer state.
    pub(crate) fn open_partition(
        &self,
        name: &TopicName,
        index: i32,
        log_config: &commerce_storage::LogConfig,
    ) -> Result<Arc<Partition>> {
        let dir = self.partition_dir(name, index);
        let log = PartitionLog::open(&dir, log_config.clone())?;
        Ok(Arc::new(Partition::open(name.clone(), index, log, &dir)?))
    }

    fn open_topic(&self, record: &TopicRecord) -> Result<Topic> {
        let name = TopicName::parse(&record.name)?;
        let log_config = record.config.log_config(self.config.log_flush);
        let mut partitions = Vec::new();
        for index in 0..record.partitions {
            partitions.push(self.open_partition(&name, index, &log_config)?);
        }
        Ok(Topic {
            name,
            id: record.id,
            config: RwLock::new(record.config.clone()),
            partitions,
        })
    }

    /// Checks a creation request without creating anything (CreateTopics validate_only).
    pub fn validate_new_topic(&self, name: &str, partitions: i32) -> Result<TopicName> {
        let name = TopicName::parse(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(partitions));
        }
        if self.topic(name.as_str()).is_some() {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        Ok(name)
    }

    /// Creates a topic: metadata first (durably), then its partition directories.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
    ) -> Result<Arc<Topic>> {
        self.create_topic_replicated(name, partitions, config, None)
    }

    /// [`Broker::create_topic`] with a replication factor: in a cluster, `None` means the
    /// default ([`crate::replication::DEFAULT_REPLICATION_FACTOR`] or every node); one node
    /// takes only `None` or 1.
    pub fn create_topic_replicated(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        replication_factor: Option<usize>,
    ) -> Result<Arc<Topic>> {
        if let Some(replication) = &self.replication {
            return self.create_through_controller(
                replication,
                name,
                partitions,
                config,
                replication_factor,
            );
        }
        if replication_factor.is_some_and(|factor| factor != 1) {
            return Err(BrokerError::InvalidReplicationFactor(
                replication_factor
                    .and_then(|factor| i16::try_from(factor).ok())
                    .unwrap_or(i16::MAX),
            ));
        }
        let _admin = self
            .admin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = self.validate_new_topic(name, partitions)?;
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            config,
        };
        // Directories first: if opening a log fails, nothing was recorded.
        let topic = Arc::new(self.open_topic(&record)?);
        self.store.put_topic(&record)?;
        self.write_topics().insert(record.name, topic.clone());
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// Creates the topic with the node's defaults unless it exists (Metadata auto-creation,
    /// and services that need their topics).
    pub fn ensure_topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        match self.create_topic(name, self.config.num_partitions, TopicConfig::default()) {
            Err(BrokerError::TopicAlreadyExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string())),
            other => other,
        }
    }

    pub fn delete_topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(replication) = &self.replication {
            return self.delete_through_controller(replication, name);
        }
        let _admin = self
            .admin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        if topic.name.is_internal() {
            // Deleting __consumer_offsets would silently drop every group's offsets.
            return Err(BrokerError::InvalidTopic {
                name: name.to_string(),
                reason: "internal topics cannot be deleted",
            });
        }
        self.store.delete_topic(name)?;
        self.write_topics().remove(name);
        for partition in &topic.partitions {
            // Readers still holding the partition keep their open files; the names go now.
            let dir = self.partition_dir(&topic.name, partition.index);
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), %error, "could not remove a deleted partition's directory");
            }
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic)
    }

    /// Interval flushes, retention and compaction; called periodically by the node.
    pub fn run_maintenance(&self, now_ms: i64) {
        self.transactions.tick(self, now_ms);
        for topic in self.topics() {
            for partition in &topic.partitions {
                if partition.replica().is_some() {
                    // A partition group fsyncs its own appends, and its retention goes
                    // through Raft (`replication::enforce_retention`).
                    continue;
                }
                if let Err(error) = partition.log().flush_if_due() {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "flush failed");
                }
                match partition.log().enforce_retention(now_ms) {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(topic = %topic.name, partition = partition.index, deleted, "retention deleted segments")
                    }
                    Err(error) => {
                        tracing::error!(topic = %topic.name, partition = partition.index, %error, "retention failed")
                    }
                }
            }
        }
        self.cleaner.run(self, now_ms);
    }

    /// Flushes and closes every log (clean shutdown: the next start skips recovery scans).
    pub fn close(&self) {
        for topic in self.topics() {
            for partition in &topic.partitions {
                if let Err(error) = partition.write_producer_snapshot() {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "writing the producer snapshot failed");
                }
                if let Err(error) = partition.log().close() {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "closing the log failed");
                }
            }
        }
    }
}
