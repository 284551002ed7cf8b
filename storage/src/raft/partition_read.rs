//! Reading a partition group's Raft log by index range: side entries from memory, batches
//! from the segments in one sequential pass (see `partition_store`).

use openraft::{CommittedLeaderId, EntryPayload};

use super::partition_store::{PartitionRaftLog, PartitionStoreError, READ_CHUNK};
use super::types::{Command, Entry, LogId};
use crate::log::ReadOptions;
use crate::log::batch::{BatchHeader, Batches};

impl PartitionRaftLog {
    /// Entries with indexes in `[start, end)` that are in the log: side entries from
    /// memory, batches read sequentially from the first one's offset.
    pub(crate) fn read_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, PartitionStoreError> {
        self.read_entries_limited(start, end, usize::MAX)
    }

    /// Like [`PartitionRaftLog::read_entries`], stopping after the entry that brings the
    /// batches read to `max_bytes` (the first entry always comes, whatever its size; side
    /// entries count nothing).
    pub(crate) fn read_entries_limited(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, PartitionStoreError> {
        // Held for the whole read: a truncation or purge waits rather than pulling batches
        // from under it.
        let state = self.read();
        let start = start.max(state.first_index);
        let end = end.min(state.end_index());
        let Some(upper) = end.checked_sub(1).and_then(|last| state.offset_after(last)) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::with_capacity((end.saturating_sub(start)).min(1024) as usize);
        let mut chunk = Chunk::default();
        let mut read_bytes = 0usize;
        for index in start..end {
            if read_bytes >= max_bytes && !entries.is_empty() {
                break;
            }
            let Some(epoch) = state.epoch_at(index) else {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "no epoch covers entry {index}"
                )));
            };
            let log_id = LogId::new(CommittedLeaderId::new(epoch.term, epoch.leader), index);
            if let Some(side) = state.side.get(&index) {
                entries.push(Entry {
                    log_id,
                    payload: side.payload.clone(),
                });
                continue;
            }
            let expected = state.offset_of(index).unwrap_or(-1);
            let batch = chunk.next_batch(self, expected, upper)?;
            let Some(header) = BatchHeader::parse(&batch) else {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "entry {index}: no whole batch at offset {expected}"
                )));
            };
            if i64::try_from(epoch.term).ok() != Some(i64::from(header.leader_epoch)) {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "entry {index} has epoch {}, the epoch cache says term {}",
                    header.leader_epoch, epoch.term
                )));
            }
            read_bytes += batch.len();
            entries.push(Entry {
                log_id,
                payload: EntryPayload::Normal(Command(batch)),
            });
        }
        Ok(entries)
    }
}

/// Batches read ahead from the log, handed out one at a time in offset order.
#[derive(Default)]
struct Chunk {
    bytes: bytes::Bytes,
    /// Where the next batch starts in `bytes`.
    at: usize,
}

impl Chunk {
    /// The batch at `offset`: the next one read ahead, or (when those are used up) the first
    /// of a new read from `offset`, below `upper`.
    fn next_batch(
        &mut self,
        log: &PartitionRaftLog,
        offset: i64,
        upper: i64,
    ) -> Result<Vec<u8>, PartitionStoreError> {
        if self.at >= self.bytes.len() {
            let read = log.log.read_below_start(
                offset,
                ReadOptions {
                    max_bytes: READ_CHUNK,
                    min_one_batch: true,
                    upper_bound: Some(upper),
                },
            )?;
            self.bytes = read.bytes;
            self.at = 0;
        }
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let Some((_, header)) = Batches::new(rest).next() else {
            return Err(PartitionStoreError::Inconsistent(format!(
                "an entry should be at offset {offset}, the log has nothing there"
            )));
        };
        if header.base_offset != offset {
            return Err(PartitionStoreError::Inconsistent(format!(
                "an entry expected at offset {offset}, found a batch at {}",
                header.base_offset
            )));
        }
        let batch = rest.get(..header.size()).unwrap_or_default().to_vec();
        self.at += header.size();
        Ok(batch)
    }
}
