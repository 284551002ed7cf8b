//! The openraft type configuration shared by every group.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster (the broker id later).
pub type NodeId = u64;

/// Identifies one Raft group on a node: a partition's group or the controller group. The
/// caller chooses the numbering; the facility only routes by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group-{}", self.0)
    }
}

/// One opaque command replicated by a group. Storage never interprets it: the state machine
/// does (later a Kafka record batch, or a service command).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<u8>);

/// What applying a command answered, handed back to the proposer on the leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse(pub Vec<u8>);

openraft::declare_raft_types!(
    /// The openraft types of every group: opaque commands, u64 node ids, a node's address in
    /// `BasicNode`, snapshots held in memory as bytes.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Shorthands for openraft's generic types instantiated on [`TypeConfig`].
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
