//! The sparse indexes of one segment: offset -> file position, and timestamp -> offset.
//!
//! Both live in memory while a segment is active (the writer pushes entries as it appends)
//! and are written to `.index` / `.timeindex` when the segment is sealed and on close, so a
//! sealed segment reopens without a scan. The files are Kafka's layout: `.index` entries are
//! (u32 relative offset, u32 position), `.timeindex` entries are (i64 timestamp, u32 relative
//! offset), big-endian, no header. A file that does not decode cleanly is rebuilt by a scan.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Offset index entry: the batch whose base offset is `segment base + relative_offset`
/// starts at byte `position` of the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Time index entry: every batch up to and including the one at `relative_offset` has a
/// max timestamp <= `timestamp`, and that batch carries `timestamp` (Kafka's "max so far").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

const OFFSET_ENTRY_SIZE: usize = 8;
const TIME_ENTRY_SIZE: usize = 12;

/// Everything a segment knows about its batches without reading them.
#[derive(Debug, Clone)]
pub(crate) struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    /// Largest batch max timestamp in the segment, and the base offset of the batch carrying it.
    max_timestamp: Option<(i64, i64)>,
    /// Bytes appended since the last offset index entry.
    bytes_since_entry: u64,
}

impl SegmentIndex {
    pub fn new() -> SegmentIndex {
        SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            max_timestamp: None,
            bytes_since_entry: 0,
        }
    }

    /// Records one appended batch. The first batch of a segment is always indexed, then one
    /// batch per `interval` bytes.
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        max_timestamp: i64,
        size: u64,
        base_offset: i64,
        interval: u32,
    ) {
        if self.max_timestamp.is_none_or(|(ts, _)| max_timestamp > ts) {
            self.max_timestamp = Some((max_timestamp, base_offset));
        }
        let due = match self.offsets.last() {
            None => true,
            // A reopened segment resumes its walk at the last indexed batch: do not repeat it.
            Some(last) => {
                last.relative_offset < relative_offset
                    && self.bytes_since_entry >= u64::from(interval)
            }
        };
        if due {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
            self.bytes_since_entry = 0;
            self.push_max_time(base_offset - i64::from(relative_offset));
        }
        self.bytes_since_entry += size;
    }

    /// Adds a time entry for the max timestamp so far if it is newer than the last entry.
    /// Called at each offset entry and when the segment is sealed, so the last time entry
    /// always carries the segment's max timestamp once sealed.
    pub fn push_max_time(&mut self, segment_base: i64) {
        let Some((timestamp, offset)) = self.max_timestamp else {
            return;
        };
        let Ok(relative_offset) = u32::try_from(offset - segment_base) else {
            return;
        };
        if self
            .times
            .last()
            .is_none_or(|last| timestamp > last.timestamp)
        {
            self.times.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
    }

    /// The last indexed batch whose base offset is <= `relative_offset`.
    pub fn lookup_offset(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        after
            .checked_sub(1)
            .and_then(|i| self.offsets.get(i))
            .copied()
    }

    /// The last time entry with a timestamp strictly below `timestamp`: every batch up to
    /// its offset is older than `timestamp`, so a search may start there.
    pub fn lookup_time(&self, timestamp: i64) -> Option<TimeEntry> {
        let after = self.times.partition_point(|e| e.timestamp < timestamp);
        after
            .checked_sub(1)
            .and_then(|i| self.times.get(i))
            .copied()
    }

    pub fn last_offset_entry(&self) -> Option<OffsetEntry> {
        self.offsets.last().copied()
    }

    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.max_timestamp
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_SIZE);
        for e in &self.offsets {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_SIZE);
        for e in &self.times {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        out
    }

    /// Rebuilds an index from its two files' bytes. Rejects anything that is not a whole
    /// number of entries, not strictly increasing, or points at or past `log_size`.
    /// The max timestamp and the tail after the last entry are filled in by the caller.
    pub fn decode(offsets: &[u8], times: &[u8], log_size: u64) -> Result<SegmentIndex, String> {
        if !offsets.len().is_multiple_of(OFFSET_ENTRY_SIZE)
            || !times.len().is_multiple_of(TIME_ENTRY_SIZE)
        {
            return Err("index file is not a whole number of entries".into());
        }
        let mut index = SegmentIndex::new();
        for chunk in offsets.chunks_exact(OFFSET_ENTRY_SIZE) {
            let (rel, pos) = chunk.split_at(4);
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes(rel.try_into().map_err(|_| "entry")?),
                position: u32::from_be_bytes(pos.try_into().map_err(|_| "entry")?),
            };
            if let Some(last) = index.offsets.last()
                && (entry.relative_offset <= last.relative_offset
                    || entry.position <= last.position)
            {
                return Err("offset index entries are not increasing".into());
            }
            if u64::from(entry.position) >= log_size {
                return Err("offset index points past the end of the log file".into());
            }
            index.offsets.push(entry);
        }
        if index
            .offsets
            .first()
            .is_some_and(|first| first.position != 0 || first.relative_offset != 0)
        {
            return Err("offset index does not start at the first batch".into());
        }
        for chunk in times.chunks_exact(TIME_ENTRY_SIZE) {
            let (ts, rel) = chunk.split_at(8);
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(ts.try_into().map_err(|_| "entry")?),
                relative_offset: u32::from_be_bytes(rel.try_into().map_err(|_| "entry")?),
            };
            if let Some(last) = index.times.last()
                && (entry.timestamp <= last.timestamp
                    || entry.relative_offset < last.relative_offset)
            {
                return Err("time index entries are not increasing".into());
            }
            index.times.push(entry);
        }
        Ok(index)
    }

    /// Restores the max timestamp from the last time entry (after [`decode`](Self::decode)).
    pub fn restore_max_timestamp(&mut self, segment_base: i64) {
        if let Some(last) = self.times.last() {
            self.max_timestamp = Some((
                last.timestamp,
                segment_base + i64::from(last.relative_offset),
            ));
        }
    }

    /// After a reopen the writer continues from the tail: bytes since the last entry.
    pub fn set_bytes_since_entry(&mut self, bytes: u64) {
        self.bytes_since_entry = bytes;
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// write a temporary file, fsync it, rename it over.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index_of(batches: &[(i64, u32, i64, u64)], interval: u32) -> SegmentIndex {
        let mut index = SegmentIndex::new();
        for &(offset, position, ts, size) in batches {
            index.on_batch(offset as u32, position, ts, size, offset, interval);
        }
        index
    }

    #[test]
    fn entries_are_sparse_by_bytes_and_the_first_batch_is_always_indexed() {
        // Batches of 1000 bytes, one entry per 2500 bytes: entries at batches 0, 3, 6.
        let batches: Vec<_> = (0..8)
            .map(|i| (i * 10, (i * 1000) as u32, i, 1000))
            .collect();
        let index = index_of(&batches, 2500);
        assert_eq!(index.offsets.len(), 3);
        assert_eq!(
            index.lookup_offset(0),
            Some(OffsetEntry {
                relative_offset: 0,
                position: 0
            })
        );
        assert_eq!(
            index.lookup_offset(45),
            Some(OffsetEntry {
                relative_offset: 30,
                position: 3000
            })
        );
        assert_eq!(
            index.lookup_offset(1000),
            Some(OffsetEntry {
                relative_offset: 60,
                position: 6000
            })
        );
    }

    #[test]
    fn time_lookup_finds_the_last_entry_strictly_older() {
        let batches: Vec<_> = (0..8)
            .map(|i| (i * 10, (i * 1000) as u32, 100 + i, 1000))
            .collect();
        let index = index_of(&batches, 0);
        assert_eq!(index.lookup_time(100), None);
        assert_eq!(index.lookup_time(103).map(|e| e.relative_offset), Some(20));
        assert_eq!(index.max_timestamp(), Some((107, 70)));
    }

    #[test]
    fn files_round_trip_and_garbage_is_rejected() {
        let batches: Vec<_> = (0..8)
            .map(|i| (i * 10, (i * 1000) as u32, 100 + i, 1000))
            .collect();
        let mut index = index_of(&batches, 0);
        index.push_max_time(0);
        let decoded =
            SegmentIndex::decode(&index.encode_offsets(), &index.encode_times(), 8000).unwrap();
        assert_eq!(decoded.offsets, index.offsets);
        assert_eq!(decoded.times, index.times);
        assert!(
            SegmentIndex::decode(&index.encode_offsets(), &[], 7000).is_err(),
            "points past the log"
        );
        assert!(
            SegmentIndex::decode(&[1, 2, 3], &[], 8000).is_err(),
            "partial entry"
        );
        let mut swapped = index.encode_offsets();
        swapped.rotate_left(8);
        assert!(
            SegmentIndex::decode(&swapped, &[], 8000).is_err(),
            "not increasing"
        );
    }
}
