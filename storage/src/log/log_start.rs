//! The durable log start: the first offset a reader may ask for.
//!
//! Normally the log start is the base offset of the first segment. A client may move it
//! further (Kafka's DeleteRecords) to an offset inside a segment; that cannot be expressed by
//! deleting files, so the offset is kept in a small checkpoint file beside the segments,
//! written atomically (temp file, fsync, rename) *before* the new start is published, so a
//! crash never brings deleted records back. Whole segments that end at or below the new start
//! are then deleted, as retention would.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tracing::info;

use super::error::LogError;
use super::index::write_atomically;
use super::partition_log::{PartitionLog, lock};
use super::segment::{remove_if_present, sync_dir};

pub(crate) const LOG_START_CHECKPOINT: &str = "log-start-offset.checkpoint";

/// The checkpointed log start, if one was written (an unreadable file counts as none: the
/// segments' own start is then used, which never hides records that still exist).
pub(crate) fn read_checkpoint(dir: &Path) -> io::Result<Option<i64>> {
    match fs::read_to_string(dir.join(LOG_START_CHECKPOINT)) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn write_checkpoint(dir: &Path, offset: i64) -> io::Result<()> {
    write_atomically(
        &dir.join(LOG_START_CHECKPOINT),
        offset.to_string().as_bytes(),
    )?;
    sync_dir(dir)
}

pub(crate) fn remove_checkpoint(dir: &Path) -> io::Result<()> {
    remove_if_present(&dir.join(LOG_START_CHECKPOINT))
}

impl PartitionLog {
    /// Moves the log start forward to `offset` (DeleteRecords): reads below it fail with
    /// `OffsetOutOfRange` from now on and after a restart, and sealed segments that lie
    /// wholly below it are deleted. `offset` past the log end is `OffsetOutOfRange`; an
    /// offset at or below the current start moves nothing, but segments wholly below
    /// `offset` still go (a Raft group's purge, after [`PartitionLog::raise_log_start`]
    /// moved the start first). Returns the log start after.
    pub fn advance_log_start(&self, offset: i64) -> Result<i64, LogError> {
        let _writer = lock(&self.writer);
        let start = self.raise_locked(offset)?;
        self.delete_segments_below(offset)?;
        Ok(start)
    }

    /// Moves the log start forward to `offset` as [`PartitionLog::advance_log_start`] does,
    /// durably, but deletes nothing: for a Raft group's log, whose entries below the new
    /// start stay until Raft purges them (a lagging replica may still need them), while
    /// Kafka readers see the log from the new start on. Read them with
    /// [`PartitionLog::read_below_start`].
    pub fn raise_log_start(&self, offset: i64) -> Result<i64, LogError> {
        let _writer = lock(&self.writer);
        self.raise_locked(offset)
    }

    /// The log start after moving it to `offset` (checkpointed first); the writer lock held.
    fn raise_locked(&self, offset: i64) -> Result<i64, LogError> {
        let start = self.log_start_offset();
        let end = self.log_end_offset();
        if offset > end || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start,
                end,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        write_checkpoint(&self.dir, offset)?;
        self.log_start.store(offset, Ordering::Release);
        info!(dir = %self.dir.display(), log_start = offset, "advanced log start");
        Ok(offset)
    }

    /// Deletes the sealed segments wholly below `offset`: a sealed segment is when the
    /// next segment starts at or before it. The active segment is never deleted. The
    /// writer lock held.
    fn delete_segments_below(&self, offset: i64) -> Result<(), LogError> {
        let segments = self.segments();
        let deletable = segments
            .windows(2)
            .take_while(|pair| pair.get(1).is_some_and(|next| next.base_offset() <= offset))
            .count();
        if deletable == 0 {
            return Ok(());
        }
        let (deleted, kept) = segments.split_at(deletable);
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(kept.to_vec());
        // A purge below a raised start: the first kept segment now bounds it from below.
        if let Some(first) = kept.first() {
            self.log_start
                .fetch_max(first.base_offset(), Ordering::AcqRel);
        }
        let freed: u64 = deleted.iter().map(|s| s.size()).sum();
        self.size.fetch_sub(freed, Ordering::AcqRel);
        for segment in deleted {
            segment.delete_files()?;
        }
        sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), deleted_segments = deletable, "deleted segments below {offset}");
        Ok(())
    }
}
