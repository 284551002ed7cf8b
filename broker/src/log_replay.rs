//! Reading a partition back into memory: what a coordinator does when it starts (or, in a
//! cluster, takes over) coordinating the groups or transactions whose records the
//! partition holds.

use crate::error::Result;
use crate::partition::Partition;
use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

/// How much of the log one read of a replay fetches.
const REPLAY_CHUNK: usize = 1 << 20;

/// Hands every committed record of `partition` to `apply`, in log order, control records
/// (markers, Raft's own entries) included, and returns the offset it read to. A batch that
/// does not decode (internal topics are writable by Produce) is logged and skipped rather
/// than keeping the coordinator from loading.
pub fn replay_records(partition: &Partition, mut apply: impl FnMut(Record)) -> Result<i64> {
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let read = partition.read(offset, REPLAY_CHUNK, true)?;
        let mut next = offset;
        for (base_offset, last_offset, mut batch) in split_batches(read.bytes) {
            next = next.max(last_offset + 1);
            match RecordBatchDecoder::decode(&mut batch) {
                Ok(set) => set.records.into_iter().for_each(&mut apply),
                Err(error) => tracing::error!(
                    topic = %partition.topic,
                    partition = partition.index,
                    base_offset,
                    %error,
                    "skipping an undecodable batch"
                ),
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(offset)
}

/// For a transaction marker (a control record of type 0 abort or 1 commit): whether it
/// commits. `None` for any other record.
pub fn marker_commits(record: &Record) -> Option<bool> {
    if !record.control {
        return None;
    }
    let key = record.key.as_ref()?;
    match key.get(2..4)? {
        [0, 0] => Some(false),
        [0, 1] => Some(true),
        _ => None,
    }
}

/// Splits stored v2 batches by their headers: (base offset, last offset, batch bytes). The
/// offsets come from the header, so an empty batch (all its records compacted away) still
/// moves the reader forward. A truncated tail ends the list.
fn split_batches(mut bytes: Bytes) -> Vec<(i64, i64, Bytes)> {
    // baseOffset (8) + batchLength (4) + partitionLeaderEpoch (4) + magic (1) + crc (4) +
    // attributes (2) + lastOffsetDelta (4).
    const HEADER: usize = 27;
    let mut batches = Vec::new();
    while bytes.len() >= HEADER {
        let field = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or_default().to_vec();
        let base_offset = i64::from_be_bytes(field(0..8).try_into().unwrap_or([0; 8]));
        let length = i32::from_be_bytes(field(8..12).try_into().unwrap_or([0; 4]));
        let delta = i32::from_be_bytes(field(23..27).try_into().unwrap_or([0; 4]));
        let Some(total) = usize::try_from(length)
            .ok()
            .and_then(|length| length.checked_add(12))
            .filter(|total| *total >= HEADER && *total <= bytes.len())
        else {
            break;
        };
        let batch = bytes.split_to(total);
        batches.push((base_offset, base_offset + i64::from(delta), batch));
    }
    batches
}
