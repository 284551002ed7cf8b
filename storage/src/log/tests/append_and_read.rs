//! Appending assigns offsets; reading serves the stored bytes back by offset.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use super::support::{append_batches, batch, config, everything, offsets, read_all};
use crate::log::{FlushPolicy, LogError, PartitionLog, ReadOptions};

fn options(max_bytes: usize, min_one_batch: bool) -> ReadOptions {
    ReadOptions {
        max_bytes,
        min_one_batch,
        upper_bound: None,
    }
}

#[test]
fn offsets_are_assigned_sequentially_and_bytes_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    let mut stored = Vec::new();
    for i in 0..20 {
        let mut b = batch(3, 100, 1000 + i);
        let info = log.append(&mut b, 7).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (i * 3, i * 3 + 2));
        assert_eq!(info.max_timestamp, 1000 + i);
        assert_eq!(
            i32::from_be_bytes(b[12..16].try_into().unwrap()),
            7,
            "leader epoch stamped"
        );
        stored.extend(b);
    }
    assert_eq!(log.log_end_offset(), 60);
    assert!(
        log.segment_count() >= 3,
        "161-byte batches in 1000-byte segments roll"
    );
    assert_eq!(log.size_bytes(), stored.len() as u64);
    assert_eq!(read_all(&log), stored);
}

#[test]
fn one_append_of_several_batches_assigns_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    let mut buf = batch(2, 10, 1);
    buf.extend(batch(5, 10, 2));
    buf.extend(batch(1, 10, 3));
    let info = log.append(&mut buf, 0).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.max_timestamp),
        (0, 7, 3)
    );
    let read = log.read(0, everything()).unwrap();
    assert_eq!(offsets(&read.bytes), vec![(0, 1), (2, 6), (7, 7)]);
    assert_eq!(&read.bytes[..], &buf[..]);
}

#[test]
fn reading_inside_a_batch_returns_the_whole_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    append_batches(&log, 20, 3, 100);
    for offset in [0, 1, 2, 31, 44, 59] {
        let read = log.read(offset, options(1, true)).unwrap();
        let base = offset - offset % 3;
        assert_eq!(
            offsets(&read.bytes),
            vec![(base, base + 2)],
            "offset {offset}"
        );
    }
}

#[test]
fn max_bytes_returns_only_whole_batches_and_min_one_batch_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    append_batches(&log, 10, 1, 100); // 161 bytes each
    assert_eq!(
        offsets(&log.read(0, options(500, false)).unwrap().bytes).len(),
        3
    );
    assert_eq!(
        offsets(&log.read(0, options(161 * 4, false)).unwrap().bytes).len(),
        4
    );
    assert!(
        log.read(0, options(160, false)).unwrap().bytes.is_empty(),
        "first batch does not fit"
    );
    assert_eq!(
        offsets(&log.read(0, options(160, true)).unwrap().bytes),
        vec![(0, 0)],
        "KIP-74"
    );
    assert_eq!(
        offsets(&log.read(0, options(0, true)).unwrap().bytes),
        vec![(0, 0)]
    );
}

#[test]
fn upper_bound_leaves_out_batches_at_or_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    append_batches(&log, 5, 2, 10); // offsets 0-1, 2-3, 4-5, 6-7, 8-9
    let bounded = |offset, bound| {
        let read = log
            .read(
                offset,
                ReadOptions {
                    upper_bound: Some(bound),
                    ..everything()
                },
            )
            .unwrap();
        offsets(&read.bytes)
    };
    assert_eq!(bounded(0, 4), vec![(0, 1), (2, 3)]);
    assert_eq!(
        bounded(0, 5),
        vec![(0, 1), (2, 3), (4, 5)],
        "a batch starting below the bound is whole"
    );
    assert_eq!(bounded(4, 4), vec![]);
    assert_eq!(bounded(0, 100).len(), 5);
}

#[test]
fn reading_at_log_end_is_empty_and_outside_the_log_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    let empty = log.read(0, everything()).unwrap();
    assert!(empty.bytes.is_empty());
    assert_eq!((empty.log_start_offset, empty.log_end_offset), (0, 0));
    append_batches(&log, 2, 5, 10);
    let at_end = log.read(10, everything()).unwrap();
    assert!(at_end.bytes.is_empty());
    assert_eq!(at_end.log_end_offset, 10);
    assert!(matches!(
        log.read(11, everything()),
        Err(LogError::OffsetOutOfRange {
            requested: 11,
            start: 0,
            end: 10
        })
    ));
    assert!(matches!(
        log.read(-1, everything()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_bad_batch_anywhere_in_the_buffer_rejects_the_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    append_batches(&log, 1, 1, 10);
    let (end, size) = (log.log_end_offset(), log.size_bytes());

    let mut bad_crc = batch(1, 10, 0);
    bad_crc.extend(batch(1, 10, 0));
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    assert!(matches!(
        log.append(&mut bad_crc, 0),
        Err(LogError::CorruptBatch { .. })
    ));

    let mut bad_magic = batch(1, 10, 0);
    bad_magic[16] = 1;
    assert!(matches!(
        log.append(&mut bad_magic, 0),
        Err(LogError::UnsupportedMagic { magic: 1 })
    ));

    let mut trailing = batch(1, 10, 0);
    trailing.extend([0, 0, 0]);
    assert!(matches!(
        log.append(&mut trailing, 0),
        Err(LogError::CorruptBatch { .. })
    ));

    let mut truncated = batch(1, 10, 0);
    truncated.pop();
    assert!(matches!(
        log.append(&mut truncated, 0),
        Err(LogError::CorruptBatch { .. })
    ));

    assert!(matches!(
        log.append(&mut [], 0),
        Err(LogError::CorruptBatch { .. })
    ));
    assert_eq!(
        (log.log_end_offset(), log.size_bytes()),
        (end, size),
        "nothing written"
    );
    assert_eq!(offsets(&read_all(&log)), vec![(0, 0)]);
}

#[test]
fn a_batch_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(100)).unwrap();
    append_batches(&log, 3, 1, 500);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(offsets(&read_all(&log)), vec![(0, 0), (1, 1), (2, 2)]);
}

#[test]
fn every_append_and_interval_flush_policies_flush() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path(),
        crate::log::LogConfig {
            flush: FlushPolicy::EveryAppend,
            ..config(1000)
        },
    )
    .unwrap();
    append_batches(&log, 10, 1, 100);
    log.set_config(crate::log::LogConfig {
        flush: FlushPolicy::Interval(std::time::Duration::ZERO),
        ..config(1000)
    });
    append_batches(&log, 1, 1, 100);
    log.flush_if_due().unwrap();
    log.flush().unwrap();
    assert_eq!(log.log_end_offset(), 11);
}

#[test]
fn concurrent_readers_never_see_a_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(dir.path(), config(4000)).unwrap());
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || append_batches(&log, 300, 2, 300))
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut next = 0;
                while next < 600 {
                    let read = log
                        .read(
                            next,
                            ReadOptions {
                                max_bytes: 2000,
                                min_one_batch: true,
                                upper_bound: None,
                            },
                        )
                        .unwrap();
                    if !read.bytes.is_empty() {
                        crate::log::batch::validate_batches(&read.bytes).unwrap();
                    }
                    for (base, last) in offsets(&read.bytes) {
                        assert_eq!(base, next, "batches are contiguous");
                        assert!(last < read.log_end_offset);
                        next = last + 1;
                    }
                }
            })
        })
        .collect();
    let written: Vec<u8> = writer.join().unwrap().concat();
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(read_all(&log), written);
}

#[test]
fn the_log_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PartitionLog>();
}
