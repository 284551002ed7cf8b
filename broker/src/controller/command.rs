//! What can change the cluster metadata, and what the controller answers.

use crate::topic_config::TopicConfig;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    /// Where Kafka clients reach it (advertised in Metadata).
    pub kafka_addr: String,
    /// Where its peers reach its Raft listener.
    pub raft_addr: String,
    /// Where its HTTP gateway listens, for operators (`commerce cluster status`).
    pub http_addr: String,
}

/// A change to the cluster metadata. Everything non-deterministic (ids, placement) is in
/// the command, decided before it was proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// A node announces itself (first start) or its new addresses (restart): idempotent.
    RegisterNode(NodeRecord),
    /// A node proposes `id` as the cluster's id (Kafka's ClusterId). The first claim
    /// applied decides it for good; every later one, from any node, changes nothing. Each
    /// node claims before it registers, so the id is decided before any node is listed.
    ClaimClusterId {
        id: String,
    },
    /// A node leaves the cluster for good; refused while it still holds replicas.
    RemoveNode {
        id: u64,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        config: TopicConfig,
        /// The replicas of each partition, preferred leader first.
        replicas: Vec<Vec<u64>>,
    },
    DeleteTopic {
        name: String,
    },
    SetTopicConfig {
        name: String,
        config: TopicConfig,
    },
    /// New partitions appended to a topic, with their replicas.
    AddPartitions {
        name: String,
        replicas: Vec<Vec<u64>>,
    },
    /// One partition's replica set replaced (a node added or removed).
    ReassignPartition {
        name: String,
        partition: i32,
        replicas: Vec<u64>,
    },
    /// A node is being drained for removal: no new replica is placed on it (a topic
    /// created meanwhile, a service's topic made on first use, would otherwise land on it
    /// after the drain was planned). Cleared by its removal.
    MarkLeaving {
        id: u64,
    },
}

/// The answer to a command: applied, or refused with a Kafka error code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerAnswer {
    Applied,
    Refused { error_code: i16, message: String },
}
