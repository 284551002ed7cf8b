//! A group's state on one node, summarized for operators (`commerce cluster status`) and
//! for the layer above (who leads, how far behind each follower is).

use std::collections::BTreeMap;

use openraft::{BasicNode, RaftMetrics, ServerState};

use super::types::{GroupId, NodeId};

/// This node's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Stopped,
}

/// One group as seen from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: GroupId,
    pub node: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Only on the leader: how many entries each other member is behind the leader's log.
    pub follower_lag: BTreeMap<NodeId, u64>,
    /// Why the group's Raft stopped, if it did (it then serves nothing until a restart).
    pub stopped: Option<String>,
}

impl GroupStatus {
    pub fn from_metrics(group: GroupId, metrics: &RaftMetrics<NodeId, BasicNode>) -> Self {
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Stopped,
        };
        let last = metrics.last_log_index.unwrap_or_default();
        let follower_lag = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != metrics.id)
            .map(|(id, matched)| {
                let matched = matched.map(|m| m.index + 1).unwrap_or_default();
                (*id, (last + 1).saturating_sub(matched))
            })
            .collect();
        Self {
            group,
            node: metrics.id,
            role,
            term: metrics.current_term,
            leader: metrics.current_leader,
            voters: metrics.membership_config.membership().voter_ids().collect(),
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|id| id.index),
            follower_lag,
            stopped: metrics.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }
}
