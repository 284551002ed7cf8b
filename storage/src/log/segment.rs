//! One segment: a `.log` file of whole batches plus its in-memory indexes.
//!
//! A segment is shared (`Arc<Segment>`) between the writer and any number of readers. The
//! writer appends with a positional write and then *publishes* the new size; readers never
//! look past the published size, so they never see a batch that is still being written.
//! All reads are positional (`pread`), so readers share one file handle without a cursor.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::batch::{BatchHeader, Batches, HEADER_SIZE};
use super::error::LogError;
use super::index::{SegmentIndex, write_atomically};

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// Kafka's file name for a segment file: the base offset as 20 zero-padded digits.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

pub(crate) struct Segment {
    base_offset: i64,
    dir: PathBuf,
    file: File,
    /// Bytes of whole batches readers may see.
    size: AtomicU64,
    /// The offset after the last published batch.
    next_offset: AtomicI64,
    index: RwLock<SegmentIndex>,
}

/// Where a read found its first batch.
pub(crate) struct Located {
    pub position: u64,
    pub header: BatchHeader,
}

impl Segment {
    /// Creates an empty segment file (replacing any leftover of the same name).
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_present(&dir.join(file_name(base_offset, ext)))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(file_name(base_offset, LOG_EXT)))?;
        Ok(Segment::from_parts(
            dir,
            base_offset,
            file,
            0,
            base_offset,
            SegmentIndex::new(),
        ))
    }

    pub fn from_parts(
        dir: &Path,
        base_offset: i64,
        file: File,
        size: u64,
        next_offset: i64,
        index: SegmentIndex,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            size: AtomicU64::new(size),
            next_offset: AtomicI64::new(next_offset),
            index: RwLock::new(index),
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Published size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    pub fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, ext))
    }

    pub fn index(&self) -> RwLockReadGuard<'_, SegmentIndex> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn index_mut(&self) -> RwLockWriteGuard<'_, SegmentIndex> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offset relative to this segment, as index entries store it.
    pub fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset.saturating_sub(self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// Writes `bytes` at `position` (beyond the published size). Not visible until [`publish`](Self::publish).
    pub fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, position)
    }

    /// Makes everything up to `size` visible to readers.
    pub fn publish(&self, size: u64, next_offset: i64) {
        self.next_offset.store(next_offset, Ordering::Release);
        self.size.store(size, Ordering::Release);
    }

    /// Replaces the segment's contents after a truncation (caller excludes readers).
    pub fn reset(&self, size: u64, next_offset: i64, index: SegmentIndex) -> io::Result<()> {
        self.file.set_len(size)?;
        self.file.sync_all()?;
        *self.index_mut() = index;
        self.publish(size, next_offset);
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_present(&self.path(ext))?;
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Writes both index files, the time index ending with the segment's max timestamp.
    pub fn write_indexes(&self) -> io::Result<()> {
        let (offsets, times) = {
            let mut index = self.index_mut();
            index.push_max_time(self.base_offset);
            (index.encode_offsets(), index.encode_times())
        };
        write_atomically(&self.path(INDEX_EXT), &offsets)?;
        write_atomically(&self.path(TIME_INDEX_EXT), &times)
    }

    /// Seals the segment when the log rolls: indexes written, everything fsynced, so that
    /// recovery can trust it without a scan.
    pub fn seal(&self) -> io::Result<()> {
        self.write_indexes()?;
        self.sync()
    }

    pub fn delete_files(&self) -> io::Result<()> {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_present(&self.path(ext))?;
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `position`; shorter only if the file is.
    pub fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        // Zeroing costs a memset per read; safe code has no uninitialised pread.
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            match self.file.read_at(rest, position + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// The header of the batch at `position`, checked.
    pub fn header_at(&self, position: u64) -> Result<BatchHeader, LogError> {
        let mut raw = [0u8; HEADER_SIZE];
        self.file.read_exact_at(&mut raw, position)?;
        let header = BatchHeader::parse(&raw).ok_or_else(|| LogError::corrupt("short header"))?;
        header.check()?;
        Ok(header)
    }

    /// The batch containing `offset`, found from the offset index and a walk of batch
    /// headers (at most about `index_interval_bytes` of them). `None` if the segment's
    /// published batches end before `offset`.
    pub fn locate_offset(&self, offset: i64) -> Result<Option<Located>, LogError> {
        let start = self
            .index()
            .lookup_offset(self.relative(offset))
            .map_or(0, |e| u64::from(e.position));
        self.walk_from(start, |header| header.last_offset() >= offset)
    }

    /// The first batch with a max timestamp >= `timestamp`, starting from the time index.
    pub fn locate_timestamp(&self, timestamp: i64) -> Result<Option<Located>, LogError> {
        let start = {
            let index = self.index();
            index
                .lookup_time(timestamp)
                .and_then(|t| index.lookup_offset(t.relative_offset))
                .map_or(0, |e| u64::from(e.position))
        };
        self.walk_from(start, |header| header.max_timestamp >= timestamp)
    }

    /// Walks batch headers from `position` to the published end; the first one `wanted`.
    fn walk_from(
        &self,
        mut position: u64,
        mut wanted: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<Located>, LogError> {
        let end = self.size();
        while position < end {
            let header = self.header_at(position)?;
            if wanted(&header) {
                return Ok(Some(Located { position, header }));
            }
            position += header.size() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting with `first` (at `first.position`), ending before
    /// the first batch whose base offset is >= `upper_bound` and within `max_bytes`
    /// (the first batch whole regardless, if `min_one_batch`). One pread.
    pub fn read_batches(
        &self,
        first: &Located,
        max_bytes: usize,
        min_one_batch: bool,
        upper_bound: i64,
    ) -> Result<Bytes, LogError> {
        if first.header.base_offset >= upper_bound {
            return Ok(Bytes::new());
        }
        let first_size = first.header.size();
        let available =
            usize::try_from(self.size().saturating_sub(first.position)).unwrap_or(usize::MAX);
        let len = if first_size > max_bytes {
            if !min_one_batch {
                return Ok(Bytes::new());
            }
            first_size
        } else {
            max_bytes.min(available)
        };
        let mut buf = self.read_at(first.position, len)?;
        let mut end = 0;
        for (at, header) in Batches::new(&buf) {
            if header.base_offset >= upper_bound {
                break;
            }
            end = at + header.size();
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }
}

pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// fsync a directory so that created, renamed and deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
