//! One partition as a Raft group on this node: how a produce becomes a committed batch.
//!
//! The leader checks an idempotent producer's batch against the producer state, proposes
//! it, and answers once a majority has it (openraft answers a proposal after commit and
//! apply). Checks and proposals of one partition take turns: a retry must see the batch it
//! retries, so a producer's batch keeps the turn until it is applied. Plain batches (no
//! producer id) only take the turn to queue in order, so they are replicated several at
//! a time. After a
//! leader change the new leader first applies everything in its log (entries of the old
//! term that may still commit), so a retry of a batch the old leader had taken is a
//! duplicate here too.

use super::machine::decode_answer;
use crate::error::{BrokerError, Result};
use crate::producer::batch_header::ProducerBatch;
use crate::producer::partition_state::{ProducerState, Verdict, batches};
use commerce_storage::AppendInfo;
use commerce_storage::raft::{
    GroupId, GroupStatus, PartitionRaftLog, RaftGroupError, RaftNode, log_start_command,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A leader whose majority has not answered for this long is not advertised as leader and
/// refuses writes: it is probably cut off, and a new leader is being elected. Twice the
/// longest election timeout, so a leader slowed by load (big appends, fsyncs on shared
/// cores) is not taken for a cut-off one.
pub const LEADER_LEASE: Duration = Duration::from_millis(1_600);
/// How long a new leader may take to apply the entries of earlier terms before it checks
/// a producer's batch.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

pub struct Replica {
    raft: Arc<RaftNode>,
    group: GroupId,
    log: Arc<PartitionRaftLog>,
    /// Held from a producer check until its proposal is applied (see the module comment).
    turn: tokio::sync::Mutex<()>,
}

impl Replica {
    pub fn new(raft: Arc<RaftNode>, group: GroupId, log: Arc<PartitionRaftLog>) -> Replica {
        Replica {
            raft,
            group,
            log,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn log(&self) -> &Arc<PartitionRaftLog> {
        &self.log
    }

    /// Whether this node leads the partition with a live majority behind it.
    pub fn is_leader(&self) -> bool {
        self.raft.leads(self.group, LEADER_LEASE)
    }

    /// On the leader: waits until its whole log is applied here (see
    /// `RaftNode::wait_leader_applied`).
    pub async fn caught_up(&self) -> Result<()> {
        self.raft
            .wait_leader_applied(self.group, CATCH_UP_LIMIT)
            .await
            .map_err(|error| BrokerError::NotLeaderOrFollower(error.to_string()))
    }

    /// Retention on this replica: the log is the group's Raft log, so segments retention
    /// would delete are purged through Raft (up to the last entry wholly below the first
    /// kept segment) instead of deleted under it. Each replica purges its own log. Batches
    /// Raft has purged already (a replica that installed a snapshot holds the ones the
    /// leader retained below it) are deleted here directly.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<()> {
        // DeleteRecords moved the log start at apply and left the segments below it to
        // this pass, like segments retention would delete.
        let log_start = self.log.log().log_start_offset();
        let start = match self.log.log().retention_start(now_ms) {
            Some(retained) => retained.max(log_start),
            None if self.log.log().first_segment_base() < log_start => log_start,
            None => return Ok(()),
        };
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.discard_purged_below(start))
            .await
            .map_err(|error| BrokerError::Replication(error.to_string()))?
            .map_err(|error| BrokerError::Replication(error.to_string()))?;
        let Some(index) = self.log.last_index_below(start) else {
            return Ok(());
        };
        if self
            .log
            .last_purged()
            .is_some_and(|purged| purged.index >= index)
        {
            return Ok(());
        }
        self.raft
            .purge_through(self.group, index)
            .await
            .map_err(|error| BrokerError::Replication(error.to_string()))
    }

    /// DeleteRecords on the leader: moves the log start to `offset` (-1: the high
    /// watermark) on every replica, through a log-start entry that each applies at the same
    /// place in the log (`commerce_storage::raft::log_start_command`). Answers with the new
    /// low watermark once a majority has the entry and this node applied it. Past the high
    /// watermark is OFFSET_OUT_OF_RANGE and changes nothing. The segments below go at the
    /// next retention pass, through a Raft purge ([`Replica::enforce_retention`]).
    pub async fn delete_records(&self, name: &str, offset: i64, timeout: Duration) -> Result<i64> {
        if !self.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower(name.to_string()));
        }
        // A new leader's high watermark is its predecessor's only once it applied its log.
        self.caught_up().await?;
        let high_watermark = self.log.high_watermark();
        let start = self.log.log().log_start_offset();
        let target = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&target) {
            return Err(BrokerError::Log(
                commerce_storage::LogError::OffsetOutOfRange {
                    requested: target,
                    start,
                    end: high_watermark,
                },
            ));
        }
        if target <= start {
            return Ok(start);
        }
        let proposal = self.raft.propose(self.group, log_start_command(target));
        match tokio::time::timeout(timeout, proposal).await {
            Ok(answer) => answer.map_err(|error| self.error(name, error))?,
            Err(_) => {
                return Err(BrokerError::RequestTimedOut(format!(
                    "{name}: no majority within {timeout:?}"
                )));
            }
        };
        Ok(self.log.log().log_start_offset())
    }

    /// The group's role, term and leader on this node.
    pub fn status(&self) -> Option<GroupStatus> {
        self.raft.status(self.group).ok()
    }

    /// The Raft term as Kafka's leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.status()
            .and_then(|status| i32::try_from(status.term).ok())
            .unwrap_or(-1)
    }

    /// Replicates a produce request's records (one producer batch, or plain batches) and
    /// answers with the offsets they got once a majority has them, or within `timeout`
    /// with REQUEST_TIMED_OUT.
    pub async fn append(
        &self,
        name: &str,
        producers: &Mutex<ProducerState>,
        records: &[u8],
        timeout: Duration,
    ) -> Result<AppendInfo> {
        let framed: usize = batches(records).map(<[u8]>::len).sum();
        if framed != records.len() || records.is_empty() {
            // Each batch is checked (CRC included) when proposed; a tail that is not a
            // whole batch would otherwise be dropped without a word.
            return Err(BrokerError::Log(commerce_storage::LogError::CorruptBatch {
                reason: "the records do not frame as whole v2 batches".to_string(),
            }));
        }
        let from_producer = batches(records)
            .filter_map(ProducerBatch::parse)
            .any(|header| header.has_producer());
        let turn = self.turn.lock().await;
        if from_producer {
            self.raft
                .wait_leader_applied(self.group, CATCH_UP_LIMIT)
                .await
                .map_err(|error| self.error(name, error))?;
        }
        if !self.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower(name.to_string()));
        }
        let verdict = producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(records)?;
        if let Verdict::Duplicate {
            base_offset,
            last_offset,
        } = verdict
        {
            return Ok(self.info(base_offset, last_offset));
        }
        // Each Raft entry is one batch: a request with several plain batches proposes each,
        // queued in order while this request has the turn.
        let mut answers = Vec::new();
        for batch in batches(records) {
            let queued = self.raft.propose_queued(self.group, batch.to_vec());
            answers.push(queued.await.map_err(|error| self.error(name, error))?);
        }
        // A producer's batch keeps the turn until it is applied, so the next check sees it.
        // Plain batches are checked against nothing: the next request queues behind them
        // at once, and several are replicated together.
        let turn = matches!(verdict, Verdict::Producer(_)).then_some(turn);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first: Option<i64> = None;
        let mut last = -1;
        for answer in answers {
            let answer = match tokio::time::timeout_at(deadline, answer).await {
                Ok(answer) => answer.map_err(|error| self.error(name, error))?,
                Err(_) => {
                    return Err(BrokerError::RequestTimedOut(format!(
                        "{name}: no majority within {timeout:?}"
                    )));
                }
            };
            let (base, end) = decode_answer(&answer).ok_or_else(|| {
                BrokerError::Replication(format!("{name}: unreadable answer to a proposal"))
            })?;
            first.get_or_insert(base);
            last = end;
        }
        drop(turn);
        let base = first.ok_or_else(|| {
            BrokerError::Log(commerce_storage::LogError::CorruptBatch {
                reason: "no record batch in the request".to_string(),
            })
        })?;
        Ok(self.info(base, last))
    }

    fn info(&self, base_offset: i64, last_offset: i64) -> AppendInfo {
        AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: -1,
            log_start_offset: self.log.log().log_start_offset(),
        }
    }

    fn error(&self, name: &str, error: RaftGroupError) -> BrokerError {
        match error {
            RaftGroupError::NotLeader { .. }
            | RaftGroupError::UnknownGroup(_)
            | RaftGroupError::Stopped { .. } => BrokerError::NotLeaderOrFollower(name.to_string()),
            RaftGroupError::BadCommand { message, .. } => {
                BrokerError::Log(commerce_storage::LogError::CorruptBatch { reason: message })
            }
            RaftGroupError::Raft { message, .. } => {
                BrokerError::RequestTimedOut(format!("{name}: {message}"))
            }
            other => BrokerError::Replication(format!("{name}: {other}")),
        }
    }
}
