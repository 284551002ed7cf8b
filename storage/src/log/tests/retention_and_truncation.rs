//! Retention deletes old sealed segments from the front; truncation drops the tail.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::support::{append_batches, batch, config, everything, offsets, read_all};
use crate::log::{LogConfig, LogError, PartitionLog};

#[test]
fn size_retention_deletes_the_oldest_sealed_segments_and_advances_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap(); // 6 batches of 161 bytes per segment
    append_batches(&log, 20, 3, 100);
    let before = log.segment_count();
    log.set_config(LogConfig {
        retention_bytes: Some(1500),
        ..config(1000)
    });
    // What retention would do, asked first, deletes nothing and names where it would
    // restart the log.
    let planned = log.retention_start(0).unwrap();
    assert_eq!(log.segment_count(), before);
    assert_eq!(log.log_start_offset(), 0);
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted >= 1);
    assert_eq!(
        log.log_start_offset(),
        planned,
        "retention_start names the new start"
    );
    assert_eq!(log.retention_start(0), None, "nothing more to delete");
    assert_eq!(log.segment_count(), before - deleted);
    assert!(log.size_bytes() <= 1500);
    assert_eq!(log.log_start_offset(), offsets(&read_all(&log))[0].0);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, everything()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_end_offset(), 60, "retention never touches the end");
    drop(log);
    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert!(
        reopened.log_start_offset() > 0,
        "deleted segments stay deleted"
    );
}

#[test]
fn time_retention_deletes_sealed_segments_older_than_the_cutoff_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path(),
        LogConfig {
            retention_ms: Some(100),
            ..config(1000)
        },
    )
    .unwrap();
    append_batches(&log, 20, 3, 100); // timestamps 1000..1019
    assert_eq!(
        log.enforce_retention(1050).unwrap(),
        0,
        "nothing is older than 950"
    );
    let deleted = log.enforce_retention(1_000_000).unwrap();
    assert!(deleted >= 2);
    assert_eq!(log.segment_count(), 1, "the active segment stays");
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.append(&mut batch(1, 10, 0), 0).unwrap().base_offset, 60);
}

#[test]
fn truncation_drops_the_batch_containing_the_offset_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    let stored = append_batches(&log, 20, 3, 100);
    log.truncate_to(31).unwrap(); // inside batch 30..=32
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(read_all(&log), stored[..10].concat());
    assert_eq!(log.append(&mut batch(1, 10, 0), 0).unwrap().base_offset, 30);
    log.truncate_to(1000).unwrap();
    assert_eq!(
        log.log_end_offset(),
        31,
        "truncating past the end does nothing"
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(offsets(&read_all(&log)).last(), Some(&(30, 30)));
}

#[test]
fn truncation_to_a_segment_boundary_and_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    append_batches(&log, 20, 3, 100);
    log.truncate_to(18).unwrap(); // the first batch of the second segment
    assert_eq!(log.log_end_offset(), 18);
    assert_eq!(log.segment_count(), 2);
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (0, 0, 0)
    );

    append_batches(&log, 20, 3, 100);
    log.set_config(LogConfig {
        retention_bytes: Some(0),
        ..config(1000)
    });
    log.enforce_retention(0).unwrap();
    let start = log.log_start_offset();
    log.truncate_to(start - 5).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start - 5, start - 5)
    );
    assert_eq!(
        log.append(&mut batch(1, 10, 0), 0).unwrap().base_offset,
        start - 5
    );
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_ms: Some(1),
            ..config(1 << 20)
        },
    )
    .unwrap();
    append_batches(&log, 1, 1, 10);
    std::thread::sleep(std::time::Duration::from_millis(5));
    append_batches(&log, 1, 1, 10);
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn reset_empties_the_log_and_restarts_it_at_any_offset_durably() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    append_batches(&log, 20, 3, 100);
    log.advance_log_start(10).unwrap();
    // Above the log end (a replica brought back by a snapshot).
    log.reset_to(500).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), 0);
    assert!(matches!(
        log.read(10, everything()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let mut next = batch(2, 10, 5);
    assert_eq!(log.append(&mut next, 4).unwrap().base_offset, 500);
    drop(log);
    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(
        reopened.log_start_offset(),
        500,
        "no stale start checkpoint"
    );
    assert_eq!(offsets(&read_all(&reopened)), vec![(500, 501)]);
    // Below the current start, after a clean close.
    reopened.close().unwrap();
    reopened.reset_to(7).unwrap();
    drop(reopened);
    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(
        (reopened.log_start_offset(), reopened.log_end_offset()),
        (7, 7)
    );
}
