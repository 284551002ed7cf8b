//! Building valid v2 batches and poking at log directories, for tests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use crate::log::batch::{BatchHeader, Batches};
use crate::log::{FlushPolicy, LogConfig, PartitionLog, ReadOptions};

/// A valid v2 batch of `record_count` records: a real header, `body_len` bytes of dummy
/// "records" (storage never looks inside) and a correct CRC-32C. Base offset 0, as a
/// producer sends it.
pub(crate) fn batch(record_count: i32, body_len: usize, max_timestamp: i64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(61 + body_len);
    buf.extend(0i64.to_be_bytes()); // baseOffset
    buf.extend((49 + body_len as i32).to_be_bytes()); // batchLength
    buf.extend((-1i32).to_be_bytes()); // partitionLeaderEpoch
    buf.push(2); // magic
    buf.extend(0u32.to_be_bytes()); // crc, filled below
    buf.extend(0i16.to_be_bytes()); // attributes
    buf.extend((record_count - 1).to_be_bytes()); // lastOffsetDelta
    buf.extend(max_timestamp.to_be_bytes()); // baseTimestamp
    buf.extend(max_timestamp.to_be_bytes()); // maxTimestamp
    buf.extend((-1i64).to_be_bytes()); // producerId
    buf.extend((-1i16).to_be_bytes()); // producerEpoch
    buf.extend((-1i32).to_be_bytes()); // baseSequence
    buf.extend(record_count.to_be_bytes()); // recordCount
    buf.extend((0..body_len).map(|i| (i % 251) as u8));
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// Small segments, dense index, no time-based behaviour, no explicit fsync.
pub(crate) fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: None,
        retention_bytes: None,
        retention_ms: None,
        index_interval_bytes: 256,
        flush: FlushPolicy::Os,
    }
}

pub(crate) fn everything() -> ReadOptions {
    ReadOptions {
        max_bytes: usize::MAX,
        min_one_batch: true,
        upper_bound: None,
    }
}

/// Appends `count` batches of `records` records and `body` body bytes each (timestamps
/// 1000, 1001, ...), returning the bytes as stored (offsets assigned).
pub(crate) fn append_batches(
    log: &PartitionLog,
    count: usize,
    records: i32,
    body: usize,
) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut b = batch(records, body, 1000 + i as i64);
            log.append(&mut b, 3).unwrap();
            b
        })
        .collect()
}

/// (base offset, last offset) of every batch in `bytes`, which must be whole batches.
pub(crate) fn offsets(bytes: &[u8]) -> Vec<(i64, i64)> {
    let walked: Vec<(usize, BatchHeader)> = Batches::new(bytes).collect();
    let end = walked.last().map_or(0, |(at, h)| at + h.size());
    assert_eq!(end, bytes.len(), "read returned a partial batch");
    walked
        .into_iter()
        .map(|(_, h)| (h.base_offset, h.last_offset()))
        .collect()
}

/// Everything in the log, read front to back the way a consumer does.
pub(crate) fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let read = log
            .read(
                next,
                ReadOptions {
                    max_bytes: 1000,
                    min_one_batch: true,
                    upper_bound: None,
                },
            )
            .unwrap();
        let batches = offsets(&read.bytes);
        next = batches.last().unwrap().1 + 1;
        out.extend_from_slice(&read.bytes);
    }
    out
}

pub(crate) fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

pub(crate) fn last_log_file(dir: &Path) -> PathBuf {
    segment_files(dir, "log").pop().unwrap()
}
