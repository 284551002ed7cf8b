//! Errors of the Raft group facility.

use super::types::{GroupId, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum RaftGroupError {
    #[error("this node hosts no {0}")]
    UnknownGroup(GroupId),
    #[error("{0} is already open on this node")]
    GroupExists(GroupId),
    /// Proposals go to the leader; the caller forwards there (or retries once one is known).
    #[error("this node is not the leader of {group} (leader: {leader:?})")]
    NotLeader {
        group: GroupId,
        leader: Option<NodeId>,
    },
    /// A proposal forwarded to the leader got no answer; it may or may not have been applied.
    #[error("forwarding to node {leader} (leader of {group}) failed: {message}")]
    Forward {
        group: GroupId,
        leader: NodeId,
        message: String,
    },
    /// A proposal the group refuses before replicating it (a partition group takes exactly
    /// one v2 record batch per command). Nothing was written.
    #[error("{group} refuses the command: {message}")]
    BadCommand { group: GroupId, message: String },
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("raft storage of {group}: {message}")]
    Storage { group: GroupId, message: String },
    #[error("raft I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The group's Raft stopped (shut down, or a storage failure made it stop to avoid
    /// diverging); it serves nothing more until the node is restarted.
    #[error("raft of {group} stopped: {message}")]
    Stopped { group: GroupId, message: String },
    #[error("raft of {group}: {message}")]
    Raft { group: GroupId, message: String },
}
