//! Transaction markers in a cluster. The transaction coordinator ends a transaction by
//! proposing a marker batch to the Raft group of every partition in it. The partition may
//! be led by another node, which this node need not even hold a replica of, so the marker
//! goes to the group's leader over the Raft transport (`RaftNode::propose_at`): first to
//! the leader this node knows of, then to each replica the metadata names, following
//! NOT_LEADER hints. Every replica's state machine applies the marker, which closes the
//! transaction there (the last stable offset moves on, an abort is indexed).
//!
//! Writing a marker twice is harmless (a partition with no open transaction of that
//! producer ignores it), so a retry after an ambiguous failure is safe.

use super::Replication;
use super::machine::decode_answer;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use commerce_storage::raft::{GroupId, RaftGroupError};
use std::collections::VecDeque;
use std::time::Duration;

/// How many proposals one marker may take (leaders tried, hints followed).
const MAX_ATTEMPTS: usize = 8;
/// How long one proposal may take. The coordinator holds its lock meanwhile, so a dead or
/// cut-off leader must not hold it long: the tick tries again.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between rounds while a partition has no leader (an election in progress).
const NO_LEADER_PAUSE: Duration = Duration::from_millis(250);

impl Replication {
    /// Proposes `marker` (a whole marker batch) to partition `index` of `topic` and returns
    /// once its group has committed it. Blocking: the coordinator is synchronous.
    pub(crate) fn write_marker(
        &self,
        broker: &Broker,
        topic: &str,
        index: i32,
        marker: Vec<u8>,
    ) -> Result<()> {
        let name = format!("{topic}-{index}");
        let metadata = self.metadata.current();
        let placed = metadata
            .topics
            .get(topic)
            .and_then(|topic| topic.partitions.get(usize::try_from(index).ok()?))
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.clone()))?;
        let group = GroupId(placed.group);
        let known_leader = broker
            .topic(topic)
            .and_then(|topic| topic.partition(index).cloned())
            .and_then(|partition| partition.replica()?.status()?.leader);
        let mut candidates: VecDeque<u64> = known_leader.into_iter().collect();
        candidates.extend(placed.replicas.iter().copied());
        let addresses = metadata.clone();
        super::wait_blocking(async move {
            let mut last_error = String::from("no replica to ask");
            let mut attempts = 0;
            while attempts < MAX_ATTEMPTS {
                let Some(node) = candidates.pop_front() else {
                    // Everyone refused without naming a leader: an election is running.
                    tokio::time::sleep(NO_LEADER_PAUSE).await;
                    candidates.extend(placed.replicas.iter().copied());
                    attempts += 1;
                    continue;
                };
                attempts += 1;
                let answer = if node == self.node_id {
                    let proposal = self.raft.propose(group, marker.clone());
                    tokio::time::timeout(PROPOSAL_TIMEOUT, proposal)
                        .await
                        .unwrap_or_else(|_| {
                            Err(RaftGroupError::Raft {
                                group,
                                message: format!("not committed within {PROPOSAL_TIMEOUT:?}"),
                            })
                        })
                } else {
                    let Some(addr) = addresses.raft_addr(node) else {
                        continue;
                    };
                    self.raft
                        .propose_at(node, &addr, group, marker.clone(), PROPOSAL_TIMEOUT)
                        .await
                };
                match answer {
                    Ok(answer) => {
                        return decode_answer(&answer).map(drop).ok_or_else(|| {
                            BrokerError::Replication(format!("{name}: unreadable marker answer"))
                        });
                    }
                    Err(RaftGroupError::NotLeader {
                        leader: Some(leader),
                        ..
                    }) if leader != node => candidates.push_front(leader),
                    Err(error) => last_error = error.to_string(),
                }
            }
            Err(BrokerError::NotLeaderOrFollower(format!(
                "{name}: no leader took the transaction marker ({last_error})"
            )))
        })?
    }
}
