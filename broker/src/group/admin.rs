//! What administrators ask of the coordinator: committed offsets, describing, listing and
//! deleting groups.

use super::consumer::ConsumerGroup;
use super::offsets::Key;
use super::state::GroupState;
use super::{GroupCoordinator, GroupOffsets, GroupSummary, MemberSummary};
use crate::broker::Broker;
use bytes::Bytes;
use kafka_protocol::ResponseError;

impl GroupCoordinator {
    /// Committed offsets of a group; `None` topics means all of them.
    pub fn fetch_offsets(&self, group_id: &str) -> GroupOffsets {
        self.lock()
            .offsets
            .get(group_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let inner = self.lock();
        if let Some(group) = inner.live_consumer_group(group_id) {
            return Some(GroupSummary {
                group_id: group.id.clone(),
                state: group.state_name(),
                protocol_type: "consumer".to_string(),
                protocol: String::new(),
                members: group
                    .members
                    .values()
                    .map(|member| MemberSummary {
                        member_id: member.id.clone(),
                        instance_id: member.instance_id.clone(),
                        client_id: String::new(),
                        client_host: String::new(),
                        metadata: Bytes::new(),
                        assignment: Bytes::new(),
                    })
                    .collect(),
            });
        }
        let group = inner.groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(GroupSummary {
            group_id: group.id.clone(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: group
                .members
                .values()
                .map(|member| MemberSummary {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: member.metadata_for(&protocol),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state name, group type) of every live group.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let inner = self.lock();
        let consumer_groups = inner
            .consumer_groups
            .values()
            .filter(|group| !group.members.is_empty())
            .map(|group| {
                (
                    group.id.clone(),
                    "consumer".to_string(),
                    group.state_name(),
                    "consumer",
                )
            });
        let classic = inner
            .groups
            .values()
            .filter(|group| group.state != GroupState::Dead)
            .filter(|group| inner.live_consumer_group(&group.id).is_none())
            .map(|group| {
                (
                    group.id.clone(),
                    group.protocol_type.clone().unwrap_or_default(),
                    group.state.name(),
                    "classic",
                )
            });
        let mut all: Vec<_> = consumer_groups.chain(classic).collect();
        all.sort();
        all
    }

    /// DeleteGroups for one group: only an empty group goes (NON_EMPTY_GROUP otherwise); its
    /// offsets and metadata get tombstones.
    pub fn delete_group(&self, broker: &Broker, group_id: &str) -> Option<ResponseError> {
        let mut inner = self.lock();
        if inner.live_consumer_group(group_id).is_some() {
            return Some(ResponseError::NonEmptyGroup);
        }
        // A consumer-protocol group keeps no classic entry; its offsets still go with it.
        let was_consumer_group = inner.consumer_groups.remove(group_id).is_some();
        match inner.groups.get(group_id) {
            None if !was_consumer_group => return Some(ResponseError::GroupIdNotFound),
            Some(group) if group.state == GroupState::Dead => {
                return Some(ResponseError::GroupIdNotFound);
            }
            Some(group) if !group.is_empty() => return Some(ResponseError::NonEmptyGroup),
            _ => {}
        }
        let mut tombstones = vec![(
            Key::Group {
                group: group_id.to_string(),
            },
            None,
        )];
        for (topic, partition) in inner
            .offsets
            .get(group_id)
            .into_iter()
            .flat_map(|o| o.keys())
        {
            tombstones.push((
                Key::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                None,
            ));
        }
        if let Err(error) = self.append(broker, group_id, tombstones) {
            tracing::error!(group = group_id, %error, "cannot write group tombstones");
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(mut group) = inner.groups.remove(group_id) {
            group.mark_dead();
        }
        inner.offsets.remove(group_id);
        None
    }

    /// A KIP-848 group as ConsumerGroupDescribe shows it (a copy: the lock is not held while
    /// the answer is built).
    pub fn describe_consumer_group(&self, group_id: &str) -> Option<ConsumerGroup> {
        let inner = self.lock();
        let group = inner.consumer_groups.get(group_id)?;
        Some(ConsumerGroup {
            id: group.id.clone(),
            epoch: group.epoch,
            members: group.members.clone(),
        })
    }
}
