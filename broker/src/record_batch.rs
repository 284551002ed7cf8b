//! Building the v2 record batches the broker writes itself (offset commits, group metadata,
//! transaction markers) with kafka-protocol's encoder, so every writer fills the record
//! fields the same way.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A record outside any producer session (no producer id, epoch or sequence). Its offset is
/// relative: the log assigns the real one on append.
pub fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// `records` as one uncompressed v2 batch (more than one if the encoder must split them).
pub fn encode_uncompressed(records: &[Record]) -> anyhow::Result<BytesMut> {
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options)?;
    Ok(out)
}
