//! The control batches a partition group's entries may carry, for the partition log store.
//!
//! A normal entry's payload IS one record batch (validated before it is proposed and again
//! before it is stored). Two kinds of *control* batch (attributes bit 5 set, skipped by
//! every Kafka consumer) are normal entries too:
//! - a transaction marker (types 0 abort and 1 commit, as Kafka writes them), which the
//!   broker's transaction coordinator proposes like any batch. It carries its producer id
//!   and the transactional attribute, is stored as proposed, and takes one offset, as in
//!   Kafka;
//! - a log-start entry (the private type [`LOG_START_TYPE`]): DeleteRecords moving the
//!   partition's log start on every replica at the same place in the log. It is framed as a
//!   control batch so that it is one validated batch like every proposal, but it is a side
//!   entry (see `partition_side`): never written to the segments, it takes no offset, as
//!   DeleteRecords writes nothing to a Kafka log.
//!
//! Raft's own entries (a new leader's blank entry, membership changes) are side entries
//! too, and never batches.

use crate::log::batch::{self, BatchHeader, HEADER_SIZE};

/// A control record type of our own (Kafka uses 0..=6): the partition's log start moves
/// (DeleteRecords),
/// value `{"logStartOffset":<offset>}`. A normal entry the broker proposes, so that every
/// replica moves its log start at the same place in the log (see [`log_start_command`]).
pub const LOG_START_TYPE: i16 = 0x7F02;
/// Attributes bit 5: the batch holds control records.
pub const CONTROL_BIT: i16 = 0x20;
/// Attributes bit 4: the batch belongs to a transaction.
const TRANSACTIONAL_BIT: i16 = 0x10;
/// Kafka's `ControlRecordType.ABORT` and `COMMIT`: transaction markers.
pub const ABORT_MARKER_TYPE: i16 = 0;
pub const COMMIT_MARKER_TYPE: i16 = 1;
const PRODUCER_ID_AT: usize = 43;
const ATTRIBUTES_AT: usize = 21;
const NO_TIMESTAMP: i64 = -1;

/// Why bytes cannot be (or be read back as) a partition log entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryBatchError {
    #[error("a partition entry must be exactly one valid v2 record batch: {0}")]
    NotOneBatch(String),
    #[error("a produced batch must not carry the control attribute")]
    ControlFromProducer,
    #[error("a transaction marker must name a producer and be transactional")]
    MarkerWithoutProducer,
    #[error("malformed control record: {0}")]
    BadControl(&'static str),
    #[error("bad JSON in a control record: {0}")]
    Json(#[from] serde_json::Error),
}

/// Checks that a proposed command is exactly one well-formed v2 batch: a record batch, a
/// transaction marker or a log-start entry. No other control batch is a command.
pub fn validate_command(bytes: &[u8]) -> Result<(), EntryBatchError> {
    let summary =
        batch::validate_batches(bytes).map_err(|e| EntryBatchError::NotOneBatch(e.to_string()))?;
    if summary.batch_count != 1 {
        return Err(EntryBatchError::NotOneBatch(format!(
            "{} batches",
            summary.batch_count
        )));
    }
    if attributes(bytes) & CONTROL_BIT != 0 {
        if control_record(bytes)?.0 == LOG_START_TYPE {
            return log_start_value(bytes).map(|_| ());
        }
        return validate_marker(bytes);
    }
    Ok(())
}

/// What a log-start entry's value holds.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogStartValue {
    log_start_offset: i64,
}

/// The command that moves a partition group's log start to `offset` on every replica when
/// it is applied (DeleteRecords): a control batch every Kafka consumer skips.
pub fn log_start_command(offset: i64) -> Vec<u8> {
    let value = serde_json::to_vec(&LogStartValue {
        log_start_offset: offset,
    })
    .unwrap_or_default();
    control_batch(LOG_START_TYPE, &value)
}

/// The log start a stored batch moves to, if it is a log-start entry.
pub fn log_start_of(batch: &[u8]) -> Option<i64> {
    if !is_control(batch) || control_record(batch).ok()?.0 != LOG_START_TYPE {
        return None;
    }
    log_start_value(batch).ok()
}

fn log_start_value(batch: &[u8]) -> Result<i64, EntryBatchError> {
    let (_, value) = control_record(batch)?;
    let parsed: LogStartValue = serde_json::from_slice(value)?;
    if parsed.log_start_offset < 0 {
        return Err(EntryBatchError::BadControl("a negative log start"));
    }
    Ok(parsed.log_start_offset)
}

/// A control batch proposed as a command must be one transaction marker of a producer.
fn validate_marker(batch: &[u8]) -> Result<(), EntryBatchError> {
    if !is_marker_type(control_record(batch)?.0) {
        return Err(EntryBatchError::ControlFromProducer);
    }
    let producer_id = batch
        .get(PRODUCER_ID_AT..PRODUCER_ID_AT + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(-1, i64::from_be_bytes);
    if producer_id < 0 || attributes(batch) & TRANSACTIONAL_BIT == 0 {
        return Err(EntryBatchError::MarkerWithoutProducer);
    }
    Ok(())
}

fn is_marker_type(control_type: i16) -> bool {
    matches!(control_type, ABORT_MARKER_TYPE | COMMIT_MARKER_TYPE)
}

fn attributes(batch: &[u8]) -> i16 {
    batch
        .get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, i16::from_be_bytes)
}

/// Is this stored batch a control batch?
pub fn is_control(batch: &[u8]) -> bool {
    attributes(batch) & CONTROL_BIT != 0
}

/// A control batch holding one control record.
pub fn control_batch(control_type: i16, value: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend(0i16.to_be_bytes());
    key.extend(control_type.to_be_bytes());

    let mut body = Vec::with_capacity(16 + value.len());
    body.push(0); // record attributes
    put_varint(&mut body, 0); // timestampDelta
    put_varint(&mut body, 0); // offsetDelta
    put_varint(&mut body, key.len() as i64);
    body.extend(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend(value);
    put_varint(&mut body, 0); // headers
    let mut record = Vec::with_capacity(body.len() + 5);
    put_varint(&mut record, body.len() as i64);
    record.extend(body);

    let batch_length = (HEADER_SIZE - 12 + record.len()) as i32;
    let mut out = Vec::with_capacity(HEADER_SIZE + record.len());
    out.extend(0i64.to_be_bytes()); // baseOffset
    out.extend(batch_length.to_be_bytes());
    out.extend((-1i32).to_be_bytes()); // partitionLeaderEpoch
    out.push(2); // magic
    out.extend(0u32.to_be_bytes()); // crc, below
    out.extend(CONTROL_BIT.to_be_bytes()); // attributes
    out.extend(0i32.to_be_bytes()); // lastOffsetDelta
    out.extend(NO_TIMESTAMP.to_be_bytes()); // baseTimestamp
    out.extend(NO_TIMESTAMP.to_be_bytes()); // maxTimestamp
    out.extend((-1i64).to_be_bytes()); // producerId
    out.extend((-1i16).to_be_bytes()); // producerEpoch
    out.extend((-1i32).to_be_bytes()); // baseSequence
    out.extend(1i32.to_be_bytes()); // recordCount
    out.extend(record);
    let crc = crc32c::crc32c(out.get(ATTRIBUTES_AT..).unwrap_or_default());
    if let Some(field) = out.get_mut(17..21) {
        field.copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// The type and value of a control batch's (first) record.
pub fn control_record(batch: &[u8]) -> Result<(i16, &[u8]), EntryBatchError> {
    let header = BatchHeader::parse(batch).ok_or(EntryBatchError::BadControl("short header"))?;
    let end = header.size().min(batch.len());
    let mut reader = Reader {
        buf: batch.get(HEADER_SIZE..end).unwrap_or_default(),
    };
    let _length = reader.varint()?;
    let _attributes = reader.take(1)?;
    let _timestamp_delta = reader.varint()?;
    let _offset_delta = reader.varint()?;
    let key_len =
        usize::try_from(reader.varint()?).map_err(|_| EntryBatchError::BadControl("null key"))?;
    let key = reader.take(key_len)?;
    let control_type = key
        .get(2..4)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(i16::from_be_bytes)
        .ok_or(EntryBatchError::BadControl(
            "key shorter than version + type",
        ))?;
    let value_len = usize::try_from(reader.varint()?).unwrap_or(0);
    let value = reader.take(value_len)?;
    Ok((control_type, value))
}

/// Zigzag varint, as the v2 record format writes lengths and deltas.
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryBatchError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or(EntryBatchError::BadControl(
                "record shorter than its lengths",
            ))?;
        self.buf = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<i64, EntryBatchError> {
        let mut raw = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .take(1)?
                .first()
                .ok_or(EntryBatchError::BadControl("truncated varint"))?;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(EntryBatchError::BadControl("varint too long"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// A marker as the broker builds one: a control batch with producer id and attributes.
    fn marker(control_type: i16, producer_id: i64, attributes: i16) -> Vec<u8> {
        let mut batch = control_batch(control_type, &[0, 0, 0, 0, 0, 0]);
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn transaction_markers_are_commands() {
        for control_type in [ABORT_MARKER_TYPE, COMMIT_MARKER_TYPE] {
            let bytes = marker(control_type, 42, CONTROL_BIT | TRANSACTIONAL_BIT);
            validate_command(&bytes).unwrap();
            assert!(is_control(&bytes));
            assert_eq!(
                log_start_of(&bytes),
                None,
                "a marker is a batch, not a side entry"
            );
        }
        // No producer, or not transactional: not a marker anyone may write.
        for bad in [
            marker(COMMIT_MARKER_TYPE, -1, CONTROL_BIT | TRANSACTIONAL_BIT),
            marker(COMMIT_MARKER_TYPE, 42, CONTROL_BIT),
        ] {
            assert!(matches!(
                validate_command(&bad),
                Err(EntryBatchError::MarkerWithoutProducer)
            ));
        }
        // Any other control type is no command, whoever sends it (KRaft's leader change,
        // or a forged type of our range).
        for forged in [
            marker(2, 42, CONTROL_BIT | TRANSACTIONAL_BIT),
            marker(0x7F01, 42, CONTROL_BIT | TRANSACTIONAL_BIT),
        ] {
            assert!(matches!(
                validate_command(&forged),
                Err(EntryBatchError::ControlFromProducer)
            ));
        }
    }

    #[test]
    fn a_log_start_command_validates_and_carries_its_offset() {
        let command = log_start_command(1_234);
        validate_command(&command).unwrap();
        assert_eq!(log_start_of(&command), Some(1_234));
        assert!(is_control(&command), "consumers would skip it anyway");
        assert_eq!(
            log_start_of(&marker(COMMIT_MARKER_TYPE, 42, CONTROL_BIT)),
            None
        );
        assert_eq!(
            log_start_of(&crate::log::tests::support::batch(2, 10, 5)),
            None
        );
        // A negative start or a value that is not the JSON is no command.
        for bad in [
            control_batch(LOG_START_TYPE, br#"{"logStartOffset":-5}"#),
            control_batch(LOG_START_TYPE, b"12"),
        ] {
            assert!(validate_command(&bad).is_err());
            assert_eq!(log_start_of(&bad), None);
        }
    }

    #[test]
    fn varints_roundtrip_including_negative_and_multibyte() {
        for value in [0i64, 1, -1, 63, 64, -65, 300, 1 << 40, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Reader { buf: &out }.varint().unwrap(), value);
        }
    }

    #[test]
    fn commands_must_be_one_batch() {
        let mut two = crate::log::tests::support::batch(2, 10, 5);
        assert!(validate_command(&two).is_ok());
        assert!(validate_command(b"not a batch").is_err());
        two.extend(crate::log::tests::support::batch(1, 10, 5));
        assert!(matches!(
            validate_command(&two),
            Err(EntryBatchError::NotOneBatch(_))
        ));
    }
}
