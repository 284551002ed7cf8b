//! Which segments retention deletes: a pure decision over segment sizes and timestamps.
//!
//! Retention only ever deletes a prefix of the *sealed* segments (never the active one),
//! so the log stays contiguous and the log start simply moves to the first survivor.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tracing::info;

use super::error::LogError;
use super::partition_log::{PartitionLog, lock};
use super::segment::sync_dir;

/// What retention needs to know about one sealed segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentStats {
    pub size: u64,
    /// Largest batch max timestamp in the segment (`None` if it holds no batch).
    pub max_timestamp: Option<i64>,
}

/// The number of oldest sealed segments to delete: the longer of
/// - the prefix whose newest timestamp is older than `now_ms - retention_ms`, and
/// - the prefix that must go for the whole log (`total_size`) to fit `retention_bytes`.
pub(crate) fn segments_to_delete(
    sealed: &[SegmentStats],
    total_size: u64,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    now_ms: i64,
) -> usize {
    let by_time = retention_ms.map_or(0, |retention| {
        let cutoff = now_ms.saturating_sub(retention);
        sealed
            .iter()
            .take_while(|s| s.max_timestamp.is_none_or(|ts| ts < cutoff))
            .count()
    });
    let by_size = retention_bytes.map_or(0, |limit| {
        let mut size = total_size;
        sealed
            .iter()
            .take_while(|s| {
                let over = size > limit;
                size = size.saturating_sub(s.size);
                over
            })
            .count()
    });
    by_time.max(by_size)
}

impl PartitionLog {
    /// How many of the oldest sealed segments retention would delete now.
    fn expired_segments(&self, segments: &[Arc<super::segment::Segment>], now_ms: i64) -> usize {
        let config = self.config();
        let sealed: Vec<SegmentStats> = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .map(|s| SegmentStats {
                size: s.size(),
                max_timestamp: s.index().max_timestamp().map(|(ts, _)| ts),
            })
            .collect();
        segments_to_delete(
            &sealed,
            self.size_bytes(),
            config.retention_ms,
            config.retention_bytes,
            now_ms,
        )
    }

    /// Where retention would move the log start now (the first kept segment's base
    /// offset), or `None` when it would delete nothing. For a log whose deletions must go
    /// through someone else (a Raft group purges its log up to an entry): it deletes
    /// nothing itself.
    pub fn retention_start(&self, now_ms: i64) -> Option<i64> {
        let segments = self.segments();
        let count = self.expired_segments(&segments, now_ms);
        if count == 0 {
            return None;
        }
        segments.get(count).map(|segment| segment.base_offset())
    }

    /// Deletes whole sealed segments (never the active one) whose newest timestamp is older
    /// than `now_ms - retention_ms`, or while the log is bigger than `retention_bytes`.
    /// Advances the log start. Returns how many segments were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        // Serialize with roll and truncation, which also replace the segment list.
        let _writer = lock(&self.writer);
        let segments = self.segments();
        let count = self.expired_segments(&segments, now_ms);
        if count == 0 {
            return Ok(0);
        }
        let (deleted, kept) = segments.split_at(count);
        let kept = kept.to_vec();
        let new_start = kept
            .first()
            .map_or(self.log_end_offset(), |s| s.base_offset());
        // Publish first: new readers no longer see the deleted segments, and readers that
        // still hold them keep reading through their open file handles.
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(kept);
        // Never backwards: DeleteRecords may already have moved it further.
        self.log_start.fetch_max(new_start, Ordering::AcqRel);
        let freed: u64 = deleted.iter().map(|s| s.size()).sum();
        self.size.fetch_sub(freed, Ordering::AcqRel);
        for segment in deleted {
            segment.delete_files()?;
        }
        sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), count, freed, log_start = new_start, "retention deleted segments");
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(sizes_and_times: &[(u64, i64)]) -> Vec<SegmentStats> {
        sizes_and_times
            .iter()
            .map(|&(size, ts)| SegmentStats {
                size,
                max_timestamp: Some(ts),
            })
            .collect()
    }

    #[test]
    fn time_retention_deletes_the_expired_prefix_only() {
        let sealed = stats(&[(10, 100), (10, 200), (10, 50), (10, 900)]);
        // Cutoff 1000 - 750 = 250: the first three are older, the fourth is not.
        assert_eq!(segments_to_delete(&sealed, 50, Some(750), None, 1000), 3);
        // A young segment stops the prefix even if an older one follows it.
        let sealed = stats(&[(10, 100), (10, 900), (10, 50)]);
        assert_eq!(segments_to_delete(&sealed, 40, Some(750), None, 1000), 1);
        assert_eq!(segments_to_delete(&sealed, 40, None, None, 1000), 0);
    }

    #[test]
    fn size_retention_deletes_oldest_until_the_log_fits() {
        let sealed = stats(&[(10, 0), (10, 0), (10, 0)]);
        // 35 bytes total (5 in the active segment), limit 15: delete two (35 -> 25 -> 15).
        assert_eq!(segments_to_delete(&sealed, 35, None, Some(15), 0), 2);
        assert_eq!(segments_to_delete(&sealed, 35, None, Some(35), 0), 0);
        // Never more than the sealed segments, however small the limit.
        assert_eq!(segments_to_delete(&sealed, 35, None, Some(0), 0), 3);
    }
}
