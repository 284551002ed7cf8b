//! Persistence of the coordinator's state in `__consumer_offsets`: creating the topic,
//! appending records for a group to its partition, writing a group's metadata when its
//! generation moves on, and replaying the topic at start.

use super::offsets::{self, CommittedOffset, GroupRecord, Key};
use super::state::Group;
use super::{GroupCoordinator, Inner, OFFSETS_PARTITIONS, OFFSETS_TOPIC, now_ms};
use crate::broker::{Broker, Topic};
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::record_batch;
use bytes::Bytes;
use kafka_protocol::records::Record;
use std::sync::Arc;

impl GroupCoordinator {
    /// Rebuilds groups and offsets by replaying `__consumer_offsets` (if it exists). A batch
    /// that does not decode (the topic is writable by Produce) is logged and skipped rather
    /// than keeping the node from starting.
    pub fn load(&self, broker: &Broker) -> Result<()> {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let mut inner = self.lock();
        let mut records = 0usize;
        for partition in &topic.partitions {
            records += replay(&mut inner, partition)?.0;
        }
        tracing::info!(
            groups = inner.groups.len(),
            records,
            "group coordinator loaded {OFFSETS_TOPIC}"
        );
        Ok(())
    }

    /// The offsets topic, created compacted on first need (as Kafka does).
    pub fn offsets_topic(&self, broker: &Broker) -> Result<Arc<Topic>> {
        broker.internal_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS)
    }

    /// Appends records for one group to its `__consumer_offsets` partition.
    pub(super) fn append(
        &self,
        broker: &Broker,
        group_id: &str,
        records: Vec<(Key, Option<Bytes>)>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let topic = self.offsets_topic(broker)?;
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let index = offsets::partition_for(group_id, count);
        let partition = topic.partition(index).ok_or_else(|| {
            BrokerError::UnknownTopicOrPartition(format!("{OFFSETS_TOPIC}-{index}"))
        })?;
        let timestamp = now_ms();
        let records: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| {
                let offset = i64::try_from(i).unwrap_or(0);
                record_batch::plain_record(offset, timestamp, Some(key.encode()), value)
            })
            .collect();
        let mut batch = record_batch::encode_uncompressed(&records)
            .map_err(|error| BrokerError::Metadata(format!("cannot encode offsets: {error}")))?;
        partition.append(&mut batch)?;
        Ok(())
    }
}

/// Applies every committed record of one `__consumer_offsets` partition to `inner`, in
/// log order; returns how many it applied and the offset it replayed to. Transactional
/// offsets are staged, and the transaction's marker commits or drops them, as when they
/// were applied live (`txn_offsets`).
pub(super) fn replay(inner: &mut Inner, partition: &Partition) -> Result<(usize, i64)> {
    let index = partition.index;
    let mut applied = 0usize;
    let replayed_to = crate::log_replay::replay_records(partition, |record| {
        if record.control {
            if let Some(commit) = crate::log_replay::marker_commits(&record) {
                inner.end_transaction(index, record.producer_id, commit, record.offset);
            }
            return;
        }
        let Some(key) = record.key.clone().and_then(Key::decode) else {
            return;
        };
        if record.transactional {
            inner.stage_replayed(index, &record, key);
        } else {
            apply(inner, key, record.value);
        }
        applied += 1;
    })?;
    Ok((applied, replayed_to))
}

/// Writes a group's metadata record when its generation moved on. A failure is logged, not
/// returned: the group keeps working and the record is rewritten at the next generation;
/// only the generation number after a restart would be older.
pub(super) fn persist_if_dirty(broker: &Broker, coordinator: &GroupCoordinator, group: &mut Group) {
    if !group.take_dirty() {
        return;
    }
    let record = GroupRecord {
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        generation: group.generation,
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        timestamp: now_ms(),
    };
    let key = Key::Group {
        group: group.id.clone(),
    };
    if let Err(error) = coordinator.append(broker, &group.id, vec![(key, Some(record.encode()))]) {
        tracing::error!(group = %group.id, %error, "cannot persist group metadata");
    }
}

/// Replays one `__consumer_offsets` record into the coordinator's state.
fn apply(inner: &mut Inner, key: Key, value: Option<Bytes>) {
    match (key, value) {
        (
            Key::Offset {
                group,
                topic,
                partition,
            },
            Some(value),
        ) => {
            if let Some(offset) = CommittedOffset::decode(value) {
                inner
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                inner
                    .offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), offset);
            }
        }
        (
            Key::Offset {
                group,
                topic,
                partition,
            },
            None,
        ) => {
            if let Some(offsets) = inner.offsets.get_mut(&group) {
                offsets.remove(&(topic, partition));
            }
        }
        (Key::Group { group }, Some(value)) => {
            if let Some(record) = GroupRecord::decode(value) {
                let protocol_type = Some(record.protocol_type).filter(|value| !value.is_empty());
                inner.groups.insert(
                    group.clone(),
                    Group::restored(&group, record.generation, protocol_type),
                );
            }
        }
        (Key::Group { group }, None) => {
            inner.groups.remove(&group);
            inner.offsets.remove(&group);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::group::commit::{Commit, PartitionCommit};
    use crate::topic_config::TopicConfig;
    use kafka_protocol::ResponseError;

    fn commit(group: &str, offsets: &[(&str, i32, i64)]) -> Commit {
        Commit {
            group_id: group.to_string(),
            member_id: String::new(),
            instance_id: None,
            generation: -1,
            offsets: offsets
                .iter()
                .map(|(topic, partition, offset)| PartitionCommit {
                    topic: topic.to_string(),
                    partition: *partition,
                    offset: *offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn commits_and_deletions_survive_reopening_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            BrokerConfig::single_node(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        let broker = Broker::open(config.clone()).unwrap();
        broker.create_topic("t", 2, TopicConfig::default()).unwrap();
        let results = broker.groups().commit(
            &broker,
            commit("g", &[("t", 0, 5), ("t", 1, 7), ("missing", 0, 1)]),
        );
        assert_eq!(
            results,
            vec![None, None, Some(ResponseError::UnknownTopicOrPartition)]
        );
        // A later commit wins; a deleted group leaves tombstones.
        broker.groups().commit(&broker, commit("g", &[("t", 1, 9)]));
        broker.groups().commit(&broker, commit("h", &[("t", 0, 1)]));
        assert_eq!(broker.groups().delete_group(&broker, "h"), None);
        broker.close();
        drop(broker);

        let broker = Broker::open(config).unwrap();
        let offsets = broker.groups().fetch_offsets("g");
        let committed: Vec<(String, i32, i64)> = offsets
            .iter()
            .map(|((topic, partition), value)| (topic.clone(), *partition, value.offset))
            .collect();
        assert_eq!(committed, vec![("t".into(), 0, 5), ("t".into(), 1, 9)]);
        assert!(broker.groups().fetch_offsets("h").is_empty());
        let groups: Vec<String> = broker
            .groups()
            .list()
            .into_iter()
            .map(|(id, ..)| id)
            .collect();
        assert_eq!(groups, vec!["g".to_string()]);
    }
}
