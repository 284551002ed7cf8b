//! Changing a group's voters on its leader, every step bounded in time.
//!
//! openraft's blocking `add_learner` waits, without a limit, until the learner has caught
//! up; a learner whose replication stalls (its node opened the group late, a stream stuck
//! in back-off) would keep the caller waiting forever, and a replica move that waits forever
//! keeps `commerce cluster remove-node` waiting with it. Here each step has a limit and
//! fails with what it waited for, so the caller (the broker's replica mover, the
//! controller) logs it and tries again: re-adding a learner restarts its replication.

use super::error::RaftGroupError;
use super::node::write_error;
use super::types::{GroupId, NodeId, Raft};
use super::wire::MemberChange;
use openraft::{BasicNode, ChangeMembers};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long a new learner may take to catch up before the change is given up (and retried
/// by the caller): generous for a partition of a few GiB copied on a busy machine.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// How long one membership entry (joint, then final) may take to commit.
const COMMIT_LIMIT: Duration = Duration::from_secs(20);
/// How far behind the leader's log end a learner may be and still count as caught up.
const CAUGHT_UP_LAG: u64 = 64;

/// Makes `change` to `group`'s voters on its leader (here); NotLeader elsewhere. Removing a
/// node that is no voter, or adding one that is, changes nothing.
pub(super) async fn change_members(
    raft: &Raft,
    group: GroupId,
    change: MemberChange,
) -> Result<(), RaftGroupError> {
    let voters: BTreeSet<NodeId> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    match change {
        MemberChange::Add { node, addr } => {
            if voters.contains(&node) {
                return Ok(());
            }
            bounded(group, "adding the learner", async {
                raft.add_learner(node, BasicNode::new(addr), false)
                    .await
                    .map_err(|e| write_error(group, e))
            })
            .await?;
            wait_caught_up(raft, group, node).await?;
            bounded(group, "making the learner a voter", async {
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
                    .await
                    .map_err(|e| write_error(group, e))
            })
            .await?;
        }
        MemberChange::Remove { node } => {
            if !voters.contains(&node) {
                return Ok(());
            }
            bounded(group, "removing the voter", async {
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([node])), false)
                    .await
                    .map_err(|e| write_error(group, e))
            })
            .await?;
        }
    }
    Ok(())
}

/// One membership entry, committed within [`COMMIT_LIMIT`] or an error naming `step`. A
/// change that times out may still commit later; the callers check the voters again first.
async fn bounded<T>(
    group: GroupId,
    step: &str,
    change: impl std::future::Future<Output = Result<T, RaftGroupError>>,
) -> Result<T, RaftGroupError> {
    tokio::time::timeout(COMMIT_LIMIT, change)
        .await
        .map_err(|_| RaftGroupError::Raft {
            group,
            message: format!("{step} did not commit within {COMMIT_LIMIT:?}"),
        })?
}

/// Waits (at most [`CATCH_UP_LIMIT`]) until the leader has replicated to learner `node`
/// everything but the last [`CAUGHT_UP_LAG`] entries of its log. `NotLeader` when this node
/// stops leading meanwhile.
async fn wait_caught_up(raft: &Raft, group: GroupId, node: NodeId) -> Result<(), RaftGroupError> {
    let me = raft.metrics().borrow().id;
    let matched = |metrics: &openraft::RaftMetrics<NodeId, BasicNode>| {
        metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&node).cloned().flatten())
            .map(|log_id| log_id.index)
    };
    let waited = raft
        .wait(Some(CATCH_UP_LIMIT))
        .metrics(
            |m| {
                m.current_leader != Some(me)
                    || matched(m)
                        .is_some_and(|index| index + CAUGHT_UP_LAG >= m.last_log_index.unwrap_or(0))
            },
            "the new learner caught up",
        )
        .await;
    match waited {
        Ok(metrics) if metrics.current_leader == Some(me) => Ok(()),
        Ok(metrics) => Err(RaftGroupError::NotLeader {
            group,
            leader: metrics.current_leader,
        }),
        Err(_) => {
            let metrics = raft.metrics().borrow().clone();
            let held = matched(&metrics)
                .map_or_else(|| "nothing".to_string(), |index| format!("up to {index}"));
            Err(RaftGroupError::Raft {
                group,
                message: format!(
                    "learner {node} did not catch up within {CATCH_UP_LIMIT:?} (holds {held}, \
                     the leader's log ends at {})",
                    metrics.last_log_index.unwrap_or(0)
                ),
            })
        }
    }
}
