//! Batches the coordinators write into partitions in a cluster, past the producer checks
//! a client's batch gets:
//! - transaction markers: the transaction coordinator ends a transaction by proposing a
//!   marker to the Raft group of every partition in it. Every replica's state machine
//!   applies it, which closes the transaction there (the last stable offset moves on, an
//!   abort is indexed). Writing a marker twice is harmless (a partition with no open
//!   transaction of that producer ignores it), so a retry after an ambiguous failure is
//!   safe.
//! - a transaction's consumer offsets, which the group coordinator stages in its offsets
//!   partition as a transactional batch (no sequence: the coordinator writes it, not the
//!   producer).
//!
//! The partition may be led by another node, which this node need not even hold a replica
//! of, so the batch goes to the group's leader over the Raft transport
//! (`RaftNode::propose_at`): first to the leader this node knows of, then to each replica
//! the metadata names, following NOT_LEADER hints.

use super::Replication;
use super::machine::decode_answer;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use commerce_storage::raft::{GroupId, RaftGroupError};
use std::collections::VecDeque;
use std::time::Duration;

/// How many proposals one batch may take (leaders tried, hints followed).
const MAX_ATTEMPTS: usize = 8;
/// How long one proposal may take. The coordinator holds its lock meanwhile, so a dead or
/// cut-off leader must not hold it long: the tick tries again.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between rounds while a partition has no leader (an election in progress).
const NO_LEADER_PAUSE: Duration = Duration::from_millis(250);

/// Where a batch for one partition goes: its group and the nodes to try, in order.
struct Target {
    name: String,
    group: GroupId,
    candidates: VecDeque<u64>,
    replicas: Vec<u64>,
}

impl Replication {
    /// Proposes `batch` (one whole v2 batch) to partition `index` of `topic` and returns
    /// its base and last offset once its group has committed it. Blocking: the
    /// coordinators are synchronous.
    pub(crate) fn propose_to_partition(
        &self,
        broker: &Broker,
        topic: &str,
        index: i32,
        batch: Vec<u8>,
    ) -> Result<(i64, i64)> {
        let target = self.target(broker, topic, index)?;
        super::wait_blocking(self.propose_to(target, batch))?
    }

    /// Like [`Replication::propose_to_partition`] for several partitions at once (a
    /// transaction's markers): the proposals run concurrently, so ending a transaction
    /// takes about one commit, not one per partition. One answer per batch, in order.
    pub(crate) fn propose_to_partitions(
        &self,
        broker: &Broker,
        batches: Vec<(&str, i32, Vec<u8>)>,
    ) -> Result<Vec<Result<(i64, i64)>>> {
        let proposals: Vec<_> = batches
            .into_iter()
            .map(|(topic, index, batch)| {
                let target = self.target(broker, topic, index);
                async move { self.propose_to(target?, batch).await }
            })
            .collect();
        super::wait_blocking(futures::future::join_all(proposals))
    }

    fn target(&self, broker: &Broker, topic: &str, index: i32) -> Result<Target> {
        let name = format!("{topic}-{index}");
        let metadata = self.metadata.current();
        let placed = metadata
            .topics
            .get(topic)
            .and_then(|topic| topic.partitions.get(usize::try_from(index).ok()?))
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.clone()))?;
        let known_leader = broker
            .topic(topic)
            .and_then(|topic| topic.partition(index).cloned())
            .and_then(|partition| partition.replica()?.status()?.leader);
        let mut candidates: VecDeque<u64> = known_leader.into_iter().collect();
        candidates.extend(placed.replicas.iter().copied());
        Ok(Target {
            name,
            group: GroupId(placed.group),
            candidates,
            replicas: placed.replicas.clone(),
        })
    }

    async fn propose_to(&self, target: Target, batch: Vec<u8>) -> Result<(i64, i64)> {
        let Target {
            name,
            group,
            mut candidates,
            replicas,
        } = target;
        let addresses = self.metadata.current();
        let mut errors: Vec<String> = Vec::new();
        let mut attempts = 0;
        while attempts < MAX_ATTEMPTS {
            let Some(node) = candidates.pop_front() else {
                // Everyone refused without naming a leader: an election is running.
                tokio::time::sleep(NO_LEADER_PAUSE).await;
                candidates.extend(replicas.iter().copied());
                attempts += 1;
                continue;
            };
            attempts += 1;
            let answer = if node == self.node_id {
                let proposal = self.raft.propose(group, batch.clone());
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
                    .propose_at(node, &addr, group, batch.clone(), PROPOSAL_TIMEOUT)
                    .await
            };
            match answer {
                Ok(answer) => {
                    return decode_answer(&answer).ok_or_else(|| {
                        BrokerError::Replication(format!("{name}: unreadable answer"))
                    });
                }
                Err(RaftGroupError::NotLeader {
                    leader: Some(leader),
                    ..
                }) if leader != node => candidates.push_front(leader),
                Err(error) => errors.push(format!("node {node}: {error}")),
            }
        }
        Err(BrokerError::NotLeaderOrFollower(format!(
            "{name}: no leader took the batch ({})",
            errors.join("; ")
        )))
    }
}
