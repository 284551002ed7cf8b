//! The Kafka v2 record batch header: a read-only view and the checks every batch passes.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordCount i32 @57, records @61.
//!
//! The CRC (CRC-32C) covers attributes..end, so the log may rewrite baseOffset and
//! partitionLeaderEpoch without recomputing it. Nothing here looks past the header.

use super::error::LogError;

/// Bytes before the records.
pub(crate) const HEADER_SIZE: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength.
const LENGTH_PREFIX: usize = 12;
const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes on.
const CRC_FROM: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAX_TIMESTAMP_AT: usize = 35;
const SUPPORTED_MAGIC: i8 = 2;

/// The header fields storage uses, parsed from the first [`HEADER_SIZE`] bytes of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
}

fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl BatchHeader {
    /// Parses a header; `None` if `buf` is shorter than [`HEADER_SIZE`]. Does not validate.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_SIZE {
            return None;
        }
        Some(BatchHeader {
            base_offset: i64::from_be_bytes(array(buf, BASE_OFFSET_AT)?),
            batch_length: i32::from_be_bytes(array(buf, BATCH_LENGTH_AT)?),
            leader_epoch: i32::from_be_bytes(array(buf, LEADER_EPOCH_AT)?),
            magic: i8::from_be_bytes(array(buf, MAGIC_AT)?),
            crc: u32::from_be_bytes(array(buf, CRC_AT)?),
            last_offset_delta: i32::from_be_bytes(array(buf, LAST_OFFSET_DELTA_AT)?),
            max_timestamp: i64::from_be_bytes(array(buf, MAX_TIMESTAMP_AT)?),
        })
    }

    /// Total size of the batch on the wire and on disk. Only meaningful after [`check`](Self::check).
    pub fn size(&self) -> usize {
        LENGTH_PREFIX + usize::try_from(self.batch_length).unwrap_or(0)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Checks what the header alone can tell: magic 2, a batchLength that covers at least
    /// the header, a non-negative lastOffsetDelta. Returns the batch's total size.
    pub fn check(&self) -> Result<usize, LogError> {
        if self.magic != SUPPORTED_MAGIC {
            return Err(LogError::UnsupportedMagic { magic: self.magic });
        }
        let min_length = HEADER_SIZE - LENGTH_PREFIX;
        if usize::try_from(self.batch_length).map_or(true, |len| len < min_length) {
            return Err(LogError::corrupt(format!(
                "batchLength {} is smaller than the {min_length}-byte header",
                self.batch_length
            )));
        }
        if self.last_offset_delta < 0 {
            return Err(LogError::corrupt(format!(
                "negative lastOffsetDelta {}",
                self.last_offset_delta
            )));
        }
        Ok(self.size())
    }

    /// Does `batch` (exactly this batch's bytes) carry the CRC its header claims?
    pub fn crc_matches(&self, batch: &[u8]) -> bool {
        batch
            .get(CRC_FROM..)
            .is_some_and(|covered| crc32c::crc32c(covered) == self.crc)
    }
}

/// What validating an append buffer learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchesSummary {
    pub batch_count: usize,
    /// Offsets the batches will occupy (sum of lastOffsetDelta + 1).
    pub offset_count: i64,
}

/// Validates a buffer of concatenated batches completely — framing, magic, CRC — before
/// anything is written. The buffer must be whole batches and nothing else.
pub(crate) fn validate_batches(buf: &[u8]) -> Result<BatchesSummary, LogError> {
    if buf.is_empty() {
        return Err(LogError::corrupt("no record batches in the buffer"));
    }
    let mut summary = BatchesSummary {
        batch_count: 0,
        offset_count: 0,
    };
    let mut pos = 0;
    while let Some(rest) = buf.get(pos..).filter(|rest| !rest.is_empty()) {
        // Report an old magic as such even when the (shorter) old header is all there is.
        if let Some(&magic) = rest.get(MAGIC_AT)
            && magic as i8 != SUPPORTED_MAGIC
        {
            return Err(LogError::UnsupportedMagic { magic: magic as i8 });
        }
        let header = BatchHeader::parse(rest).ok_or_else(|| {
            LogError::corrupt(format!(
                "truncated batch header at byte {pos} ({} bytes left)",
                rest.len()
            ))
        })?;
        let size = header.check()?;
        let batch = rest.get(..size).ok_or_else(|| {
            LogError::corrupt(format!(
                "batch at byte {pos} claims {size} bytes but only {} remain",
                rest.len()
            ))
        })?;
        if !header.crc_matches(batch) {
            return Err(LogError::corrupt(format!(
                "CRC mismatch in batch at byte {pos}"
            )));
        }
        summary.batch_count += 1;
        summary.offset_count += i64::from(header.last_offset_delta) + 1;
        pos += size;
    }
    Ok(summary)
}

/// Overwrites the two fields the log owns: baseOffset and partitionLeaderEpoch. Neither is
/// covered by the CRC.
pub(crate) fn assign(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    if let Some(field) = batch.get_mut(BASE_OFFSET_AT..BASE_OFFSET_AT + 8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
    if let Some(field) = batch.get_mut(LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4) {
        field.copy_from_slice(&leader_epoch.to_be_bytes());
    }
}

/// Walks the complete batches of a buffer, yielding `(position, header)`. Stops at the
/// first batch that is incomplete or whose header fails [`BatchHeader::check`]; no CRC
/// check (the bytes came from our own files, validated when they were appended).
pub(crate) struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8]) -> Batches<'a> {
        Batches { buf, pos: 0 }
    }
}

impl Iterator for Batches<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        let header = BatchHeader::parse(rest)?;
        let size = header.check().ok()?;
        if size > rest.len() {
            return None;
        }
        let at = self.pos;
        self.pos += size;
        Some((at, header))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::log::tests::support::batch;

    #[test]
    fn a_built_batch_validates_and_reports_its_offsets() {
        let mut buf = batch(3, 100, 1000);
        buf.extend(batch(1, 10, 1001));
        assert_eq!(
            validate_batches(&buf).unwrap(),
            BatchesSummary {
                batch_count: 2,
                offset_count: 4
            }
        );
    }

    #[test]
    fn assigning_offset_and_epoch_keeps_the_crc_valid() {
        let mut buf = batch(3, 100, 1000);
        assign(&mut buf, 42, 7);
        let header = BatchHeader::parse(&buf).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 44);
        assert_eq!(i32::from_be_bytes(buf[12..16].try_into().unwrap()), 7);
        assert!(validate_batches(&buf).is_ok());
    }

    #[test]
    fn a_flipped_body_byte_is_a_crc_mismatch() {
        let mut buf = batch(2, 50, 0);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&buf),
            Err(LogError::CorruptBatch { .. })
        ));
    }

    #[test]
    fn magic_other_than_two_is_unsupported() {
        let mut buf = batch(1, 10, 0);
        buf[16] = 1;
        assert!(matches!(
            validate_batches(&buf),
            Err(LogError::UnsupportedMagic { magic: 1 })
        ));
    }

    #[test]
    fn truncated_batches_and_trailing_garbage_are_corrupt() {
        let whole = batch(1, 100, 0);
        for cut in [1, 16, 30, 61, whole.len() - 1] {
            assert!(
                matches!(
                    validate_batches(&whole[..cut]),
                    Err(LogError::CorruptBatch { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut trailing = whole.clone();
        trailing.extend([0u8; 5]);
        assert!(matches!(
            validate_batches(&trailing),
            Err(LogError::CorruptBatch { .. })
        ));
        assert!(matches!(
            validate_batches(&[]),
            Err(LogError::CorruptBatch { .. })
        ));
    }

    #[test]
    fn a_length_shorter_than_the_header_is_corrupt() {
        let mut buf = batch(1, 10, 0);
        buf[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&buf),
            Err(LogError::CorruptBatch { .. })
        ));
    }

    #[test]
    fn walking_stops_at_an_incomplete_batch() {
        let mut buf = batch(1, 10, 0);
        let first = buf.len();
        buf.extend(batch(1, 10, 0));
        buf.truncate(buf.len() - 3);
        let walked: Vec<usize> = Batches::new(&buf)
            .map(|(at, header)| at + header.size())
            .collect();
        assert_eq!(walked, vec![first]);
    }
}
