//! A partition hosted on this node: its log plus a watch channel announcing the log end, so
//! that long-polling fetches and in-process subscribers wake when data arrives.
//!
//! On a single node the partition appends to its log directly. In a cluster it is a
//! replica of a Raft group ([`Replica`]): the log is the group's Raft log, appends are
//! proposals answered after a majority has them, reads stop at the high watermark (the
//! committed end), and only the leader takes writes and serves fetches.

use crate::error::Result;
use crate::producer::batch_header::Marker;
use crate::producer::marker::marker_batch;
use crate::producer::partition_state::{ProducerState, Verdict};
use crate::producer::txn_index::AbortedTxn;
use crate::producer::{ProducerError, batch_header::ProducerBatch};
use crate::replication::Replica;
use crate::topic_name::TopicName;
use commerce_storage::{AppendInfo, LogRead, PartitionLog, ReadOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// A single node is the only leader there is; its epoch never changes. A replicated
/// partition's epoch is its Raft term.
pub const LEADER_EPOCH: i32 = 0;

/// How long an in-process append (services, group offsets) waits for a majority.
const LOCAL_APPEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Partition {
    pub topic: TopicName,
    pub index: i32,
    log: Arc<PartitionLog>,
    /// The end of what readers may see: the log end on one node, the high watermark of a
    /// replica (moved by its state machine as entries commit).
    end_offset: Arc<watch::Sender<i64>>,
    /// Producer sequences and transactions; held across check + append + record so that a
    /// verdict and the log never disagree (two retries of a batch cannot both get in).
    /// A replica's is kept by its state machine, on every replica alike.
    producers: Arc<Mutex<ProducerState>>,
    /// The partition's directory, where the producer-state snapshot goes.
    dir: PathBuf,
    /// Set in a cluster: the Raft group this partition is a replica of.
    replica: Option<Replica>,
}

impl Partition {
    /// Wraps an opened log (kept in `dir`), recovering producer state from the snapshot a
    /// clean shutdown left and the batch headers after it.
    pub fn open(topic: TopicName, index: i32, log: PartitionLog, dir: &Path) -> Result<Partition> {
        let producers = ProducerState::recover(dir, &log)?;
        let (end_offset, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            topic,
            index,
            log: Arc::new(log),
            end_offset: Arc::new(end_offset),
            producers: Arc::new(Mutex::new(producers)),
            dir: dir.to_path_buf(),
            replica: None,
        })
    }

    /// A replica of a partition group. `producers` and `end_offset` are shared with the
    /// group's state machine, which keeps them as entries are applied.
    pub fn replicated(
        topic: TopicName,
        index: i32,
        replica: Replica,
        producers: Arc<Mutex<ProducerState>>,
        end_offset: Arc<watch::Sender<i64>>,
        dir: PathBuf,
    ) -> Partition {
        Partition {
            topic,
            index,
            log: replica.log().log().clone(),
            end_offset,
            producers,
            dir,
            replica: Some(replica),
        }
    }

    /// The Raft group behind this partition, in a cluster.
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// Whether this node takes writes and serves fetches for the partition: always on a
    /// single node; in a cluster, on the leader with a live majority.
    pub fn is_leader(&self) -> bool {
        self.replica.as_ref().is_none_or(Replica::is_leader)
    }

    /// Kafka's leader epoch: fixed on one node, the Raft term in a cluster.
    pub fn leader_epoch(&self) -> i32 {
        self.replica
            .as_ref()
            .map_or(LEADER_EPOCH, Replica::leader_epoch)
    }

    fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// Appends a produce request's records and answers once they are durable: on one
    /// node after the local append, in a cluster once a majority has them (within
    /// `timeout`). Use this on async paths; [`Partition::append`] blocks.
    pub async fn append_records(
        &self,
        records: &mut [u8],
        timeout: Duration,
    ) -> Result<AppendInfo> {
        match &self.replica {
            Some(replica) => {
                replica
                    .append(&self.name(), &self.producers, records, timeout)
                    .await
            }
            None => self.append(records),
        }
    }

    fn producers(&self) -> MutexGuard<'_, ProducerState> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends wire-format record batches (offsets and leader epoch are rewritten in place)
    /// and wakes whoever waits for new data. A producer's batch is checked against its
    /// sequence first: a retry of a stored batch is answered with the stored offsets and
    /// appended again never.
    pub fn append(&self, batches: &mut [u8]) -> Result<AppendInfo> {
        if let Some(replica) = &self.replica {
            // In-process writers (services, group offsets) are synchronous; they wait for
            // the majority on this thread, which tokio lets go of its other tasks.
            let name = self.name();
            return crate::replication::wait_blocking(replica.append(
                &name,
                &self.producers,
                batches,
                LOCAL_APPEND_TIMEOUT,
            ))?;
        }
        let mut producers = self.producers();
        let header = match producers.admit(batches)? {
            Verdict::Plain => None,
            Verdict::Producer(header) => Some(header),
            Verdict::Duplicate {
                base_offset,
                last_offset,
            } => {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    max_timestamp: -1,
                    log_start_offset: self.log.log_start_offset(),
                });
            }
        };
        let info = self.log.append(batches, LEADER_EPOCH)?;
        if let Some(header) = header {
            producers.record(&header, batches, info.base_offset);
        }
        drop(producers);
        self.end_offset.send_replace(info.last_offset + 1);
        Ok(info)
    }

    /// Appends a transaction marker for `producer_id` (the coordinator ending a transaction)
    /// on one node. In a cluster markers are proposed to the partition's group by
    /// `Replication::write_marker`, since its leader may be another node.
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        marker: Marker,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        if self.replica.is_some() {
            return Err(crate::error::BrokerError::NotInClusterMode(
                "markers written to a replica directly",
            ));
        }
        let mut batch = marker_batch(producer_id, epoch, marker, now_ms)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        let header = ProducerBatch::parse(&batch)
            .ok_or_else(|| std::io::Error::other("marker batch too short"))?;
        let mut producers = self.producers();
        if producers
            .epoch(producer_id)
            .is_some_and(|known| known > epoch)
        {
            return Err(ProducerError::ProducerFenced.into());
        }
        let info = self.log.append(&mut batch, LEADER_EPOCH)?;
        producers.record(&header, &batch, info.base_offset);
        drop(producers);
        self.end_offset.send_replace(info.last_offset + 1);
        Ok(info)
    }

    /// Saves producer state for a fast next open (clean shutdown). Taken under the append
    /// lock, so the state and the log end it names agree.
    pub fn write_producer_snapshot(&self) -> Result<()> {
        if self.replica.is_some() {
            // A replica's producer state is in its group's snapshots and log.
            return Ok(());
        }
        let producers = self.producers();
        producers.write_snapshot(&self.dir, self.log.log_end_offset())?;
        Ok(())
    }

    /// Stored batches from `offset`, bounded by the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<LogRead> {
        self.read_below(offset, max_bytes, min_one_batch, self.high_watermark())
    }

    /// Stored batches from `offset` whose base offset is below `upper_bound`.
    pub fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        upper_bound: i64,
    ) -> Result<LogRead> {
        let options = ReadOptions {
            max_bytes,
            min_one_batch,
            upper_bound: Some(upper_bound),
        };
        Ok(self.log.read(offset, options)?)
    }

    /// The end of what read_committed consumers may see: the first offset of the oldest
    /// transaction still open here, or the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.producers().last_stable_offset(high_watermark)
    }

    /// Aborted transactions with records in [from, to).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let mut producers = self.producers();
        producers.trim_before(self.log.log_start_offset());
        producers.aborted_between(from, to)
    }

    /// On one node everything appended is committed; in a cluster, what a majority has.
    pub fn high_watermark(&self) -> i64 {
        match &self.replica {
            Some(replica) => replica.log().high_watermark(),
            None => self.log.log_end_offset(),
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// A receiver that sees the log end change after every append.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.end_offset.subscribe()
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }
}
