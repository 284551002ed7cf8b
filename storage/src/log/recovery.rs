//! Turning a log directory back into segments after a restart.
//!
//! Sealed segments were fsynced with their indexes when they were rolled, so they reopen
//! from their index files; only the batches after the last index entry are walked (and
//! CRC-checked) to find where the segment ends. The active segment is scanned batch by batch
//! — length bounds, magic, offset continuity, CRC — unless the last shutdown was clean. The
//! first torn or corrupt batch ends the log: the file is truncated there (with a warning
//! naming segment and position) and any later segment is removed, so a torn tail is never
//! served and the next append continues from the last good batch.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::{error, info, warn};

use super::batch::{BatchHeader, HEADER_SIZE};
use super::error::LogError;
use super::index::SegmentIndex;
use super::segment::{INDEX_EXT, LOG_EXT, Segment, TIME_INDEX_EXT, file_name, remove_if_present};

/// How much of a segment file is read per syscall while scanning.
const SCAN_CHUNK: usize = 1 << 20;

/// What a scan of a segment file found.
pub(crate) struct Scan {
    /// Bytes of whole, valid batches from the start of the file.
    pub valid_size: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Where a scan starts and when it stops.
pub(crate) struct ScanFrom {
    pub position: u64,
    pub offset: i64,
    pub index: SegmentIndex,
    /// Stop (without complaint) at the batch containing this offset: truncation.
    pub stop_at_offset: Option<i64>,
}

impl ScanFrom {
    pub fn start(base_offset: i64) -> ScanFrom {
        ScanFrom {
            position: 0,
            offset: base_offset,
            index: SegmentIndex::new(),
            stop_at_offset: None,
        }
    }
}

/// Reads a file sequentially in large chunks with positional reads.
struct ChunkReader<'a> {
    file: &'a File,
    file_size: u64,
    chunk: Vec<u8>,
    chunk_start: u64,
}

impl ChunkReader<'_> {
    /// `len` bytes at `position`, or `None` if the file ends first.
    fn get(&mut self, position: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let end = position.saturating_add(len as u64);
        if end > self.file_size {
            return Ok(None);
        }
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if position < self.chunk_start || end > chunk_end {
            let want = usize::try_from(self.file_size - position)
                .unwrap_or(usize::MAX)
                .min(len.max(SCAN_CHUNK));
            self.chunk.resize(want, 0);
            self.file.read_exact_at(&mut self.chunk, position)?;
            self.chunk_start = position;
        }
        let from = usize::try_from(position - self.chunk_start).unwrap_or(usize::MAX);
        Ok(self.chunk.get(from..from.saturating_add(len)))
    }
}

/// Validates batches from `from` to the end of the file, feeding the index as it goes.
pub(crate) fn scan(
    file: &File,
    base_offset: i64,
    from: ScanFrom,
    interval: u32,
) -> io::Result<Scan> {
    let file_size = file.metadata()?.len();
    let mut reader = ChunkReader {
        file,
        file_size,
        chunk: Vec::new(),
        chunk_start: 0,
    };
    let ScanFrom {
        mut position,
        offset: mut expected,
        mut index,
        stop_at_offset,
    } = from;
    index.set_bytes_since_entry(0);
    let problem = loop {
        if position == file_size {
            break None;
        }
        let Some(raw) = reader.get(position, HEADER_SIZE)? else {
            break Some(format!(
                "torn batch header ({} bytes)",
                file_size - position
            ));
        };
        let Some(header) = BatchHeader::parse(raw) else {
            break Some("short header".into());
        };
        let size = match header.check() {
            Ok(size) => size,
            Err(e) => break Some(e.to_string()),
        };
        // Offsets only ever grow; gaps are legal (compaction drops whole batches).
        if header.base_offset < expected {
            break Some(format!(
                "batch has base offset {} where at least {expected} was expected",
                header.base_offset
            ));
        }
        if stop_at_offset.is_some_and(|stop| header.last_offset() >= stop) {
            break None;
        }
        let Some(batch) = reader.get(position, size)? else {
            break Some(format!(
                "torn batch: {size} bytes claimed, {} present",
                file_size - position
            ));
        };
        if !header.crc_matches(batch) {
            break Some("CRC mismatch".into());
        }
        let (Ok(relative), Ok(at)) = (
            u32::try_from(header.base_offset - base_offset),
            u32::try_from(position),
        ) else {
            break Some("segment exceeds the index's 32-bit offsets or positions".into());
        };
        index.on_batch(
            relative,
            at,
            header.max_timestamp,
            size as u64,
            header.base_offset,
            interval,
        );
        position += size as u64;
        expected = header.last_offset() + 1;
    };
    Ok(Scan {
        valid_size: position,
        next_offset: expected,
        index,
        problem,
    })
}

/// Reopens a sealed (or cleanly closed) segment from its index files, walking only the
/// tail after the last entry. `None` if the files are missing or do not fit the log file.
fn load_indexed(
    dir: &Path,
    file: &File,
    base_offset: i64,
    interval: u32,
) -> io::Result<Option<Scan>> {
    let read = |ext| match fs::read(dir.join(file_name(base_offset, ext))) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let (Some(offsets), Some(times)) = (read(INDEX_EXT)?, read(TIME_INDEX_EXT)?) else {
        return Ok(None);
    };
    let file_size = file.metadata()?.len();
    let mut index = match SegmentIndex::decode(&offsets, &times, file_size) {
        Ok(index) => index,
        Err(reason) => {
            warn!(segment = base_offset, %reason, "invalid index files; rebuilding by scan");
            return Ok(None);
        }
    };
    index.restore_max_timestamp(base_offset);
    let last = index.last_offset_entry();
    if last.is_none() && file_size > 0 {
        return Ok(None);
    }
    let from = ScanFrom {
        position: last.map_or(0, |e| u64::from(e.position)),
        offset: base_offset + last.map_or(0, |e| i64::from(e.relative_offset)),
        index,
        stop_at_offset: None,
    };
    let tail = scan(file, base_offset, from, interval)?;
    Ok(tail.problem.is_none().then_some(tail))
}

/// Opens every segment in `dir` in offset order, recovering as described in the module
/// docs. `clean` says the previous run closed the log. Never returns an empty list.
pub(crate) fn open_segments(
    dir: &Path,
    clean: bool,
    interval: u32,
) -> Result<Vec<Segment>, LogError> {
    let bases = list_segments(dir)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(file_name(base, LOG_EXT)))?;
        if let Some(previous) = segments.last()
            && previous.next_offset() > base
        {
            error!(
                segment = base,
                expected = previous.next_offset(),
                "segments overlap; dropping this and later segments"
            );
            drop_segments(dir, bases.get(i..).unwrap_or_default())?;
            break;
        }
        let trusted = if is_last && !clean {
            None
        } else {
            load_indexed(dir, &file, base, interval)?
        };
        let recovered = match trusted {
            Some(scan) => scan,
            None => scan(&file, base, ScanFrom::start(base), interval)?,
        };
        // An empty first segment is kept: compaction leaves one to hold the log start.
        if recovered.valid_size == 0 && !is_last && i > 0 {
            warn!(segment = base, "removing empty sealed segment");
            drop(file);
            drop_segments(dir, &[base])?;
            continue;
        }
        let problem = recovered.problem.clone();
        if let Some(reason) = &problem {
            warn!(segment = base, position = recovered.valid_size, %reason, "truncating log at a torn or corrupt batch");
            file.set_len(recovered.valid_size)?;
            file.sync_all()?;
            for ext in [INDEX_EXT, TIME_INDEX_EXT] {
                remove_if_present(&dir.join(file_name(base, ext)))?;
            }
        }
        segments.push(Segment::from_parts(
            dir,
            base,
            file,
            recovered.valid_size,
            recovered.next_offset,
            recovered.index,
        ));
        if problem.is_some() && !is_last {
            error!(
                segment = base,
                "corruption in a sealed segment; removing the segments after it"
            );
            drop_segments(dir, bases.get(i + 1..).unwrap_or_default())?;
            break;
        }
    }
    if segments.is_empty() {
        info!(dir = %dir.display(), "starting an empty log");
        let start = bases.first().copied().unwrap_or(0);
        segments.push(Segment::create(dir, start)?);
    }
    Ok(segments)
}

/// Base offsets of the `.log` files in `dir`, ascending. Leftover temporary files go.
fn list_segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        // Temporary files and unfinished compaction output: the originals are intact.
        if ext == "tmp" || ext == super::rewrite::CLEANED_EXT {
            remove_if_present(&path)?;
        } else if ext == LOG_EXT
            && stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(base) = stem.parse::<i64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn drop_segments(dir: &Path, bases: &[i64]) -> io::Result<()> {
    for &base in bases {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_present(&dir.join(file_name(base, ext)))?;
        }
    }
    Ok(())
}
