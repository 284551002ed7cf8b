//! Transaction markers: the control batch the coordinator writes to every partition of a
//! transaction when it ends. Its one record has key (version 0 i16, type i16: 0 abort,
//! 1 commit) and value EndTxnMarker (version 0 i16, coordinator epoch i32); the batch carries
//! the producer id and epoch with the transactional and control attribute bits set.

use super::batch_header::Marker;
use crate::record_batch;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Record;

/// The coordinator's epoch; one node never changes coordinator.
pub const COORDINATOR_EPOCH: i32 = 0;

/// Encodes a marker batch (base offset 0: the log assigns the real one).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    now_ms: i64,
) -> anyhow::Result<BytesMut> {
    let kind: i16 = match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    };
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(kind);
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(COORDINATOR_EPOCH);
    let record = Record {
        transactional: true,
        control: true,
        producer_id,
        producer_epoch,
        ..record_batch::plain_record(0, now_ms, Some(Bytes::from(key)), Some(Bytes::from(value)))
    };
    let out = record_batch::encode_uncompressed(std::slice::from_ref(&record))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::producer::batch_header::{ProducerBatch, control_marker};

    #[test]
    fn a_marker_batch_reads_back_as_its_kind() {
        for marker in [Marker::Abort, Marker::Commit] {
            let batch = marker_batch(42, 3, marker, 1000).unwrap();
            let header = ProducerBatch::parse(&batch).unwrap();
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert!(header.transactional && header.control);
            assert_eq!(control_marker(&batch), Some(marker));
        }
    }
}
