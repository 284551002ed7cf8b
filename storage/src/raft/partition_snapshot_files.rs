//! A partition group's snapshot as files: the one a sender hands openraft (the kept
//! snapshot with the retained batches streamed from the log into a scratch file), and the
//! install of a received one (its batches streamed from the received file into the log).
//! Blocking; the state machine adapter runs these on the blocking pool.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::Path;

use super::partition_retained::FileSection;
use super::partition_snapshot::PartitionSnapshot;
use super::partition_store::PartitionRaftLog;
use super::snapshot_files::{self, BoxError, DATA_BUFFER};
use super::types::SnapshotMeta;

/// Attempts at copying the retained batches: a copy fails when retention deletes a segment
/// it still had to read (the log is not locked meanwhile), and the next one starts at the
/// new log start. A failure here stops the group, so it is worth a few tries.
const COPY_ATTEMPTS: usize = 5;

/// The data openraft sends for the kept partition snapshot `meta` whose data is `kept`: its
/// next offset and state, with the batches this log retains through its last entry.
pub(super) fn send_file(
    dir: &Path,
    meta: &SnapshotMeta,
    mut kept: File,
    partition: &PartitionRaftLog,
) -> Result<File, BoxError> {
    let kept = PartitionSnapshot::read(&mut kept)?;
    let mut attempt = 1;
    loop {
        match write_send_file(dir, meta, &kept, partition) {
            Ok(file) => return Ok(file),
            Err(error) if attempt < COPY_ATTEMPTS => {
                tracing::debug!(%error, attempt, "copying a snapshot's retained batches again");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn write_send_file(
    dir: &Path,
    meta: &SnapshotMeta,
    kept: &PartitionSnapshot,
    partition: &PartitionRaftLog,
) -> Result<File, BoxError> {
    let plan = meta
        .last_log_id
        .and_then(|last| partition.retained_plan(last.index));
    let mut out = BufWriter::with_capacity(DATA_BUFFER, snapshot_files::scratch_file(dir)?);
    match &plan {
        Some(plan) => {
            let mut copy = |out: &mut BufWriter<File>| -> std::io::Result<u64> {
                partition
                    .copy_retained(plan, out)
                    .map_err(std::io::Error::other)
            };
            PartitionSnapshot::write(
                &mut out,
                kept.next_offset,
                Some((&plan.header, &mut copy)),
                &kept.state,
            )?;
        }
        None => PartitionSnapshot::write(&mut out, kept.next_offset, None, &kept.state)?,
    }
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Installs the received partition snapshot in `file` (last entry per `meta`) into the
/// log, and returns it as kept from now on: its next offset and state, no batches. With
/// batches, the received file is first made durable, so a crash inside is redone on open.
pub(super) fn install_file(
    dir: &Path,
    meta: &SnapshotMeta,
    mut file: File,
    partition: &PartitionRaftLog,
) -> Result<PartitionSnapshot, BoxError> {
    let mut parsed = PartitionSnapshot::read(&mut file)?;
    let Some(last) = meta.last_log_id else {
        return Ok(parsed);
    };
    match parsed.retained.take() {
        Some((header, start, len)) => {
            snapshot_files::keep_received(dir, &file, meta)?;
            let batches = FileSection { file, start, len };
            partition.install_snapshot_log(last, parsed.next_offset, Some((&header, &batches)))?;
        }
        None => partition.install_snapshot_log(last, parsed.next_offset, None)?,
    }
    Ok(parsed)
}

/// `snapshot` as kept data (the kept layout: no batches).
pub(super) fn kept_data(snapshot: &PartitionSnapshot) -> Vec<u8> {
    PartitionSnapshot::plain(snapshot.next_offset, &snapshot.state)
}
