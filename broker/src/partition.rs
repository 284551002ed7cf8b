//! A partition hosted on this node: its log plus a watch channel announcing the log end, so
//! that long-polling fetches and in-process subscribers wake when data arrives.

use crate::error::Result;
use crate::topic_name::TopicName;
use commerce_storage::{AppendInfo, LogRead, PartitionLog, ReadOptions};
use tokio::sync::watch;

/// A single node is the only leader there is; its epoch never changes. Replication will set
/// this from the Raft term.
pub const LEADER_EPOCH: i32 = 0;

pub struct Partition {
    pub topic: TopicName,
    pub index: i32,
    log: PartitionLog,
    end_offset: watch::Sender<i64>,
}

impl Partition {
    pub fn new(topic: TopicName, index: i32, log: PartitionLog) -> Partition {
        let (end_offset, _) = watch::channel(log.log_end_offset());
        Partition {
            topic,
            index,
            log,
            end_offset,
        }
    }

    /// Appends wire-format record batches (offsets and leader epoch are rewritten in place)
    /// and wakes whoever waits for new data.
    pub fn append(&self, batches: &mut [u8]) -> Result<AppendInfo> {
        let info = self.log.append(batches, LEADER_EPOCH)?;
        self.end_offset.send_replace(info.last_offset + 1);
        Ok(info)
    }

    /// Stored batches from `offset`, bounded by the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<LogRead> {
        let options = ReadOptions {
            max_bytes,
            min_one_batch,
            upper_bound: Some(self.high_watermark()),
        };
        Ok(self.log.read(offset, options)?)
    }

    /// On one node everything appended is committed. Replication makes this the majority's.
    pub fn high_watermark(&self) -> i64 {
        self.log.log_end_offset()
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
