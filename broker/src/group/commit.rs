//! Committing and deleting offsets: who may commit (Kafka's rules for members, generations and
//! "simple" commits by tools outside any generation) and the durable write.

use super::offsets::{CommittedOffset, Key};
use super::state::{Group, GroupState};
use super::{GroupCoordinator, now_ms};
use crate::broker::Broker;
use kafka_protocol::ResponseError;

/// Kafka's offset.metadata.max.bytes default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// One OffsetCommit request, flattened.
pub struct Commit {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// -1 for a commit from outside any generation (admin tools, manual assignment).
    pub generation: i32,
    pub offsets: Vec<PartitionCommit>,
}

pub struct PartitionCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl GroupCoordinator {
    /// Commits what it can; one result per requested partition, in request order.
    pub fn commit(&self, broker: &Broker, commit: Commit) -> Vec<Option<ResponseError>> {
        let fail_all = |error: ResponseError| {
            commit
                .offsets
                .iter()
                .map(|_| Some(error))
                .collect::<Vec<_>>()
        };
        if commit.group_id.is_empty() {
            return fail_all(ResponseError::InvalidGroupId);
        }
        if let Err(error) = self.owns(broker, &commit.group_id) {
            return fail_all(error);
        }
        let mut inner = self.lock();
        let consumer_group = inner
            .live_consumer_group(&commit.group_id)
            .map(|group| group.check_commit(&commit.member_id, commit.generation));
        match (consumer_group, inner.groups.get(&commit.group_id)) {
            (Some(Some(error)), _) => return fail_all(error),
            (Some(None), _) => {}
            (None, Some(group)) => {
                if let Some(error) = may_commit(group, &commit) {
                    return fail_all(error);
                }
            }
            (None, None) if commit.generation < 0 && commit.member_id.is_empty() => {}
            (None, None) => return fail_all(ResponseError::IllegalGeneration),
        }
        self.write_offsets(broker, &mut inner, &commit.group_id, &commit.offsets)
    }

    /// Makes the offsets of a committed transaction (TxnOffsetCommit, validated against the
    /// member and generation when it was sent) the group's committed offsets, as Kafka's
    /// coordinator does when the transaction marker is written: no membership check here.
    pub fn commit_transactional(
        &self,
        broker: &Broker,
        group_id: &str,
        offsets: &[PartitionCommit],
    ) -> Vec<Option<ResponseError>> {
        let mut inner = self.lock();
        self.write_offsets(broker, &mut inner, group_id, offsets)
    }

    /// Writes accepted offsets to `__consumer_offsets`, then applies them in memory.
    fn write_offsets(
        &self,
        broker: &Broker,
        inner: &mut super::Inner,
        group_id: &str,
        offsets: &[PartitionCommit],
    ) -> Vec<Option<ResponseError>> {
        let (results, records) = accepted(broker, offsets);
        let encoded = records
            .iter()
            .map(|(key, value)| (offset_key(group_id, key), Some(value.encode())))
            .collect();
        if let Err(error) = self.append(broker, group_id, encoded) {
            tracing::error!(group = %group_id, %error, "cannot write offsets");
            return unavailable(results);
        }
        inner.apply_offsets(group_id, records);
        results
    }

    /// OffsetDelete: removes a group's offsets for partitions of topics it does not consume.
    /// The group-level error is GROUP_ID_NOT_FOUND; per partition, GROUP_SUBSCRIBED_TO_TOPIC
    /// when a current member subscribes to the topic.
    pub fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        let subscribed = super::subscription::subscribed_topics(group);
        let mut results = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                results.push(Some(ResponseError::GroupSubscribedToTopic));
                continue;
            }
            if broker.partition(topic, *partition).is_err() {
                results.push(Some(ResponseError::UnknownTopicOrPartition));
                continue;
            }
            let key = Key::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            tombstones.push((key, None));
            results.push(None);
        }
        if let Err(error) = self.append(broker, group_id, tombstones.clone()) {
            tracing::error!(group = group_id, %error, "cannot write offset tombstones");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(offsets) = inner.offsets.get_mut(group_id) {
            for (key, _) in tombstones {
                if let Key::Offset {
                    topic, partition, ..
                } = key
                {
                    offsets.remove(&(topic, partition));
                }
            }
        }
        Ok(results)
    }
}

/// A committed offset's partition and value.
pub(super) type Accepted = ((String, i32), CommittedOffset);

/// Checks each offset of a commit: one result per requested partition, in request order,
/// and the offsets that passed.
pub(super) fn accepted(
    broker: &Broker,
    offsets: &[PartitionCommit],
) -> (Vec<Option<ResponseError>>, Vec<Accepted>) {
    let mut results = Vec::with_capacity(offsets.len());
    let mut records = Vec::new();
    let timestamp = now_ms();
    for wanted in offsets {
        let error = if broker.partition(&wanted.topic, wanted.partition).is_err() {
            Some(ResponseError::UnknownTopicOrPartition)
        } else if wanted.metadata.len() > MAX_METADATA_BYTES {
            Some(ResponseError::OffsetMetadataTooLarge)
        } else {
            let value = CommittedOffset {
                offset: wanted.offset,
                leader_epoch: wanted.leader_epoch,
                metadata: wanted.metadata.clone(),
                commit_timestamp: timestamp,
            };
            records.push(((wanted.topic.clone(), wanted.partition), value));
            None
        };
        results.push(error);
    }
    (results, records)
}

/// The `__consumer_offsets` key of a group's offset for a partition.
pub(super) fn offset_key(group_id: &str, (topic, partition): &(String, i32)) -> Key {
    Key::Offset {
        group: group_id.to_string(),
        topic: topic.clone(),
        partition: *partition,
    }
}

/// Nothing was acknowledged: every accepted partition reports the failure.
pub(super) fn unavailable(results: Vec<Option<ResponseError>>) -> Vec<Option<ResponseError>> {
    results
        .into_iter()
        .map(|result| result.or(Some(ResponseError::CoordinatorNotAvailable)))
        .collect()
}

impl super::Inner {
    /// Makes `records` the group's committed offsets in memory (after they are durable).
    pub(super) fn apply_offsets(&mut self, group_id: &str, records: Vec<Accepted>) {
        let group_id = group_id.to_string();
        if !self.consumer_groups.contains_key(&group_id) {
            self.groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id));
        }
        self.offsets.entry(group_id).or_default().extend(records);
    }
}

/// Kafka's checks before a commit: a simple commit (generation -1, no member id) only into a
/// group without members; otherwise the member must be current and in this generation.
fn may_commit(group: &Group, commit: &Commit) -> Option<ResponseError> {
    if group.state == GroupState::Dead {
        return Some(ResponseError::CoordinatorNotAvailable);
    }
    let simple =
        commit.generation < 0 && commit.member_id.is_empty() && commit.instance_id.is_none();
    if simple && group.members.is_empty() {
        return None;
    }
    if let Some(error) = group.check_member(&commit.member_id, commit.instance_id.as_deref()) {
        return Some(error);
    }
    if commit.generation != group.generation {
        return Some(ResponseError::IllegalGeneration);
    }
    if group.state == GroupState::CompletingRebalance {
        return Some(ResponseError::RebalanceInProgress);
    }
    None
}
