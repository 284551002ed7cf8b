//! Lookups by time: ListOffsets by timestamp and MAX_TIMESTAMP.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::support::{batch, config};
use crate::log::PartitionLog;

fn log_with_timestamps(dir: &std::path::Path, timestamps: &[i64]) -> PartitionLog {
    let log = PartitionLog::open(dir, config(1000)).unwrap();
    for &ts in timestamps {
        log.append(&mut batch(2, 100, ts), 0).unwrap();
    }
    log
}

#[test]
fn find_by_timestamp_returns_the_first_batch_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let timestamps: Vec<i64> = (0..30).map(|i| 1000 + 10 * i).collect();
    let log = log_with_timestamps(dir.path(), &timestamps);
    let found = log.find_batch_by_timestamp(1055).unwrap().unwrap();
    assert_eq!(
        (found.base_offset, found.last_offset, found.max_timestamp),
        (12, 13, 1060)
    );
    assert_eq!(
        log.find_batch_by_timestamp(1060)
            .unwrap()
            .unwrap()
            .base_offset,
        12
    );
    assert_eq!(
        log.find_batch_by_timestamp(0).unwrap().unwrap().base_offset,
        0
    );
    assert_eq!(
        log.find_batch_by_timestamp(1290)
            .unwrap()
            .unwrap()
            .base_offset,
        58
    );
    assert!(log.find_batch_by_timestamp(1291).unwrap().is_none());
}

#[test]
fn find_by_timestamp_copes_with_timestamps_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_timestamps(dir.path(), &[100, 500, 200, 300, 600, 50]);
    assert_eq!(
        log.find_batch_by_timestamp(250)
            .unwrap()
            .unwrap()
            .base_offset,
        2,
        "500 is the first >= 250"
    );
    assert_eq!(
        log.find_batch_by_timestamp(550)
            .unwrap()
            .unwrap()
            .max_timestamp,
        600
    );
}

#[test]
fn max_timestamp_is_the_largest_and_the_batch_carrying_it_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_timestamps(
        dir.path(),
        &[100, 900, 200, 300, 900, 50, 10, 20, 30, 40, 60],
    );
    assert_eq!(log.max_timestamp(), Some((900, 2)));
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.max_timestamp(), Some((900, 2)));
    let empty_dir = tempfile::tempdir().unwrap();
    assert_eq!(
        PartitionLog::open(empty_dir.path(), config(1000))
            .unwrap()
            .max_timestamp(),
        None
    );
}
