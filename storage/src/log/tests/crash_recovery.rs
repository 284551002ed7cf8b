//! One test per restart scenario: clean close, crash, torn tail, corruption, odd files.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs::{self, OpenOptions};

use super::support::{
    append_batches, batch, config, everything, last_log_file, offsets, read_all, segment_files,
};
use crate::log::PartitionLog;

#[test]
fn an_empty_directory_is_an_empty_log_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(&dir.path().join("topic-0"), config(1000)).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
}

#[test]
fn reopening_after_a_clean_close_keeps_data_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    let stored = append_batches(&log, 20, 3, 100).concat();
    log.close().unwrap();
    assert!(dir.path().join(".clean-shutdown").exists());
    drop(log);

    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert!(
        !dir.path().join(".clean-shutdown").exists(),
        "marker removed at open"
    );
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log), stored);
    assert_eq!(log.append(&mut batch(1, 10, 0), 0).unwrap().base_offset, 60);
}

#[test]
fn reopening_after_a_crash_keeps_every_written_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    let stored = append_batches(&log, 20, 3, 100).concat();
    drop(log); // no close: no marker, the active segment is scanned

    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log), stored);
}

#[test]
fn a_torn_last_batch_is_truncated_and_the_next_append_reuses_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    let stored = append_batches(&log, 5, 3, 100);
    drop(log);
    let file = last_log_file(dir.path());
    let len = fs::metadata(&file).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 50)
        .unwrap();

    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        12,
        "the last good batch ends at offset 11"
    );
    assert_eq!(read_all(&log), stored[..4].concat());
    assert_eq!(log.append(&mut batch(1, 10, 0), 0).unwrap().base_offset, 12);
    assert_eq!(offsets(&read_all(&log)).last(), Some(&(12, 12)));
}

#[test]
fn a_corrupt_batch_truncates_the_log_from_that_batch_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    let stored = append_batches(&log, 5, 1, 100);
    drop(log);
    let file = last_log_file(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    bytes[161 * 2 + 100] ^= 0x40; // inside the third batch's body
    fs::write(&file, &bytes).unwrap();

    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log), stored[..2].concat());
    assert_eq!(
        fs::metadata(&file).unwrap().len(),
        161 * 2,
        "file truncated at the corrupt batch"
    );
}

#[test]
fn a_crash_after_appending_past_a_clean_close_still_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    append_batches(&log, 3, 1, 100);
    log.close().unwrap();
    append_batches(&log, 2, 1, 100); // removes the marker again
    drop(log);
    let file = last_log_file(dir.path());
    let len = fs::metadata(&file).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 1)
        .unwrap();

    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        4,
        "torn tail found although an index file exists"
    );
}

#[test]
fn a_zero_length_or_garbage_segment_file_is_an_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{:020}.log", 0)), b"").unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    drop(log);

    fs::write(dir.path().join(format!("{:020}.log", 0)), vec![0xAB; 1000]).unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.append(&mut batch(2, 10, 0), 0).unwrap().base_offset, 0);
}

#[test]
fn sealed_segments_with_missing_or_garbled_indexes_are_rebuilt_by_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    let stored = append_batches(&log, 20, 3, 100).concat();
    log.close().unwrap();
    drop(log);
    let indexes = segment_files(dir.path(), "index");
    assert!(indexes.len() >= 3);
    fs::remove_file(&indexes[0]).unwrap();
    fs::write(&indexes[1], [1, 2, 3]).unwrap();
    fs::write(
        segment_files(dir.path(), "timeindex")[2].clone(),
        [0xFF; 24],
    )
    .unwrap();

    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(read_all(&log), stored);
    for offset in (0..60).step_by(7) {
        let read = log.read(offset, everything()).unwrap();
        assert_eq!(offsets(&read.bytes)[0].0, offset - offset % 3);
    }
}

#[test]
fn a_torn_sealed_segment_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    append_batches(&log, 20, 3, 100);
    drop(log);
    let first = segment_files(dir.path(), "log")[0].clone();
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    let log = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(log.segment_count(), 1);
    let good = offsets(&read_all(&log));
    assert_eq!(good.last().unwrap().1 + 1, log.log_end_offset());
    assert!(log.log_end_offset() < 60);
}
