//! What a Raft log kept in the partition log needs beyond Kafka's operations: restarting the
//! log empty at an arbitrary offset (a replica brought back by a snapshot starts its log at
//! the leader's log start, not at 0), and listing the base offsets of the batches from an
//! offset on without reading their bodies (rebuilding the Raft index -> offset mapping).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tracing::warn;

use super::error::LogError;
use super::log_start;
use super::partition_log::{PartitionLog, lock};
use super::segment::{LOG_EXT, Segment, remove_if_present, sync_dir};

impl PartitionLog {
    /// Empties the log and restarts it at `offset`: log start = log end = `offset`, whatever
    /// the log held before (above or below). Crash-safe in the sense that a crash leaves
    /// either segments that recovery opens as they are, or no segment at all; the caller
    /// (the Raft log store) records the offset it wants first and redoes the reset on open.
    pub fn reset_to(&self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: self.log_start_offset(),
                end: self.log_end_offset(),
            });
        }
        let mut writer = lock(&self.writer);
        self.check_writable()?;
        let _no_readers = self.rewrite.write().unwrap_or_else(PoisonError::into_inner);
        for segment in self.segments().iter() {
            segment.delete_files().map_err(|e| self.poison(e))?;
        }
        // A clean-shutdown marker or start checkpoint describes the old log.
        remove_if_present(&self.dir.join(super::partition_log::CLEAN_SHUTDOWN_MARKER))
            .map_err(|e| self.poison(e))?;
        log_start::remove_checkpoint(&self.dir).map_err(|e| self.poison(e))?;
        // A leftover file of the same name (a crash inside an earlier reset) is stale.
        remove_if_present(&self.dir.join(super::segment::file_name(offset, LOG_EXT)))
            .map_err(|e| self.poison(e))?;
        let active = Arc::new(Segment::create(&self.dir, offset).map_err(|e| self.poison(e))?);
        sync_dir(&self.dir).map_err(|e| self.poison(e))?;
        self.log_start.store(offset, Ordering::Release);
        self.log_end.store(offset, Ordering::Release);
        self.size.store(0, Ordering::Release);
        writer.active = Arc::clone(&active);
        writer.first_append_ms = None;
        writer.marker_present = false;
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(vec![active]);
        warn!(dir = %self.dir.display(), offset, "reset log to empty");
        Ok(())
    }

    /// Base offset and partitionLeaderEpoch of every batch from the one containing `offset`
    /// to the log end, walking headers only (one small pread per batch, no bodies).
    pub(crate) fn batch_heads_from(&self, offset: i64) -> Result<Vec<(i64, i32)>, LogError> {
        let _no_truncation = self.rewrite.read().unwrap_or_else(PoisonError::into_inner);
        let mut heads = Vec::new();
        for segment in self.segments().iter() {
            if segment.next_offset() <= offset {
                continue;
            }
            let mut position = 0;
            let end = segment.size();
            while position < end {
                let header = segment.header_at(position)?;
                if header.last_offset() >= offset {
                    heads.push((header.base_offset, header.leader_epoch));
                }
                position += header.size() as u64;
            }
        }
        Ok(heads)
    }
}
