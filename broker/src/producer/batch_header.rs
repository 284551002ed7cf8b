//! The producer fields of a magic-v2 record batch header, read at fixed positions without
//! decoding the records (a batch is stored as it came off the wire). Layout: baseOffset i64 @0,
//! batchLength i32 @8, partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17,
//! attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57.

/// Size of the v2 batch header; records follow it.
pub const HEADER_SIZE: usize = 61;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// No producer: the batch bypasses every producer check.
pub const NO_PRODUCER_ID: i64 = -1;

/// What the producer state machines need from one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_offset_delta: i32,
    pub transactional: bool,
    pub control: bool,
}

impl ProducerBatch {
    /// Reads the header of the batch at the start of `batch`; `None` if it is too short.
    pub fn parse(batch: &[u8]) -> Option<ProducerBatch> {
        let attributes = i16::from_be_bytes(field(batch, 21)?);
        Some(ProducerBatch {
            producer_id: i64::from_be_bytes(field(batch, 43)?),
            producer_epoch: i16::from_be_bytes(field(batch, 51)?),
            base_sequence: i32::from_be_bytes(field(batch, 53)?),
            last_offset_delta: i32::from_be_bytes(field(batch, 23)?),
            transactional: attributes & TRANSACTIONAL_BIT != 0,
            control: attributes & CONTROL_BIT != 0,
        })
    }

    pub fn has_producer(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the batch's last record; sequences wrap from i32::MAX to 0.
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        i32::try_from(last % (i64::from(i32::MAX) + 1)).unwrap_or(i32::MAX)
    }
}

/// The big-endian field of `N` bytes at `at`.
fn field<const N: usize>(batch: &[u8], at: usize) -> Option<[u8; N]> {
    batch
        .get(at..at + N)
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
}

/// The transaction marker a control batch carries: its first record's key is
/// (version i16, type i16) with type 0 = abort, 1 = commit. Control batches are never
/// compressed, so the record is read in place: length varint, attributes i8,
/// timestampDelta varint, offsetDelta varint, keyLength varint, key.
pub fn control_marker(batch: &[u8]) -> Option<Marker> {
    let mut rest = batch.get(HEADER_SIZE..)?;
    let _length = read_varint(&mut rest)?;
    rest = rest.get(1..)?;
    let _timestamp_delta = read_varint(&mut rest)?;
    let _offset_delta = read_varint(&mut rest)?;
    let key_length = read_varint(&mut rest)?;
    if key_length < 4 {
        return None;
    }
    match i16::from_be_bytes(field(rest, 2)?) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

/// A zig-zag varint (records use them for lengths and deltas).
fn read_varint(rest: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let decoded = (value >> 1) as i64 ^ -((value & 1) as i64);
            return Some(decoded);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn last_sequence_wraps_past_i32_max() {
        let batch = ProducerBatch {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
            last_offset_delta: 3,
            transactional: false,
            control: false,
        };
        assert_eq!(batch.last_sequence(), 1);
    }
}
