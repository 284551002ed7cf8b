//! Preferred leaders: a group is led by its preferred replica when that node is up, so that
//! leadership spreads over the nodes as placement meant, and comes back to a node that
//! returns after a failure (Kafka's preferred leader election,
//! `auto.leader.rebalance.enable`). Partitions prefer the first replica of their placement;
//! the services' groups spread round the voters.
//!
//! openraft 0.9 cannot hand leadership over, so the preferred replica takes it: once it is
//! a caught-up follower (it applied all but a few entries of what it holds) for [`SETTLED_CHECKS`] checks in a
//! row, it stands for election ([`RaftNode::campaign`]). The current leader grants the vote
//! when this replica's log is as long as its own (its own lease long expired), and steps
//! down; under heavy writes the replica's log may be a little behind, the election fails,
//! and it tries again after [`RETRY_AFTER`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::node::RaftNode;
use super::status::Role;
use super::types::{GroupId, NodeId};

/// How often a caller is expected to check (the settling below counts checks).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A follower must have been caught up this many checks in a row before it stands.
const SETTLED_CHECKS: u32 = 2;
/// The least time between two attempts for one group.
const RETRY_AFTER: Duration = Duration::from_secs(15);

/// How many entries a follower may still have to apply and count as caught up: a group
/// written all the time (a service's command log) is rarely found with nothing pending,
/// and what decides the vote is the length of the log, not how much of it is applied.
const APPLY_SLACK: u64 = 16;

fn applied_nearly_all(applied: Option<u64>, last: Option<u64>) -> bool {
    last.unwrap_or(0).saturating_sub(applied.unwrap_or(0)) <= APPLY_SLACK
}

/// This node's standing for the groups it is the preferred leader of, across checks.
#[derive(Default)]
pub struct PreferredLeadership {
    settled: BTreeMap<GroupId, u32>,
    tried: BTreeMap<GroupId, Instant>,
}

impl PreferredLeadership {
    pub fn new() -> PreferredLeadership {
        PreferredLeadership::default()
    }

    /// One check of `group`, whose preferred leader is `preferred`: stands for election when
    /// that is this node, it is a caught-up follower of another leader and has been for a
    /// while, and it has not tried lately. Returns whether it stood.
    pub async fn check(
        &mut self,
        raft: &RaftNode,
        group: GroupId,
        preferred: Option<NodeId>,
    ) -> bool {
        let me = raft.node_id();
        let caught_up = raft.status(group).is_ok_and(|status| {
            status.role == Role::Follower
                && status.leader.is_some_and(|leader| leader != me)
                && status.voters.contains(&me)
                && applied_nearly_all(status.last_applied_index, status.last_log_index)
        });
        if preferred != Some(me) || !caught_up {
            self.settled.remove(&group);
            return false;
        }
        let checks = self.settled.entry(group).or_default();
        *checks += 1;
        if *checks < SETTLED_CHECKS {
            return false;
        }
        if self
            .tried
            .get(&group)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER)
        {
            return false;
        }
        self.tried.insert(group, Instant::now());
        if let Err(error) = raft.campaign(group).await {
            tracing::debug!(%group, %error, "could not stand for preferred leadership");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_with_a_few_entries_left_to_apply_counts_as_caught_up() {
        assert!(applied_nearly_all(Some(100), Some(100)));
        assert!(applied_nearly_all(Some(90), Some(100)));
        assert!(applied_nearly_all(None, None));
        assert!(!applied_nearly_all(Some(10), Some(100)));
        assert!(!applied_nearly_all(None, Some(100)));
    }
}
