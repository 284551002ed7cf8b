//! The files behind a group's snapshots, all in the group's directory:
//! - `snapshot.bin`: the snapshot kept (its meta and the caller's state), written to a
//!   temporary file, fsynced and renamed, so a crash leaves the old or the new one;
//! - scratch files: the data openraft sends, unlinked as soon as they are created so they
//!   live only as long as their handle (a partition snapshot may carry the whole retained
//!   partition, too big for memory);
//! - `snapshot.recv` (and `snapshot.recv.meta` once it is complete and durable): a snapshot
//!   being received, then installed. Kept until the install is done, so an install a crash
//!   cut short is redone on open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::types::SnapshotMeta;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const RECEIVING: &str = "snapshot.recv";
const RECEIVED_META: &str = "snapshot.recv.meta";
const SCRATCH_PREFIX: &str = "snapshot.scratch.";

/// A snapshot as kept in memory and in `snapshot.bin`: small (the caller's state).
#[derive(Clone)]
pub(super) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Writes `bytes` to `dir/name` durably: a temporary file, fsynced, renamed, the rename
/// fsynced.
fn write_durably(dir: &Path, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

impl StoredSnapshot {
    /// File layout: u32 big-endian header length, JSON header, raw state bytes.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let header = serde_json::to_vec(&SnapshotHeader {
            meta: self.meta.clone(),
        })?;
        let len = u32::try_from(header.len()).map_err(|_| invalid("snapshot header too long"))?;
        write_durably(
            dir,
            SNAPSHOT_FILE,
            &[&len.to_be_bytes(), &header, &self.data],
        )
    }

    pub fn read(dir: &Path) -> std::io::Result<Option<Self>> {
        let bytes = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("snapshot shorter than its length prefix"))?;
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| invalid("snapshot header too long"))?;
        let (header, data) = rest
            .split_at_checked(len)
            .ok_or_else(|| invalid("snapshot shorter than its header"))?;
        let header: SnapshotHeader = serde_json::from_slice(header)?;
        Ok(Some(Self {
            meta: header.meta,
            data: data.to_vec(),
        }))
    }
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

/// `data` in a scratch file, positioned at its start: a small snapshot's data for openraft.
pub(super) fn data_file(dir: &Path, data: &[u8]) -> std::io::Result<File> {
    let mut file = scratch_file(dir)?;
    file.write_all(data)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Removes scratch files a crash left (only one between their creation and their unlink).
pub(super) fn remove_scratch(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
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
    let meta = match std::fs::read(dir.join(RECEIVED_META)) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta: SnapshotMeta = serde_json::from_slice(&meta)?;
    let file = OpenOptions::new().read(true).open(dir.join(RECEIVING))?;
    Ok(Some((meta, file)))
}

/// Removes a received snapshot's files once it is installed (or superseded).
pub(super) fn clear_received(dir: &Path) -> std::io::Result<()> {
    for name in [RECEIVED_META, RECEIVING] {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The whole content of a (small) snapshot data file.
pub(super) fn read_all(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut data)?;
    Ok(data)
}
