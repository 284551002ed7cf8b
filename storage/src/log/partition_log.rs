//! [`PartitionLog`]: one partition's log — offsets, appends, reads, rolling, flushing,
//! retention and truncation over a list of [`Segment`]s.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::batch::{self, BatchHeader, Batches};
use super::config::{FlushPolicy, LogConfig};
use super::error::LogError;
use super::log_start;
use super::recovery::{self, ScanFrom};
use super::segment::{Segment, remove_if_present, sync_dir};

/// Present only between a clean `close` and the next `open`: recovery may then trust the
/// active segment's index files instead of scanning it.
pub(super) const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";

/// Offsets assigned by an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Largest batch maxTimestamp among the appended batches.
    pub max_timestamp: i64,
    pub log_start_offset: i64,
}

/// Limits of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Total bytes returned at most (but see `min_one_batch`).
    pub max_bytes: usize,
    /// Return the first batch whole even if it is larger than `max_bytes` (KIP-74).
    pub min_one_batch: bool,
    /// Do not return batches whose base offset is >= this (the high watermark).
    pub upper_bound: Option<i64>,
}

/// Stored bytes of whole batches, and the log bounds when the read started.
#[derive(Debug, Clone)]
pub struct LogRead {
    pub bytes: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Byte position of the batch in its segment file.
    pub position: u64,
}

/// One partition's durable log. `Send + Sync`; every method takes `&self`, so share it as
/// `Arc<PartitionLog>`. Appends are serialized; reads run concurrently with them and with
/// each other and never take the append lock.
pub struct PartitionLog {
    pub(super) dir: PathBuf,
    pub(super) config: RwLock<LogConfig>,
    /// The append lock: held while assigning offsets and writing, never while reading.
    pub(super) writer: Mutex<Writer>,
    /// Snapshot of the segments, oldest first; replaced (not mutated) on roll, retention
    /// and truncation so a reader clones one `Arc` and walks it without a lock.
    pub(super) segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    pub(super) log_start: AtomicI64,
    /// Published after the bytes are written: a reader that sees it can read them.
    pub(super) log_end: AtomicI64,
    pub(super) size: AtomicU64,
    /// Set by a failed write or fsync; the log then refuses writes until reopened.
    poisoned: AtomicBool,
    /// Reads hold it shared; truncation exclusively, because it rewrites bytes in place.
    pub(super) rewrite: RwLock<()>,
    last_flush: Mutex<Instant>,
    dirty: AtomicBool,
}

pub(super) struct Writer {
    pub(super) active: Arc<Segment>,
    /// Wall-clock time of the active segment's first append, for `segment_ms`.
    pub(super) first_append_ms: Option<i64>,
    /// The clean-shutdown marker is on disk and must go before the next write.
    pub(super) marker_present: bool,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it if it was not closed.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        fs::create_dir_all(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.exists();
        let segments = recovery::open_segments(dir, clean, config.index_interval_bytes)?;
        remove_if_present(&marker)?;
        sync_dir(dir)?;
        let segments: Vec<Arc<Segment>> = segments.into_iter().map(Arc::new).collect();
        let (Some(first), Some(active)) = (segments.first(), segments.last()) else {
            return Err(LogError::Io(std::io::Error::other(
                "recovery returned no segment",
            )));
        };
        let log_end = active.next_offset();
        // DeleteRecords may have moved the start inside the first segment.
        let log_start = log_start::read_checkpoint(dir)?
            .map_or(first.base_offset(), |checkpoint| {
                checkpoint.clamp(first.base_offset(), log_end)
            });
        let size = segments.iter().map(|s| s.size()).sum();
        let first_append_ms = if active.is_empty() {
            None
        } else {
            Some(active.header_at(0)?.max_timestamp)
        };
        info!(dir = %dir.display(), clean, log_start, log_end, segments = segments.len(), "opened partition log");
        let active = Arc::clone(active);
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            writer: Mutex::new(Writer {
                active,
                first_append_ms,
                marker_present: false,
            }),
            segments: RwLock::new(Arc::new(segments)),
            log_start: AtomicI64::new(log_start),
            log_end: AtomicI64::new(log_end),
            size: AtomicU64::new(size),
            poisoned: AtomicBool::new(false),
            rewrite: RwLock::new(()),
            last_flush: Mutex::new(Instant::now()),
            dirty: AtomicBool::new(false),
        })
    }

    /// Appends one or more concatenated v2 batches (a Produce request's `records`).
    ///
    /// Validates all of them first (magic 2, lengths consistent with the buffer, CRC) and
    /// writes nothing if any is bad. Then assigns offsets by rewriting each batch's
    /// baseOffset and partitionLeaderEpoch in place, writes the buffer with one write,
    /// updates the indexes, rolls first if the active segment is full or old, and flushes
    /// per the policy.
    pub fn append(&self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo, LogError> {
        let summary = batch::validate_batches(batches)?;
        let len = batches.len() as u64;
        let config = self.config();
        let mut writer = lock(&self.writer);
        self.check_writable()?;
        if writer.marker_present {
            remove_if_present(&self.dir.join(CLEAN_SHUTDOWN_MARKER)).map_err(|e| self.poison(e))?;
            writer.marker_present = false;
        }
        let now = now_ms();
        if self.should_roll(&writer, len, summary.offset_count, &config, now) {
            self.roll(&mut writer)?;
        }
        let segment = Arc::clone(&writer.active);
        let position = segment.size();
        let base_offset = self.log_end.load(Ordering::Acquire);
        let fits_index = u32::try_from(position + len).is_ok()
            && u32::try_from(base_offset + summary.offset_count - 1 - segment.base_offset())
                .is_ok();
        if !fits_index {
            return Err(LogError::corrupt(format!(
                "append of {len} bytes does not fit in one segment"
            )));
        }

        let mut next_offset = base_offset;
        let mut at = 0;
        while let Some(header) = batches.get(at..).and_then(BatchHeader::parse) {
            let size = header.size();
            if let Some(bytes) = batches.get_mut(at..at + size) {
                batch::assign(bytes, next_offset, leader_epoch);
            }
            next_offset += i64::from(header.last_offset_delta) + 1;
            at += size;
        }

        segment
            .write_at(batches, position)
            .map_err(|e| self.poison(e))?;
        segment.publish(position + len, next_offset);
        self.size.fetch_add(len, Ordering::AcqRel);
        self.log_end.store(next_offset, Ordering::Release);
        self.dirty.store(true, Ordering::Release);

        // Indexes after publishing: a reader with an older entry just walks a little further.
        let mut max_timestamp = i64::MIN;
        {
            let mut index = segment.index_mut();
            for (at, header) in Batches::new(batches) {
                max_timestamp = max_timestamp.max(header.max_timestamp);
                let relative = segment.relative(header.base_offset);
                let at = u32::try_from(position + at as u64).unwrap_or(u32::MAX);
                index.on_batch(
                    relative,
                    at,
                    header.max_timestamp,
                    header.size() as u64,
                    header.base_offset,
                    config.index_interval_bytes,
                );
            }
        }
        writer.first_append_ms.get_or_insert(now);
        drop(writer);

        if config.flush == FlushPolicy::EveryAppend {
            // Outside the append lock, so concurrent appenders share fsyncs.
            self.sync_segment(&segment)?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            max_timestamp,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// Stored bytes of whole batches starting at the batch that contains `offset`.
    ///
    /// At most `max_bytes` in total, except that with `min_one_batch` the first batch is
    /// returned whole even if larger (KIP-74). Batches at or past `upper_bound` (and past
    /// the log end seen when the read started) are left out. Batches come from one segment;
    /// the caller reads on from the next offset. `offset == log end` gives no bytes;
    /// outside `[log start, log end]` is `OffsetOutOfRange`.
    pub fn read(&self, offset: i64, options: ReadOptions) -> Result<LogRead, LogError> {
        self.read_from(offset, options, self.log_start_offset())
    }

    /// [`PartitionLog::read`] that also reads what the segments still hold below the log
    /// start: a Raft group's entries that [`PartitionLog::raise_log_start`] hid from Kafka
    /// readers but Raft has not purged (a lagging replica is sent them).
    pub fn read_below_start(&self, offset: i64, options: ReadOptions) -> Result<LogRead, LogError> {
        let floor = self.first_segment_base().min(self.log_start_offset());
        self.read_from(offset, options, floor)
    }

    /// The base offset of the first segment: the log start, unless the log start was
    /// moved inside the segments (DeleteRecords).
    pub fn first_segment_base(&self) -> i64 {
        self.segments()
            .first()
            .map_or_else(|| self.log_start_offset(), |s| s.base_offset())
    }

    /// A read of the offsets from `floor` on.
    fn read_from(
        &self,
        offset: i64,
        options: ReadOptions,
        floor: i64,
    ) -> Result<LogRead, LogError> {
        let _no_truncation = self.rewrite.read().unwrap_or_else(PoisonError::into_inner);
        let end = self.log_end_offset();
        let start = floor;
        let log_start_offset = self.log_start_offset();
        let empty = |bytes| {
            Ok(LogRead {
                bytes,
                log_start_offset,
                log_end_offset: end,
            })
        };
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start,
                end,
            });
        }
        let upper_bound = options.upper_bound.map_or(end, |bound| bound.min(end));
        if offset >= upper_bound {
            return empty(Bytes::new());
        }
        let segments = self.segments();
        let first = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in segments.iter().skip(first) {
            if let Some(located) = segment.locate_offset(offset)? {
                let bytes = segment.read_batches(
                    &located,
                    options.max_bytes,
                    options.min_one_batch,
                    upper_bound,
                )?;
                return empty(bytes);
            }
        }
        empty(Bytes::new())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// The first batch whose maxTimestamp >= `timestamp` (ListOffsets by time; the broker
    /// refines to the record). `None` if every batch is older.
    pub fn find_batch_by_timestamp(&self, timestamp: i64) -> Result<Option<BatchInfo>, LogError> {
        let _no_truncation = self.rewrite.read().unwrap_or_else(PoisonError::into_inner);
        for segment in self.segments().iter() {
            if segment
                .index()
                .max_timestamp()
                .is_none_or(|(max, _)| max < timestamp)
            {
                continue;
            }
            if let Some(found) = segment.locate_timestamp(timestamp)? {
                return Ok(Some(BatchInfo {
                    base_offset: found.header.base_offset,
                    last_offset: found.header.last_offset(),
                    max_timestamp: found.header.max_timestamp,
                    position: found.position,
                }));
            }
        }
        Ok(None)
    }

    /// The largest batch maxTimestamp in the log and the base offset of the (first) batch
    /// carrying it (ListOffsets MAX_TIMESTAMP). `None` for an empty log.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments()
            .iter()
            .filter_map(|s| s.index().max_timestamp())
            .fold(None, |best: Option<(i64, i64)>, candidate| match best {
                Some(best) if best.0 >= candidate.0 => Some(best),
                _ => Some(candidate),
            })
    }

    /// fsyncs the active segment (sealed ones were fsynced when rolled). The append lock is
    /// held only to find the segment, not during the fsync.
    pub fn flush(&self) -> Result<(), LogError> {
        self.check_writable()?;
        let active = Arc::clone(&lock(&self.writer).active);
        self.sync_segment(&active)
    }

    /// For [`FlushPolicy::Interval`]: flushes if there are unflushed appends and the last
    /// flush is older than the interval. Called periodically by a background task.
    pub fn flush_if_due(&self) -> Result<(), LogError> {
        let FlushPolicy::Interval(interval) = self.config().flush else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Acquire) || lock(&self.last_flush).elapsed() < interval {
            return Ok(());
        }
        self.flush()
    }

    /// Drops everything from the batch containing `offset` on; the log end becomes that
    /// batch's base offset (equal to `offset` when it is a batch boundary, as replication
    /// truncates). `offset >= log end` does nothing; `offset < log start` empties the log
    /// and restarts it at `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let config = self.config();
        let mut writer = lock(&self.writer);
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let _no_readers = self.rewrite.write().unwrap_or_else(PoisonError::into_inner);
        if writer.marker_present {
            remove_if_present(&self.dir.join(CLEAN_SHUTDOWN_MARKER)).map_err(|e| self.poison(e))?;
            writer.marker_present = false;
        }
        let segments = self.segments();
        let keep = if offset < self.log_start_offset() {
            0
        } else {
            segments.partition_point(|s| s.base_offset() <= offset)
        };
        let (kept, dropped) = segments.split_at(keep);
        for segment in dropped {
            segment.delete_files().map_err(|e| self.poison(e))?;
        }
        let mut kept = kept.to_vec();
        match kept.last() {
            Some(last) => {
                let file = File::open(last.path(super::segment::LOG_EXT))?;
                let from = ScanFrom {
                    stop_at_offset: Some(offset),
                    ..ScanFrom::start(last.base_offset())
                };
                let scan =
                    recovery::scan(&file, last.base_offset(), from, config.index_interval_bytes)?;
                last.reset(scan.valid_size, scan.next_offset, scan.index)
                    .map_err(|e| self.poison(e))?;
            }
            None => kept.push(Arc::new(
                Segment::create(&self.dir, offset).map_err(|e| self.poison(e))?,
            )),
        }
        sync_dir(&self.dir).map_err(|e| self.poison(e))?;
        let (Some(first), Some(active)) = (kept.first(), kept.last()) else {
            return Err(LogError::Poisoned);
        };
        if keep == 0 {
            // Emptied and restarted at `offset`: a checkpointed start above it is void.
            log_start::remove_checkpoint(&self.dir).map_err(|e| self.poison(e))?;
            self.log_start.store(first.base_offset(), Ordering::Release);
        } else {
            self.log_start
                .fetch_max(first.base_offset(), Ordering::AcqRel);
        }
        self.log_end.store(active.next_offset(), Ordering::Release);
        self.size
            .store(kept.iter().map(|s| s.size()).sum(), Ordering::Release);
        writer.active = Arc::clone(active);
        writer.first_append_ms = None;
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(kept);
        warn!(dir = %self.dir.display(), offset, log_end = self.log_end_offset(), "truncated log");
        Ok(())
    }

    /// Bytes of all published batches.
    pub fn size_bytes(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn segment_count(&self) -> usize {
        self.segments().len()
    }

    /// Replaces the configuration (topic config change); applies from the next call.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Flushes, writes the active segment's indexes and the clean-shutdown marker, so the
    /// next open skips the scan. The log stays usable; a later write removes the marker.
    pub fn close(&self) -> Result<(), LogError> {
        let mut writer = lock(&self.writer);
        self.check_writable()?;
        let result = (|| {
            writer.active.sync()?;
            writer.active.write_indexes()?;
            let marker = File::create(self.dir.join(CLEAN_SHUTDOWN_MARKER))?;
            marker.sync_all()?;
            sync_dir(&self.dir)
        })();
        result.map_err(|e| self.poison(e))?;
        writer.marker_present = true;
        debug!(dir = %self.dir.display(), "closed partition log cleanly");
        Ok(())
    }

    pub(super) fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segments.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn check_writable(&self) -> Result<(), LogError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        Ok(())
    }

    /// Records a write-path I/O failure: from now on the log refuses writes.
    pub(super) fn poison(&self, e: std::io::Error) -> LogError {
        error!(dir = %self.dir.display(), error = %e, "log I/O failure; refusing further writes");
        self.poisoned.store(true, Ordering::Release);
        LogError::Io(e)
    }

    fn sync_segment(&self, segment: &Segment) -> Result<(), LogError> {
        // Cleared before the fsync: an append racing with it marks the log dirty again.
        self.dirty.store(false, Ordering::Release);
        segment.sync().map_err(|e| self.poison(e))?;
        *lock(&self.last_flush) = Instant::now();
        Ok(())
    }

    fn should_roll(
        &self,
        writer: &Writer,
        len: u64,
        offset_count: i64,
        config: &LogConfig,
        now: i64,
    ) -> bool {
        let active = &writer.active;
        if active.is_empty() {
            return false;
        }
        let too_big = active.size() + len > config.max_segment_bytes();
        let too_many_offsets =
            u32::try_from(self.log_end_offset() + offset_count - active.base_offset()).is_err();
        let too_old = config
            .segment_ms
            .zip(writer.first_append_ms)
            .is_some_and(|(ms, first)| now - first > ms);
        too_big || too_many_offsets || too_old
    }

    /// Seals the active segment (indexes written, fsynced) and starts a new one at the log
    /// end. The seal comes first so that a crash in between leaves the old segment last,
    /// and therefore scanned on recovery.
    fn roll(&self, writer: &mut Writer) -> Result<(), LogError> {
        let old = Arc::clone(&writer.active);
        old.seal().map_err(|e| self.poison(e))?;
        let base = self.log_end_offset();
        let new = Arc::new(Segment::create(&self.dir, base).map_err(|e| self.poison(e))?);
        sync_dir(&self.dir).map_err(|e| self.poison(e))?;
        {
            let mut segments = self
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut next: Vec<Arc<Segment>> = segments.as_ref().clone();
            next.push(Arc::clone(&new));
            *segments = Arc::new(next);
        }
        writer.active = new;
        writer.first_append_ms = None;
        debug!(dir = %self.dir.display(), sealed = old.base_offset(), new = base, "rolled segment");
        Ok(())
    }
}
