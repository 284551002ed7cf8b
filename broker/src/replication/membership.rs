//! Replica moves: the leader of a partition group makes the group's voters the replicas
//! the controller names for the partition (after `commerce cluster remove-node`, say).
//!
//! A new replica (appended last by the placement, so it opened the group with
//! `GroupStart::Join`) first catches up as a learner, then becomes a voter; a replica that
//! is no longer named is removed afterwards. Each change is a joint consensus, so a
//! majority of the old and of the new voters must hold every committed entry throughout.
//! A leader that removes itself steps down once that is committed, and the next leader
//! finishes whatever is left.

use super::Replication;
use crate::controller::ClusterMetadata;
use commerce_storage::raft::GroupId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Starts moving `group`'s voters to `wanted` unless that is under way already or done.
/// Leader only; runs in the background (a learner may take a while to catch up).
pub(super) fn drive(
    replication: &Arc<Replication>,
    metadata: &ClusterMetadata,
    group: GroupId,
    wanted: &[u64],
) {
    let Ok(status) = replication.raft.status(group) else {
        return;
    };
    let voters: BTreeSet<u64> = status.voters.iter().copied().collect();
    let wanted_set: BTreeSet<u64> = wanted.iter().copied().collect();
    if voters == wanted_set || status.leader != Some(replication.node_id) {
        return;
    }
    let additions: Vec<(u64, String)> = wanted_set
        .difference(&voters)
        .filter_map(|id| metadata.raft_addr(*id).map(|addr| (*id, addr)))
        .collect();
    let removals: Vec<u64> = voters.difference(&wanted_set).copied().collect();
    {
        let mut changing = replication
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !changing.insert(group.0) {
            return;
        }
    }
    let replication = replication.clone();
    tokio::spawn(async move {
        // Cleared however the task ends (a panic too): a group left marked would never be
        // driven again.
        let _changing = Changing {
            replication: replication.clone(),
            group,
        };
        for (node, addr) in additions {
            tracing::info!(%group, node, "adding a replica");
            if let Err(error) = replication.raft.add_member(group, node, addr).await {
                tracing::warn!(%group, node, %error, "could not add the replica; retrying later");
                return;
            }
        }
        for node in removals {
            tracing::info!(%group, node, "removing a replica");
            if let Err(error) = replication.raft.remove_member(group, node).await {
                tracing::warn!(%group, node, %error, "could not remove the replica; retrying later");
                return;
            }
        }
    });
}

/// A group whose voters this node is changing; unmarked when dropped.
struct Changing {
    replication: Arc<Replication>,
    group: GroupId,
}

impl Drop for Changing {
    fn drop(&mut self) {
        self.replication
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.group.0);
    }
}
