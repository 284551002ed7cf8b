//! Crash-safe replacement of a sealed segment's batches: the storage half of log compaction.
//!
//! The log does not know what a record or a key is; the caller (the broker's cleaner) gets
//! each stored batch of one sealed segment and answers with the batches to keep in its place
//! (the same bytes, re-encoded ones with fewer records, or nothing). Offsets are preserved:
//! a replacement may only hold offsets of the batch it replaces, so a compacted log has
//! gaps, as Kafka's does, and every surviving record keeps its offset.
//!
//! Crash safety, as Kafka's `.cleaned` / `.swap` files: the new contents are written to
//! `<base>.cleaned` and fsynced; the old index files are removed; then one `rename` over
//! `<base>.log` is the commit point. A crash before it leaves a `.cleaned` leftover that
//! recovery deletes (the old segment is intact); a crash after it leaves the new segment
//! without index files, which recovery rebuilds by a scan.
//!
//! Readers never wait: they hold the old segment's open file, which keeps reading the old
//! inode after the rename; new readers see the new segment once it is published.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tracing::debug;

use super::batch::{self, BatchHeader, Batches};
use super::error::LogError;
use super::partition_log::{PartitionLog, lock};
use super::recovery::{self, ScanFrom};
use super::segment::{INDEX_EXT, LOG_EXT, Segment, TIME_INDEX_EXT, remove_if_present, sync_dir};

/// Extension of a segment's replacement while it is being written.
pub(crate) const CLEANED_EXT: &str = "cleaned";

/// A sealed segment, as the cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// The offset after the segment (the next segment's base offset).
    pub next_offset: i64,
    pub size: u64,
}

/// What a rewrite did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteStats {
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Whether anything differed (an unchanged segment is left as it was).
    pub changed: bool,
}

impl PartitionLog {
    /// The sealed segments (every segment but the active one), oldest first.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let segments = self.segments();
        segments
            .windows(2)
            .filter_map(|pair| match pair {
                [segment, next] => Some(SealedSegment {
                    base_offset: segment.base_offset(),
                    next_offset: next.base_offset(),
                    size: segment.size(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Replaces the batches of the sealed segment starting at `base_offset`: `replace` gets
    /// each stored batch and returns the bytes to keep instead (zero or more whole v2
    /// batches whose offsets lie within the original batch's, ascending; `None` or an empty
    /// buffer drops the batch). Returns `None` if there is no such sealed segment (or it was
    /// deleted meanwhile). A replacement that is not valid batches, or that invents offsets,
    /// is `CorruptBatch` and changes nothing. Appends and reads continue meanwhile. A
    /// segment left with nothing is removed, except the first, which stays (empty) so that
    /// the log start does not move.
    pub fn rewrite_segment(
        &self,
        base_offset: i64,
        mut replace: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Option<RewriteStats>, LogError> {
        self.check_writable()?;
        let Some(segment) = self.sealed(base_offset) else {
            return Ok(None);
        };
        let cleaned_path = segment.path(CLEANED_EXT);
        let stats = match self.write_cleaned(&segment, &mut replace) {
            Ok(stats) => stats,
            Err(error) => {
                remove_if_present(&cleaned_path)?;
                return Err(error);
            }
        };
        if !stats.changed {
            remove_if_present(&cleaned_path)?;
            return Ok(Some(stats));
        }

        // The swap: serialized with roll, retention and truncation, which also replace the
        // segment list.
        let _writer = lock(&self.writer);
        let segments = self.segments();
        let position = segments
            .iter()
            .position(|s| Arc::ptr_eq(s, &segment))
            .filter(|&i| i + 1 < segments.len());
        let Some(position) = position else {
            // Deleted (retention, truncation) while we were writing: nothing to replace.
            remove_if_present(&cleaned_path)?;
            return Ok(None);
        };
        let mut next: Vec<Arc<Segment>> = segments.as_ref().clone();
        if stats.bytes_after == 0 && position > 0 {
            // Nothing left: the segment goes, as recovery would drop an empty sealed one.
            // The first segment stays, empty: its base offset is the log start, which
            // compaction must not move (a consumer there would be reset past records).
            next.remove(position);
            segment.delete_files().map_err(|e| self.poison(e))?;
            remove_if_present(&cleaned_path)?;
            sync_dir(&self.dir).map_err(|e| self.poison(e))?;
        } else {
            let replacement = self.swap_in(&segment).map_err(|e| match e {
                LogError::Io(io) => self.poison(io),
                other => other,
            })?;
            if let Some(slot) = next.get_mut(position) {
                *slot = Arc::new(replacement);
            }
        }
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        self.size
            .fetch_sub(stats.bytes_before - stats.bytes_after, Ordering::AcqRel);
        debug!(dir = %self.dir.display(), segment = base_offset, before = stats.bytes_before, after = stats.bytes_after, "rewrote segment");
        Ok(Some(stats))
    }

    fn sealed(&self, base_offset: i64) -> Option<Arc<Segment>> {
        let segments = self.segments();
        let sealed = segments.len().saturating_sub(1);
        segments
            .iter()
            .take(sealed)
            .find(|s| s.base_offset() == base_offset)
            .cloned()
    }

    /// Writes the replacement to `<base>.cleaned` and fsyncs it. The file is only created
    /// at the first batch that changes (the unchanged prefix is then copied), so a segment
    /// that is already clean costs reads only.
    fn write_cleaned(
        &self,
        segment: &Segment,
        replace: &mut impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<RewriteStats, LogError> {
        let mut out: Option<BufWriter<File>> = None;
        let mut stats = RewriteStats {
            bytes_before: segment.size(),
            ..RewriteStats::default()
        };
        let mut position = 0;
        while position < stats.bytes_before {
            let header = segment.header_at(position)?;
            let stored = segment.read_at(position, header.size())?;
            let kept = replace(&stored).unwrap_or_default();
            if kept != stored {
                check_offsets(&header, &kept)?;
            }
            let writer = match &mut out {
                Some(writer) => Some(writer),
                None if kept != stored => {
                    stats.changed = true;
                    let mut writer = BufWriter::new(File::create(segment.path(CLEANED_EXT))?);
                    copy_prefix(segment, position, &mut writer)?;
                    Some(out.insert(writer))
                }
                None => None,
            };
            if let Some(writer) = writer {
                writer.write_all(&kept)?;
            }
            stats.bytes_after += kept.len() as u64;
            position += header.size() as u64;
        }
        if let Some(writer) = out {
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        Ok(stats)
    }

    /// Renames `<base>.cleaned` over `<base>.log` (the commit point) and opens the result
    /// with fresh, fsynced indexes.
    fn swap_in(&self, old: &Segment) -> Result<Segment, LogError> {
        // Stale index files must not outlive the rename: a crash right after it has to
        // rebuild them from the new file.
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_present(&old.path(ext))?;
        }
        sync_dir(&self.dir)?;
        fs::rename(old.path(CLEANED_EXT), old.path(LOG_EXT))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(old.path(LOG_EXT))?;
        let base = old.base_offset();
        let scan = recovery::scan(
            &file,
            base,
            ScanFrom::start(base),
            self.config().index_interval_bytes,
        )?;
        if let Some(problem) = scan.problem {
            return Err(LogError::corrupt(format!(
                "rewritten segment {base} does not scan: {problem}"
            )));
        }
        let segment = Segment::from_parts(
            &self.dir,
            base,
            file,
            scan.valid_size,
            old.next_offset(),
            scan.index,
        );
        segment.seal()?;
        Ok(segment)
    }
}

/// Refuses a replacement that is not whole valid batches within the original's offsets.
fn check_offsets(original: &BatchHeader, kept: &[u8]) -> Result<(), LogError> {
    if kept.is_empty() {
        return Ok(());
    }
    batch::validate_batches(kept)?;
    let mut floor = original.base_offset;
    for (_, new) in Batches::new(kept) {
        if new.base_offset < floor || new.last_offset() > original.last_offset() {
            return Err(LogError::corrupt(format!(
                "a rewrite of batch {}..={} holds offsets {}..={}",
                original.base_offset,
                original.last_offset(),
                new.base_offset,
                new.last_offset()
            )));
        }
        floor = new.last_offset() + 1;
    }
    Ok(())
}

/// Copies the first `len` bytes of the segment (batches kept as they were) to `out`.
fn copy_prefix(segment: &Segment, len: u64, out: &mut impl Write) -> Result<(), LogError> {
    const CHUNK: u64 = 1 << 20;
    let mut at = 0;
    while at < len {
        let want = usize::try_from(CHUNK.min(len - at)).unwrap_or(usize::MAX);
        let bytes = segment.read_at(at, want)?;
        if bytes.is_empty() {
            return Err(LogError::corrupt("segment shorter than its published size"));
        }
        out.write_all(&bytes)?;
        at += bytes.len() as u64;
    }
    Ok(())
}
