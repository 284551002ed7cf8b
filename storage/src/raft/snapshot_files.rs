//! The files behind a group's snapshots, all in the group's directory. A snapshot's data may
//! be a whole service store, so it only ever lives in files and is streamed in and out:
//! - `snapshot.bin`: the kept snapshot's header (its meta and the name of its data file),
//!   written to a temporary file, fsynced and renamed, so a crash leaves the old or the new
//!   one. (Older versions kept the data inline after the header; still read.)
//! - `snapshot.<n>.data`: the kept snapshot's data, numbered so a new one never reuses the
//!   name (or the inode) of one a sender may still be reading. Written and fsynced before
//!   the header that names it; any other data file is stale and removed.
//! - scratch files: data openraft sends that no kept file holds (a partition snapshot with
//!   its retained batches), unlinked as soon as created so they live as long as their handle;
//! - `snapshot.recv` (and `snapshot.recv.meta` once it is complete and durable): a snapshot
//!   being received, then installed. Kept until the install is done, so an install a crash
//!   cut short is redone on open; a plain snapshot's becomes the kept data file by a hard
//!   link, not a copy.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::types::SnapshotMeta;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const DATA_PREFIX: &str = "snapshot.";
const DATA_SUFFIX: &str = ".data";
const RECEIVING: &str = "snapshot.recv";
const RECEIVED_META: &str = "snapshot.recv.meta";
const SCRATCH_PREFIX: &str = "snapshot.scratch.";
/// Buffer between a state machine and a data file: writes reach the disk in pieces this big.
pub(super) const DATA_BUFFER: usize = 64 * 1024;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The kept snapshot: its meta, and where its data is (never in memory).
#[derive(Debug, Clone)]
pub(super) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    data: Data,
}

#[derive(Debug, Clone)]
enum Data {
    /// A data file in the group's directory, and its number.
    File(u64),
    /// An older version's layout: the data follows the header in `snapshot.bin`, from here.
    Inline(u64),
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta,
    /// The data file's number; absent in an older version's inline layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<u64>,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn data_name(number: u64) -> String {
    format!("{DATA_PREFIX}{number}{DATA_SUFFIX}")
}

/// The number of a data file's name, if it is one.
fn data_number(name: &str) -> Option<u64> {
    name.strip_prefix(DATA_PREFIX)?
        .strip_suffix(DATA_SUFFIX)?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `parts` to `dir/name` durably: a temporary file, fsynced, renamed, the rename
/// fsynced.
fn write_durably(dir: &Path, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn not_found_is_none<T>(result: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `snapshot.bin`'s header: u32 big-endian length, then JSON. Returns it and where
/// it ends.
fn read_header(file: &mut File) -> std::io::Result<(SnapshotHeader, u64)> {
    let mut len = [0u8; 4];
    file.read_exact(&mut len)
        .map_err(|_| invalid("snapshot shorter than its length prefix"))?;
    let len = u32::from_be_bytes(len);
    let mut header = Vec::new();
    file.take(u64::from(len)).read_to_end(&mut header)?;
    if header.len() as u64 != u64::from(len) {
        return Err(invalid("snapshot shorter than its header"));
    }
    Ok((serde_json::from_slice(&header)?, 4 + u64::from(len)))
}

impl StoredSnapshot {
    /// The kept snapshot in `dir`, its header only.
    pub fn read(dir: &Path) -> std::io::Result<Option<Self>> {
        let Some(mut file) = not_found_is_none(File::open(dir.join(SNAPSHOT_FILE)))? else {
            return Ok(None);
        };
        let (header, end) = read_header(&mut file)?;
        let data = match header.data {
            Some(number) => Data::File(number),
            None => Data::Inline(end),
        };
        Ok(Some(Self {
            meta: header.meta,
            data,
        }))
    }

    /// Keeps a new snapshot (`meta`, and the data `fill` streams out): the data file, then
    /// the header naming it; the files of the snapshot it replaces go. Returns it, with its
    /// data opened at the start.
    pub fn create(
        dir: &Path,
        meta: SnapshotMeta,
        fill: &mut dyn FnMut(&mut dyn Write) -> Result<(), BoxError>,
    ) -> Result<(Self, File), BoxError> {
        let number = next_number(dir)?;
        let path = dir.join(data_name(number));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut out = BufWriter::with_capacity(DATA_BUFFER, file);
        let written = fill(&mut out).and_then(|()| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(file)
        });
        let mut file = match written {
            Ok(file) => file,
            Err(error) => {
                // Never named by a header: nothing refers to it.
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        let stored = Self::keep(dir, meta, number)?;
        file.seek(SeekFrom::Start(0))?;
        Ok((stored, file))
    }

    /// Keeps a received snapshot (`meta`) whose data is `file`: the receiving file itself
    /// becomes the data file (a hard link, no copy); any other file (openraft's storage
    /// suite hands one over) is copied.
    pub fn adopt(dir: &Path, meta: SnapshotMeta, file: &mut File) -> Result<Self, BoxError> {
        let received = not_found_is_none(std::fs::metadata(dir.join(RECEIVING)))?;
        let handle = file.metadata()?;
        let is_receiving = received.is_some_and(|received| {
            received.dev() == handle.dev() && received.ino() == handle.ino()
        });
        if is_receiving {
            let number = next_number(dir)?;
            file.sync_all()?;
            std::fs::hard_link(dir.join(RECEIVING), dir.join(data_name(number)))?;
            sync_dir(dir)?;
            return Ok(Self::keep(dir, meta, number)?);
        }
        file.seek(SeekFrom::Start(0))?;
        let (stored, _) = Self::create(dir, meta, &mut |out| {
            std::io::copy(file, out)?;
            Ok(())
        })?;
        Ok(stored)
    }

    /// Writes the header naming data file `number` (already durable), then removes the
    /// data files it replaces.
    fn keep(dir: &Path, meta: SnapshotMeta, number: u64) -> std::io::Result<Self> {
        let header = serde_json::to_vec(&SnapshotHeader {
            meta: meta.clone(),
            data: Some(number),
        })?;
        let len = u32::try_from(header.len()).map_err(|_| invalid("snapshot header too long"))?;
        write_durably(dir, SNAPSHOT_FILE, &[&len.to_be_bytes(), &header])?;
        let stored = Self {
            meta,
            data: Data::File(number),
        };
        remove_stale(dir, Some(&stored))?;
        Ok(stored)
    }

    /// The snapshot's data, positioned at its start. The handle stays valid when a newer
    /// snapshot replaces this one meanwhile (its file is unlinked, not overwritten).
    pub fn data_file(&self, dir: &Path) -> std::io::Result<File> {
        match self.data {
            Data::File(number) => File::open(dir.join(data_name(number))),
            Data::Inline(at) => {
                let mut file = File::open(dir.join(SNAPSHOT_FILE))?;
                let (header, _) = read_header(&mut file)?;
                if header.meta != self.meta || header.data.is_some() {
                    return Err(invalid("the kept snapshot was replaced while being read"));
                }
                // openraft reads data from the file's start: copied once, by chunks.
                file.seek(SeekFrom::Start(at))?;
                let mut copy = scratch_file(dir)?;
                std::io::copy(&mut file, &mut copy)?;
                copy.seek(SeekFrom::Start(0))?;
                Ok(copy)
            }
        }
    }
}

/// A number above every data file's in `dir`, so a new data file never takes an old name.
fn next_number(dir: &Path) -> std::io::Result<u64> {
    let mut next = 1;
    for entry in std::fs::read_dir(dir)? {
        if let Some(number) = data_number(&entry?.file_name().to_string_lossy()) {
            next = next.max(number + 1);
        }
    }
    Ok(next)
}

/// Removes what a crash or a replaced snapshot left: scratch files, and data files other
/// than `kept`'s.
pub(super) fn remove_stale(dir: &Path, kept: Option<&StoredSnapshot>) -> std::io::Result<()> {
    let kept = match kept.map(|kept| &kept.data) {
        Some(Data::File(number)) => Some(*number),
        _ => None,
    };
    let Some(entries) = not_found_is_none(std::fs::read_dir(dir))? else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match data_number(&name) {
            Some(number) => Some(number) != kept,
            None => name.starts_with(SCRATCH_PREFIX),
        };
        if stale {
            not_found_is_none(std::fs::remove_file(entry.path()))?;
        }
    }
    Ok(())
}

/// A read-write file in `dir` that is already unlinked: it lives as long as its handle.
pub(super) fn scratch_file(dir: &Path) -> std::io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "{SCRATCH_PREFIX}{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// A fresh, empty file to receive a snapshot into; replaces what an earlier receive left.
pub(super) fn receiving_file(dir: &Path) -> std::io::Result<File> {
    clear_received(dir)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(RECEIVING))
}

/// Makes the received snapshot in `file` (the receiving file) durable with its meta, so
/// that an install cut short is redone on open (see [`kept_received`]).
pub(super) fn keep_received(dir: &Path, file: &File, meta: &SnapshotMeta) -> std::io::Result<()> {
    file.sync_all()?;
    let meta = serde_json::to_vec(meta)?;
    write_durably(dir, RECEIVED_META, &[&meta])
}

/// The snapshot [`keep_received`] kept, if its install did not finish.
pub(super) fn kept_received(dir: &Path) -> std::io::Result<Option<(SnapshotMeta, File)>> {
    let Some(meta) = not_found_is_none(std::fs::read(dir.join(RECEIVED_META)))? else {
        return Ok(None);
    };
    let meta: SnapshotMeta = serde_json::from_slice(&meta)?;
    let file = OpenOptions::new().read(true).open(dir.join(RECEIVING))?;
    Ok(Some((meta, file)))
}

/// Removes a received snapshot's files once it is installed (or superseded).
pub(super) fn clear_received(dir: &Path) -> std::io::Result<()> {
    for name in [RECEIVED_META, RECEIVING] {
        not_found_is_none(std::fs::remove_file(dir.join(name)))?;
    }
    Ok(())
}
