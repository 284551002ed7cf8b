//! Reaching a group's leader from any member: proposals forwarded to it ([`RaftNode::submit`]),
//! linearizable reads through its read index ([`RaftNode::read_barrier`]) and membership
//! changes it makes ([`RaftNode::change_members_anywhere`]). Each goes one hop over the
//! shared peer connection to the leader this node knows; the leader never forwards again,
//! so a stale view of who leads cannot loop.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};

use super::error::RaftGroupError;
use super::members::change_members;
use super::node::{FORWARD_TIMEOUT, RaftNode};
use super::types::{Command, GroupId, NodeId};
use super::wire::{MemberChange, Reply, Rpc};

impl RaftNode {
    /// Like [`RaftNode::propose`], but from any member: a follower forwards the command to
    /// the leader it knows over the shared peer connection (one hop) and returns the
    /// leader's answer. As with any proposal, an error after the command left (a timeout,
    /// the leader failing) does not say it was not applied: commands should be idempotent
    /// or carry an id the state machine deduplicates.
    pub async fn submit(
        &self,
        group: GroupId,
        command: Vec<u8>,
    ) -> Result<Vec<u8>, RaftGroupError> {
        let leader = match self.propose(group, command.clone()).await {
            Err(RaftGroupError::NotLeader {
                leader: Some(leader),
                ..
            }) if leader != self.config.node_id => leader,
            other => return other,
        };
        let addr = self.member_addr(group, leader)?;
        self.propose_at(leader, &addr, group, command, FORWARD_TIMEOUT)
            .await
    }

    /// The Raft address of `group`'s member `leader` as this node's membership knows it;
    /// NotLeader (naming it) when it knows none, so the caller retries later.
    fn member_addr(&self, group: GroupId, leader: NodeId) -> Result<String, RaftGroupError> {
        self.metrics(group)?
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| node.addr.clone())
            .ok_or(RaftGroupError::NotLeader {
                group,
                leader: Some(leader),
            })
    }

    /// Sends `rpc` for `group` to node `node` (Raft address `addr`) and returns its reply;
    /// a transport failure is a `Forward` error (the request may or may not have arrived).
    async fn call_node(
        &self,
        node: NodeId,
        addr: &str,
        group: GroupId,
        rpc: Rpc,
        ttl: Duration,
    ) -> Result<Reply, RaftGroupError> {
        self.peers
            .client(node, addr)
            .call(group, rpc, ttl)
            .await
            .map_err(|e| RaftGroupError::Forward {
                group,
                leader: node,
                message: e.to_string(),
            })
    }

    /// Sends `command` for `group` to node `node` (Raft address `addr`) to propose as its
    /// leader, and returns its answer; NotLeader (with the leader it knows) if it does not
    /// lead. This node need not be a member of the group: the coordinator of a
    /// transaction writes markers to partitions it holds no replica of this way. The
    /// caveat of [`RaftNode::submit`] about errors after the command left applies. `ttl`
    /// bounds the wait for the answer.
    pub async fn propose_at(
        &self,
        node: NodeId,
        addr: &str,
        group: GroupId,
        command: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, RaftGroupError> {
        let rpc = Rpc::Propose(Command(command));
        match self.call_node(node, addr, group, rpc, ttl).await? {
            Reply::Propose(Ok(answer)) => Ok(answer),
            Reply::Propose(Err(refused)) => Err(refused.into_error(group)),
            _ => Err(unexpected_reply(group, node, "a forwarded proposal")),
        }
    }

    /// The index a linearizable read of `group` must see applied (Raft's ReadIndex): asked
    /// of the leader, which first confirms with a majority that it still leads, so every
    /// write answered to anyone before this call is at or below it. From a follower the
    /// question goes to the leader it knows over the shared peer connection.
    pub async fn read_index(&self, group: GroupId, ttl: Duration) -> Result<u64, RaftGroupError> {
        let raft = self.raft(group)?;
        // A leader cut off from its peers may wait for heartbeat answers that never come.
        let asked = tokio::time::timeout(ttl, raft.get_read_log_id())
            .await
            .map_err(|_| RaftGroupError::Raft {
                group,
                message: "no majority confirmed the leader in time".to_string(),
            })?;
        let leader = match asked {
            Ok((read, _applied)) => return Ok(read.map_or(0, |id| id.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                forward.leader_id
            }
            Err(e) => {
                return Err(RaftGroupError::Raft {
                    group,
                    message: e.to_string(),
                });
            }
        };
        let Some(leader) = leader.filter(|leader| *leader != self.config.node_id) else {
            return Err(RaftGroupError::NotLeader { group, leader });
        };
        let addr = self.member_addr(group, leader)?;
        match self
            .call_node(leader, &addr, group, Rpc::ReadIndex, ttl)
            .await?
        {
            Reply::ReadIndex(Ok(index)) => Ok(index),
            Reply::ReadIndex(Err(refused)) => Err(refused.into_error(group)),
            _ => Err(unexpected_reply(group, leader, "a read index request")),
        }
    }

    /// Waits (at most `limit`) until this node has applied every entry of `group` that was
    /// committed when the call began, so a read of the local state machine afterwards sees
    /// every write answered before it, whichever node answered it (a linearizable read
    /// served by any member, as etcd's and TiKV's follower reads are).
    pub async fn read_barrier(
        &self,
        group: GroupId,
        limit: Duration,
    ) -> Result<(), RaftGroupError> {
        let index = self.read_index(group, limit).await?;
        let raft = self.raft(group)?;
        if raft.metrics().borrow().last_applied.map(|id| id.index) >= Some(index) {
            return Ok(());
        }
        raft.wait(Some(limit))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| RaftGroupError::Raft {
                group,
                message: e.to_string(),
            })
    }

    /// Waits (at most `limit`) until this node has applied `group`'s entry `index`.
    pub async fn wait_applied(
        &self,
        group: GroupId,
        index: u64,
        limit: Duration,
    ) -> Result<(), RaftGroupError> {
        let raft = self.raft(group)?;
        raft.wait(Some(limit))
            .applied_index_at_least(Some(index), "applied")
            .await
            .map(|_| ())
            .map_err(|e| RaftGroupError::Raft {
                group,
                message: e.to_string(),
            })
    }

    /// Makes `change` to `group`'s voters from any member: a follower has the leader it
    /// knows make it (one hop). Waits for a new node to catch up, at most `ttl`.
    pub async fn change_members_anywhere(
        &self,
        group: GroupId,
        change: MemberChange,
        ttl: Duration,
    ) -> Result<(), RaftGroupError> {
        let leader = match change_members(&self.raft(group)?, group, change.clone()).await {
            Err(RaftGroupError::NotLeader {
                leader: Some(leader),
                ..
            }) if leader != self.config.node_id => leader,
            other => return other,
        };
        let addr = self.member_addr(group, leader)?;
        let rpc = Rpc::ChangeMembers(change);
        match self.call_node(leader, &addr, group, rpc, ttl).await? {
            Reply::ChangeMembers(Ok(())) => Ok(()),
            Reply::ChangeMembers(Err(refused)) => Err(refused.into_error(group)),
            _ => Err(unexpected_reply(group, leader, "a membership change")),
        }
    }
}

/// A reply of another kind than the request's: a peer of another version, or a bug.
fn unexpected_reply(group: GroupId, node: NodeId, what: &str) -> RaftGroupError {
    RaftGroupError::Forward {
        group,
        leader: node,
        message: format!("unexpected reply to {what}"),
    }
}
