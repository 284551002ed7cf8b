//! Topic administration beyond create and delete: growing a topic, changing its config, and
//! moving a partition's log start (DeleteRecords). Each change is validated first, recorded
//! durably in the metadata store, and only then applied to the live topic, so a refused or
//! failed request changes nothing. Serialized with topic creation and deletion.

use crate::broker::{Broker, MAX_PARTITIONS, Topic};
use crate::error::{BrokerError, Result};
use crate::metadata_store::TopicRecord;
use crate::topic_config::TopicConfig;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// How long a cluster's DeleteRecords waits for a majority to take the new log start.
const DELETE_RECORDS_TIMEOUT: Duration = Duration::from_secs(10);

impl Broker {
    fn admin_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn existing_topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))
    }

    /// A coordinator's internal topic (`__consumer_offsets`, `__transaction_state`), created
    /// on first need as Kafka does. Compaction alone must decide what goes: the log applies
    /// time and size retention whatever cleanup.policy says, and an idle group's offsets or
    /// a quiet transactional id's epoch must not age out.
    pub fn internal_topic(&self, name: &str, partitions: i32) -> Result<Arc<Topic>> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        let config = TopicConfig::from_overrides([
            ("cleanup.policy", "compact"),
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
        ])?;
        match self.create_topic(name, partitions, config) {
            Err(BrokerError::TopicAlreadyExists(_)) => self.existing_topic(name),
            other => other,
        }
    }

    /// Grows `name` to `count` partitions (CreatePartitions). Kafka refuses a count that is
    /// not larger than the current one with INVALID_PARTITIONS; so do we.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        if let Some(replication) = self.replication() {
            return self.add_partitions_through_controller(replication, name, count, validate_only);
        }
        let _admin = self.admin_lock();
        let topic = self.existing_topic(name)?;
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if count <= current || count > MAX_PARTITIONS {
            return Err(BrokerError::InvalidPartitions(count));
        }
        if validate_only {
            return Ok(());
        }
        let config = topic.config();
        let log_config = config.log_config(self.config().log_flush);
        let mut partitions = topic.partitions.clone();
        for index in current..count {
            partitions.push(self.open_partition(&topic.name, index, &log_config)?);
        }
        let record = TopicRecord {
            name: topic.name.to_string(),
            id: topic.id,
            partitions: count,
            config: config.clone(),
        };
        self.store.put_topic(&record)?;
        // The old `Topic` stays valid for whoever holds it; new lookups see the larger one.
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            config: RwLock::new(config),
            partitions,
        });
        self.write_topics().insert(record.name, grown);
        tracing::info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces `name`'s config with what `change` makes of the current one (AlterConfigs,
    /// IncrementalAlterConfigs). The result is validated as a whole; unless `validate_only`
    /// it is persisted and applied to the partition logs. Returns the new config.
    pub fn alter_topic_config(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&TopicConfig) -> Result<TopicConfig>,
    ) -> Result<TopicConfig> {
        let _admin = self.admin_lock();
        let topic = self.existing_topic(name)?;
        let changed = change(&topic.config())?;
        let changed = TopicConfig::from_overrides(
            changed
                .overrides
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )?;
        if validate_only {
            return Ok(changed);
        }
        if let Some(replication) = self.replication() {
            drop(_admin);
            self.set_config_through_controller(replication, name, &changed)?;
            return Ok(changed);
        }
        self.store.put_topic(&TopicRecord {
            name: topic.name.to_string(),
            id: topic.id,
            partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
            config: changed.clone(),
        })?;
        *topic.config.write().unwrap_or_else(PoisonError::into_inner) = changed.clone();
        let log_config = changed.log_config(self.config().log_flush);
        for partition in &topic.partitions {
            partition.log().set_config(log_config.clone());
        }
        tracing::info!(topic = %name, overrides = ?changed.overrides, "changed topic config");
        Ok(changed)
    }

    /// Moves a partition's log start to `offset` (DeleteRecords); -1 means the high
    /// watermark. Returns the new low watermark.
    pub fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        let partition = match self.partition(topic, partition) {
            // A cluster node holding no replica: the client's metadata is stale.
            Err(BrokerError::UnknownTopicOrPartition(name))
                if self.replication().is_some() && self.topic(topic).is_some() =>
            {
                return Err(BrokerError::NotLeaderOrFollower(name));
            }
            found => found?,
        };
        if let Some(replica) = partition.replica() {
            // A partition group's log start moves only through Raft, on every replica.
            let name = format!("{topic}-{}", partition.index);
            let moved = replica.delete_records(&name, offset, DELETE_RECORDS_TIMEOUT);
            return crate::replication::wait_blocking(moved)?;
        }
        let target = if offset == -1 {
            partition.high_watermark()
        } else {
            offset
        };
        Ok(partition.log().advance_log_start(target)?)
    }
}
