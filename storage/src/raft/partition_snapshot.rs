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
//! Two layouts, told apart by the first 8 bytes:
//! - kept on disk once installed (and by `build_snapshot`): `next_offset` (i64 BE, never
//!   below -1), then the state;
//! - sent, or kept while its batches are not yet in the log: [`WITH_RETAINED`] (i64::MIN),
//!   a u32 BE length and the JSON [`RetainedHeader`], a u64 BE length and the batches,
//!   then the first layout.

use serde::{Deserialize, Serialize};

use super::partition_index::Epoch;

/// Marks a snapshot that carries retained batches: no next offset is this small.
const WITH_RETAINED: i64 = i64::MIN;

/// What a snapshot's data failed to parse as.
#[derive(Debug, thiserror::Error)]
pub enum PartitionSnapshotError {
    #[error("partition snapshot truncated: {0}")]
    Truncated(&'static str),
    #[error("partition snapshot's retained header: {0}")]
    Header(#[from] serde_json::Error),
    #[error("partition snapshot section too long for this machine: {0}")]
    TooLong(&'static str),
}

/// Where the retained batches start and who wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedHeader {
    /// Raft index of the first retained batch.
    pub first_index: u64,
    /// Its base offset: the sender's log start.
    pub first_offset: i64,
    /// The epoch cache rows covering the retained entries, the one `first_index` belongs
    /// to first.
    pub epochs: Vec<Epoch>,
}

/// The batches a sender retains below its snapshot, as stored: one batch per entry, in
/// index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained<'a> {
    pub header: RetainedHeader,
    pub batches: &'a [u8],
}

/// A partition snapshot's data, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct PartitionSnapshot<'a> {
    /// The offset after the snapshot's last entry on the sender; -1 when unknown.
    pub next_offset: i64,
    pub retained: Option<Retained<'a>>,
    pub state: &'a [u8],
}

impl<'a> PartitionSnapshot<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, PartitionSnapshotError> {
        let (first, rest) = split_i64(data, "next-offset prefix")?;
        if first != WITH_RETAINED {
            return Ok(Self {
                next_offset: first,
                retained: None,
                state: rest,
            });
        }
        let (header_len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(PartitionSnapshotError::Truncated("retained header length"))?;
        let header_len = usize::try_from(u32::from_be_bytes(*header_len))
            .map_err(|_| PartitionSnapshotError::TooLong("retained header"))?;
        let (header, rest) = rest
            .split_at_checked(header_len)
            .ok_or(PartitionSnapshotError::Truncated("retained header"))?;
        let header: RetainedHeader = serde_json::from_slice(header)?;
        let (batches_len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(PartitionSnapshotError::Truncated("retained batches length"))?;
        let batches_len = usize::try_from(u64::from_be_bytes(*batches_len))
            .map_err(|_| PartitionSnapshotError::TooLong("retained batches"))?;
        let (batches, rest) = rest
            .split_at_checked(batches_len)
            .ok_or(PartitionSnapshotError::Truncated("retained batches"))?;
        let (next_offset, state) = split_i64(rest, "next offset after the retained batches")?;
        Ok(Self {
            next_offset,
            retained: Some(Retained { header, batches }),
            state,
        })
    }

    /// The bytes [`PartitionSnapshot::parse`] reads back.
    pub fn encode(&self) -> Result<Vec<u8>, PartitionSnapshotError> {
        let mut out = Vec::new();
        if let Some(retained) = &self.retained {
            let header = serde_json::to_vec(&retained.header)?;
            let header_len = u32::try_from(header.len())
                .map_err(|_| PartitionSnapshotError::TooLong("retained header"))?;
            out.reserve(retained.batches.len() + header.len() + self.state.len() + 28);
            out.extend_from_slice(&WITH_RETAINED.to_be_bytes());
            out.extend_from_slice(&header_len.to_be_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(&(retained.batches.len() as u64).to_be_bytes());
            out.extend_from_slice(retained.batches);
        }
        out.extend_from_slice(&self.next_offset.to_be_bytes());
        out.extend_from_slice(self.state);
        Ok(out)
    }

    /// The same snapshot without its retained batches: what is kept once they are in the
    /// log.
    pub fn without_retained(&self) -> Self {
        Self {
            next_offset: self.next_offset,
            retained: None,
            state: self.state,
        }
    }
}

fn split_i64<'a>(
    data: &'a [u8],
    what: &'static str,
) -> Result<(i64, &'a [u8]), PartitionSnapshotError> {
    data.split_first_chunk::<8>()
        .map(|(value, rest)| (i64::from_be_bytes(*value), rest))
        .ok_or(PartitionSnapshotError::Truncated(what))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn both_layouts_read_back_what_was_written() {
        let plain = PartitionSnapshot {
            next_offset: 42,
            retained: None,
            state: b"{\"producers\":{}}",
        };
        let bytes = plain.encode().unwrap();
        assert_eq!(
            &bytes[..8],
            &42i64.to_be_bytes(),
            "the on-disk layout is unchanged"
        );
        assert_eq!(PartitionSnapshot::parse(&bytes).unwrap(), plain);

        let with = PartitionSnapshot {
            next_offset: 900,
            retained: Some(Retained {
                header: RetainedHeader {
                    first_index: 7,
                    first_offset: 300,
                    epochs: vec![Epoch {
                        term: 2,
                        leader: 3,
                        first_index: 5,
                    }],
                },
                batches: &[1, 2, 3, 4, 5],
            }),
            state: b"state",
        };
        let bytes = with.encode().unwrap();
        assert_eq!(PartitionSnapshot::parse(&bytes).unwrap(), with);
        assert_eq!(
            PartitionSnapshot::parse(&with.without_retained().encode().unwrap()).unwrap(),
            PartitionSnapshot {
                next_offset: 900,
                retained: None,
                state: b"state",
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_shorter_snapshot() {
        let with = PartitionSnapshot {
            next_offset: 900,
            retained: Some(Retained {
                header: RetainedHeader {
                    first_index: 7,
                    first_offset: 300,
                    epochs: Vec::new(),
                },
                batches: &[9; 16],
            }),
            state: b"",
        };
        let bytes = with.encode().unwrap();
        // Every cut before the next offset is complete fails; the state may be empty.
        for cut in 0..bytes.len() {
            assert!(
                PartitionSnapshot::parse(&bytes[..cut]).is_err(),
                "a snapshot cut at {cut} of {} parsed",
                bytes.len()
            );
        }
    }
}
