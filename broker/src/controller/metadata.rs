//! The cluster metadata and how each command changes it.

use super::command::{ControllerAnswer, ControllerCommand, NodeRecord};
use crate::topic_config::TopicConfig;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// One partition's replicas, preferred leader first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReplicas {
    pub replicas: Vec<u64>,
    /// The partition's Raft group id, assigned when the controller applies its creation
    /// (from `ClusterMetadata::next_group`), so every node opens the same group.
    #[serde(default)]
    pub group: u64,
    /// Set once the replicas were reassigned: a replica new to the group must join it
    /// (the leader brings it in), never start it.
    #[serde(default)]
    pub reassigned: bool,
}

impl PartitionReplicas {
    /// The replica that should lead when it is up: the first one, as in Kafka.
    pub fn preferred_leader(&self) -> Option<u64> {
        self.replicas.first().copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionReplicas>,
}

/// Everything the controller group agrees on. Ordered maps, so a snapshot of the same state
/// is the same bytes on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// The Raft index of the last applied command (what a reader has caught up to).
    pub applied_index: u64,
    /// The next partition group id to assign (group 0 is the controller). Ids are never
    /// reused: a deleted topic's groups stay gone, and a new one cannot meet old data.
    #[serde(default)]
    pub next_group: u64,
    /// The cluster's id, which every node answers in Metadata and DescribeCluster: the
    /// first [`ControllerCommand::ClaimClusterId`] applied. `None` until then (and in
    /// metadata written before the id was kept here: the next claim decides it).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Nodes being drained for removal ([`ControllerCommand::MarkLeaving`]): still members,
    /// no longer given new replicas.
    #[serde(default)]
    pub leaving: BTreeSet<u64>,
}

/// Longer than any id we generate (32 hex digits) or Kafka does (22 base64 characters).
const MAX_CLUSTER_ID: usize = 64;

fn refused(error: ResponseError, message: impl Into<String>) -> ControllerAnswer {
    ControllerAnswer::Refused {
        error_code: error.code(),
        message: message.into(),
    }
}

impl ClusterMetadata {
    /// The nodes new replicas may be placed on: the members not being drained.
    pub fn placeable_nodes(&self) -> BTreeSet<u64> {
        self.nodes
            .keys()
            .copied()
            .filter(|id| !self.leaving.contains(id))
            .collect()
    }

    /// Applies `command`; a refusal changes nothing.
    pub fn apply(&mut self, index: u64, command: &ControllerCommand) -> ControllerAnswer {
        self.applied_index = index;
        match command {
            ControllerCommand::RegisterNode(node) => {
                self.nodes.insert(node.id, node.clone());
                ControllerAnswer::Applied
            }
            ControllerCommand::ClaimClusterId { id } => self.claim_cluster_id(id),
            ControllerCommand::RemoveNode { id } => self.remove_node(*id),
            ControllerCommand::MarkLeaving { id } => {
                if !self.nodes.contains_key(id) {
                    return refused(ResponseError::BrokerNotAvailable, format!("no node {id}"));
                }
                self.leaving.insert(*id);
                ControllerAnswer::Applied
            }
            ControllerCommand::CreateTopic {
                name,
                id,
                config,
                replicas,
            } => self.create_topic(name, *id, config, replicas),
            ControllerCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => ControllerAnswer::Applied,
                None => refused(
                    ResponseError::UnknownTopicOrPartition,
                    format!("no topic {name}"),
                ),
            },
            ControllerCommand::SetTopicConfig { name, config } => match self.topics.get_mut(name) {
                Some(topic) => {
                    topic.config = config.clone();
                    ControllerAnswer::Applied
                }
                None => refused(
                    ResponseError::UnknownTopicOrPartition,
                    format!("no topic {name}"),
                ),
            },
            ControllerCommand::AddPartitions { name, replicas } => {
                if let Err(answer) = self.check_replicas(replicas) {
                    return answer;
                }
                if !self.topics.contains_key(name) {
                    return refused(
                        ResponseError::UnknownTopicOrPartition,
                        format!("no topic {name}"),
                    );
                }
                let added = self.assign_groups(replicas);
                match self.topics.get_mut(name) {
                    Some(topic) => {
                        topic.partitions.extend(added);
                        ControllerAnswer::Applied
                    }
                    None => refused(
                        ResponseError::UnknownTopicOrPartition,
                        format!("no topic {name}"),
                    ),
                }
            }
            ControllerCommand::ReassignPartition {
                name,
                partition,
                replicas,
            } => self.reassign(name, *partition, replicas),
        }
    }

    /// Keeps the first id claimed. A later claim is answered as applied: the claimant's
    /// aim, that the cluster has an id, is met.
    fn claim_cluster_id(&mut self, id: &str) -> ControllerAnswer {
        if self.cluster_id.is_some() {
            return ControllerAnswer::Applied;
        }
        let valid = !id.is_empty()
            && id.len() <= MAX_CLUSTER_ID
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return refused(
                ResponseError::InvalidRequest,
                format!("{id:?} is not a cluster id (1 to {MAX_CLUSTER_ID} of [A-Za-z0-9_-])"),
            );
        }
        self.cluster_id = Some(id.to_string());
        ControllerAnswer::Applied
    }

    fn remove_node(&mut self, id: u64) -> ControllerAnswer {
        if !self.nodes.contains_key(&id) {
            return refused(ResponseError::BrokerNotAvailable, format!("no node {id}"));
        }
        let holding: BTreeSet<&str> = self
            .topics
            .values()
            .filter(|topic| {
                topic
                    .partitions
                    .iter()
                    .any(|partition| partition.replicas.contains(&id))
            })
            .map(|topic| topic.name.as_str())
            .collect();
        if !holding.is_empty() {
            let names: Vec<&str> = holding.into_iter().collect();
            return refused(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "node {id} still holds replicas of {}; reassign them first",
                    names.join(", ")
                ),
            );
        }
        self.nodes.remove(&id);
        self.leaving.remove(&id);
        ControllerAnswer::Applied
    }

    fn create_topic(
        &mut self,
        name: &str,
        id: Uuid,
        config: &TopicConfig,
        replicas: &[Vec<u64>],
    ) -> ControllerAnswer {
        if self.topics.contains_key(name) {
            return refused(
                ResponseError::TopicAlreadyExists,
                format!("topic {name} already exists"),
            );
        }
        if self.topics.values().any(|topic| topic.id == id) {
            return refused(
                ResponseError::TopicAlreadyExists,
                format!("topic id {id} is taken"),
            );
        }
        if replicas.is_empty() {
            return refused(
                ResponseError::InvalidPartitions,
                "a topic needs at least one partition",
            );
        }
        if let Err(answer) = self.check_replicas(replicas) {
            return answer;
        }
        let partitions = self.assign_groups(replicas);
        self.topics.insert(
            name.to_string(),
            TopicMetadata {
                name: name.to_string(),
                id,
                config: config.clone(),
                partitions,
            },
        );
        ControllerAnswer::Applied
    }

    /// New partitions with the next group ids, in order.
    fn assign_groups(&mut self, replicas: &[Vec<u64>]) -> Vec<PartitionReplicas> {
        replicas
            .iter()
            .map(|replicas| {
                let group = self.next_group.max(1);
                self.next_group = group + 1;
                PartitionReplicas {
                    replicas: replicas.clone(),
                    group,
                    reassigned: false,
                }
            })
            .collect()
    }

    fn reassign(&mut self, name: &str, partition: i32, replicas: &[u64]) -> ControllerAnswer {
        if let Err(answer) = self.check_replicas(std::slice::from_ref(&replicas.to_vec())) {
            return answer;
        }
        let slot = self.topics.get_mut(name).and_then(|topic| {
            usize::try_from(partition)
                .ok()
                .and_then(|index| topic.partitions.get_mut(index))
        });
        match slot {
            Some(slot) => {
                slot.replicas = replicas.to_vec();
                slot.reassigned = true;
                ControllerAnswer::Applied
            }
            None => refused(
                ResponseError::UnknownTopicOrPartition,
                format!("no partition {name}-{partition}"),
            ),
        }
    }

    /// Every replica set is non-empty, without repeats, on registered nodes.
    fn check_replicas(&self, replicas: &[Vec<u64>]) -> Result<(), ControllerAnswer> {
        for set in replicas {
            let distinct: BTreeSet<u64> = set.iter().copied().collect();
            if set.is_empty() || distinct.len() != set.len() {
                return Err(refused(
                    ResponseError::InvalidReplicaAssignment,
                    format!("replica set {set:?} is empty or repeats a node"),
                ));
            }
            if let Some(unknown) = set.iter().find(|id| !self.nodes.contains_key(id)) {
                return Err(refused(
                    ResponseError::InvalidReplicaAssignment,
                    format!("node {unknown} is not a member of the cluster"),
                ));
            }
        }
        Ok(())
    }

    /// Where node `id`'s peers reach its Raft listener, if it is registered.
    pub fn raft_addr(&self, id: u64) -> Option<String> {
        self.nodes.get(&id).map(|node| node.raft_addr.clone())
    }

    /// How many partitions each node is the preferred leader of (every node listed).
    pub fn preferred_leader_counts(&self) -> BTreeMap<u64, usize> {
        let mut counts: BTreeMap<u64, usize> = self.nodes.keys().map(|id| (*id, 0)).collect();
        for partition in self.topics.values().flat_map(|topic| &topic.partitions) {
            if let Some(leader) = partition.preferred_leader() {
                *counts.entry(leader).or_default() += 1;
            }
        }
        counts
    }
}
