//! The sender's and the receiver's view of the batches a partition snapshot carries (see
//! `partition_snapshot`): where they are in the sender's log and how they are copied out
//! of it, and where a receiver reads them from when it installs them.

use std::io::Write;

use super::partition_index::Epoch;
use super::partition_snapshot::RetainedHeader;
use super::partition_store::{PartitionRaftLog, PartitionStoreError, READ_CHUNK};
use crate::log::ReadOptions;
use crate::log::batch::{BatchHeader, Batches, HEADER_SIZE};

/// The retained batches a snapshot will carry, located in this log (see
/// [`PartitionRaftLog::copy_retained`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RetainedPlan {
    pub header: RetainedHeader,
    /// The offset after the snapshot's last entry: the batches are `first_offset..upper`.
    pub upper: i64,
}

/// Where a snapshot's retained batches are read from when it is installed: one section of
/// the received snapshot file (or, in tests, memory). Read in place, never whole.
pub trait BatchSource {
    /// Bytes of the batches.
    fn len(&self) -> u64;
    /// Fills `buf` from position `at` of the batches.
    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl BatchSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let bytes = usize::try_from(at)
            .ok()
            .and_then(|at| self.get(at..at.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// The section `start..start + len` of a file.
pub struct FileSection {
    pub file: std::fs::File,
    pub start: u64,
    pub len: u64,
}

impl BatchSource for FileSection {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if at.saturating_add(buf.len() as u64) > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.file.read_exact_at(buf, self.start + at)
    }
}

/// One retained batch as found in a [`BatchSource`]: where, its offsets and epoch.
pub(super) struct Head {
    pub at: u64,
    pub size: usize,
    pub base_offset: i64,
    pub next_offset: i64,
    pub epoch: i32,
}

/// Walks the batch headers of `source` (not the bodies). Errors if they do not frame it.
pub(super) fn heads(source: &dyn BatchSource) -> Result<Vec<Head>, PartitionStoreError> {
    let mut heads = Vec::new();
    let mut at = 0u64;
    let mut buf = [0u8; HEADER_SIZE];
    while at < source.len() {
        let header = source
            .read_at(at, &mut buf)
            .ok()
            .and_then(|()| BatchHeader::parse(&buf));
        let Some((header, size)) = header.and_then(|h| h.check().ok().map(|size| (h, size))) else {
            return Err(PartitionStoreError::Inconsistent(format!(
                "retained batches: no whole batch header at byte {at} of {}",
                source.len()
            )));
        };
        heads.push(Head {
            at,
            size,
            base_offset: header.base_offset,
            next_offset: header.last_offset() + 1,
            epoch: header.leader_epoch,
        });
        at += size as u64;
    }
    if at != source.len() {
        return Err(PartitionStoreError::Inconsistent(format!(
            "retained batches: the last batch runs past the {} bytes",
            source.len()
        )));
    }
    Ok(heads)
}

impl PartitionRaftLog {
    /// Where the entries from the log start through entry `last_index` are, for a snapshot
    /// whose last entry that is. `None` when the log holds none of them (it starts after it).
    pub(crate) fn retained_plan(&self, last_index: u64) -> Option<RetainedPlan> {
        let state = self.read();
        if state.pending_reset || last_index < state.first_index {
            return None;
        }
        let first_offset = state.offset_of(state.first_index)?;
        let upper = state.offset_after(last_index)?;
        let covering = state
            .epochs
            .partition_point(|e| e.first_index <= state.first_index)
            .saturating_sub(1);
        let epochs: Vec<Epoch> = state
            .epochs
            .iter()
            .skip(covering)
            .take_while(|e| e.first_index <= last_index)
            .copied()
            .collect();
        Some(RetainedPlan {
            header: RetainedHeader {
                first_index: state.first_index,
                first_offset,
                epochs,
                side: state
                    .side
                    .range(..=last_index)
                    .map(|(index, entry)| (*index, entry.clone()))
                    .collect(),
                log_start_offset: Some(self.log.log_start_offset())
                    .filter(|start| *start > first_offset),
            },
            upper,
        })
    }

    /// Copies the batches `plan` names to `out`, a chunk at a time, and returns how many
    /// bytes. The log is not locked meanwhile (appends go on); if retention deletes a
    /// segment first, the read fails and openraft sends a newer snapshot later.
    pub(crate) fn copy_retained(
        &self,
        plan: &RetainedPlan,
        out: &mut dyn Write,
    ) -> Result<u64, PartitionStoreError> {
        let mut offset = plan.header.first_offset;
        let mut copied = 0u64;
        while offset < plan.upper {
            let read = self.log.read_below_start(
                offset,
                ReadOptions {
                    max_bytes: READ_CHUNK,
                    min_one_batch: true,
                    upper_bound: Some(plan.upper),
                },
            )?;
            let mut read_to = offset;
            for (at, header) in Batches::new(&read.bytes) {
                let bytes = read.bytes.get(at..at + header.size()).unwrap_or_default();
                out.write_all(bytes).map_err(crate::log::LogError::Io)?;
                copied += bytes.len() as u64;
                read_to = header.last_offset() + 1;
            }
            if read_to == offset {
                return Err(PartitionStoreError::Inconsistent(format!(
                    "retained batches end at {offset}, the snapshot's last entry at {}",
                    plan.upper
                )));
            }
            offset = read_to;
        }
        Ok(copied)
    }
}
