//! What a partition group's snapshot holds, byte for byte.
//!
//! A snapshot of a partition says three things: the offset where the log continues after
//! the snapshot's last entry, the caller's state (the broker's producer state), and, when
//! it is sent to a replica, the batches the sender still retains up to that last entry.
//! The Kafka log is not state the machine can rebuild: a replica that installs a snapshot
//! must end up holding every record the partition retains, or a later leader change would
//! make acknowledged records unreadable. So the sender attaches its retained batches (from
//! its log start through the snapshot's last entry) with the epoch cache rows that say
//! which term and leader wrote them, and the receiver's log restarts at the first of them.
//!
//! The batches may be the whole partition, so they are never held in memory: the sender
//! writes them to a file, openraft sends that file in chunks, the receiver writes the
//! chunks to a file and installs the batches from it one at a time.
//!
//! Two layouts, told apart by the first 8 bytes:
//! - kept on disk once installed (and by `build_snapshot`): `next_offset` (i64 BE, never
//!   below -1), then the state;
//! - sent: [`WITH_RETAINED`] (i64::MIN), a u32 BE length and the JSON [`RetainedHeader`],
//!   a u64 BE length and the batches, then the first layout.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};

use super::partition_index::Epoch;
use super::partition_side::SideEntry;

/// Marks a snapshot that carries retained batches: no next offset is this small.
const WITH_RETAINED: i64 = i64::MIN;
/// The retained header is an epoch row per term and a side entry per leader or membership
/// change, small each; anything bigger than this is not a snapshot of ours.
const MAX_HEADER: usize = 64 << 20;

/// What a snapshot's data failed to read or write as.
#[derive(Debug, thiserror::Error)]
pub enum PartitionSnapshotError {
    #[error("partition snapshot truncated: {0}")]
    Truncated(&'static str),
    #[error("partition snapshot's retained header: {0}")]
    Header(#[from] serde_json::Error),
    #[error("partition snapshot section too long: {0}")]
    TooLong(&'static str),
    #[error("partition snapshot i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the retained batches start and who wrote them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedHeader {
    /// Raft index of the first retained batch.
    pub first_index: u64,
    /// Its base offset: the sender's log start.
    pub first_offset: i64,
    /// The epoch cache rows covering the retained entries, the one `first_index` belongs
    /// to first.
    pub epochs: Vec<Epoch>,
    /// The sender's Kafka log start when DeleteRecords moved it above `first_offset`: the
    /// batches below it are Raft's still, but no reader's. Absent in older snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<i64>,
    /// The side entries among the retained entries, by index (see `partition_side`): the
    /// receiver needs them to tell which retained entries have no batch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub side: BTreeMap<u64, SideEntry>,
}

/// Writes the retained batches into a snapshot being written; returns how many bytes.
pub type CopyBatches<'a, W> = &'a mut dyn FnMut(&mut W) -> std::io::Result<u64>;

/// A partition snapshot's layout, read without its batches.
#[derive(Debug, PartialEq)]
pub struct PartitionSnapshot {
    /// The offset after the snapshot's last entry on the sender; -1 when unknown.
    pub next_offset: i64,
    /// The retained header and where the batches are: (position, length) in the data.
    pub retained: Option<(RetainedHeader, u64, u64)>,
    pub state: Vec<u8>,
}

impl PartitionSnapshot {
    /// Reads the layout from `data`, skipping over the batches.
    pub fn read(data: &mut (impl Read + Seek)) -> Result<Self, PartitionSnapshotError> {
        data.seek(SeekFrom::Start(0))?;
        let first = read_i64(data, "next-offset prefix")?;
        if first != WITH_RETAINED {
            return Ok(Self {
                next_offset: first,
                retained: None,
                state: read_rest(data)?,
            });
        }
        let mut header_len = [0u8; 4];
        read_exact(data, &mut header_len, "retained header length")?;
        let header_len = usize::try_from(u32::from_be_bytes(header_len))
            .ok()
            .filter(|len| *len <= MAX_HEADER)
            .ok_or(PartitionSnapshotError::TooLong("retained header"))?;
        let mut header = vec![0u8; header_len];
        read_exact(data, &mut header, "retained header")?;
        let header: RetainedHeader = serde_json::from_slice(&header)?;
        let batches_len = u64::try_from(read_i64(data, "retained batches length")?)
            .map_err(|_| PartitionSnapshotError::TooLong("retained batches"))?;
        let at = data.stream_position()?;
        let end = data.seek(SeekFrom::End(0))?;
        let after = at
            .checked_add(batches_len)
            .filter(|after| *after <= end)
            .ok_or(PartitionSnapshotError::Truncated("retained batches"))?;
        data.seek(SeekFrom::Start(after))?;
        let next_offset = read_i64(data, "next offset after the retained batches")?;
        Ok(Self {
            next_offset,
            retained: Some((header, at, batches_len)),
            state: read_rest(data)?,
        })
    }

    /// Writes a snapshot into `out`: with `retained`, its header and the batches that
    /// `copy` writes (returning how many bytes), then the next offset and `state`.
    pub fn write<W: Write + Seek>(
        out: &mut W,
        next_offset: i64,
        retained: Option<(&RetainedHeader, CopyBatches<'_, W>)>,
        state: &[u8],
    ) -> Result<(), PartitionSnapshotError> {
        if let Some((header, copy)) = retained {
            let header = serde_json::to_vec(header)?;
            let header_len = u32::try_from(header.len())
                .map_err(|_| PartitionSnapshotError::TooLong("retained header"))?;
            out.write_all(&WITH_RETAINED.to_be_bytes())?;
            out.write_all(&header_len.to_be_bytes())?;
            out.write_all(&header)?;
            let len_at = out.stream_position()?;
            out.write_all(&0u64.to_be_bytes())?;
            let len = copy(out)?;
            let end = out.stream_position()?;
            out.seek(SeekFrom::Start(len_at))?;
            out.write_all(&len.to_be_bytes())?;
            out.seek(SeekFrom::Start(end))?;
        }
        out.write_all(&next_offset.to_be_bytes())?;
        out.write_all(state)?;
        Ok(())
    }

    /// The kept layout (no batches) in memory.
    pub fn plain(next_offset: i64, state: &[u8]) -> Vec<u8> {
        let mut out = next_offset.to_be_bytes().to_vec();
        out.extend_from_slice(state);
        out
    }
}

fn read_exact(
    data: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), PartitionSnapshotError> {
    data.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => PartitionSnapshotError::Truncated(what),
        _ => PartitionSnapshotError::Io(e),
    })
}

fn read_i64(data: &mut impl Read, what: &'static str) -> Result<i64, PartitionSnapshotError> {
    let mut bytes = [0u8; 8];
    read_exact(data, &mut bytes, what)?;
    Ok(i64::from_be_bytes(bytes))
}

fn read_rest(data: &mut impl Read) -> Result<Vec<u8>, PartitionSnapshotError> {
    let mut rest = Vec::new();
    data.read_to_end(&mut rest)?;
    Ok(rest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::io::Cursor;

    use super::*;

    fn header() -> RetainedHeader {
        RetainedHeader {
            first_index: 7,
            first_offset: 300,
            epochs: vec![Epoch {
                term: 2,
                leader: 3,
                first_index: 5,
            }],
            log_start_offset: Some(304),
            side: BTreeMap::from([(
                8,
                SideEntry {
                    position: 302,
                    payload: openraft::EntryPayload::Blank,
                },
            )]),
        }
    }

    fn with_retained(batches: &[u8], state: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut copy = |out: &mut Cursor<Vec<u8>>| -> std::io::Result<u64> {
            out.write_all(batches)?;
            Ok(batches.len() as u64)
        };
        PartitionSnapshot::write(&mut out, 900, Some((&header(), &mut copy)), state).unwrap();
        out.into_inner()
    }

    #[test]
    fn both_layouts_read_back_what_was_written() {
        let plain = PartitionSnapshot::plain(42, b"{\"producers\":{}}");
        assert_eq!(
            &plain[..8],
            &42i64.to_be_bytes(),
            "the kept layout is unchanged"
        );
        assert_eq!(
            PartitionSnapshot::read(&mut Cursor::new(&plain)).unwrap(),
            PartitionSnapshot {
                next_offset: 42,
                retained: None,
                state: b"{\"producers\":{}}".to_vec(),
            }
        );

        let bytes = with_retained(&[1, 2, 3, 4, 5], b"state");
        let read = PartitionSnapshot::read(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(read.next_offset, 900);
        assert_eq!(read.state, b"state");
        let (header_read, at, len) = read.retained.unwrap();
        assert_eq!(header_read, header());
        assert_eq!(&bytes[at as usize..(at + len) as usize], &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_shorter_snapshot() {
        let bytes = with_retained(&[9; 16], b"");
        // Every cut before the next offset is complete fails; the state may be empty.
        for cut in 0..bytes.len() {
            assert!(
                PartitionSnapshot::read(&mut Cursor::new(&bytes[..cut])).is_err(),
                "a snapshot cut at {cut} of {} was read",
                bytes.len()
            );
        }
    }
}
