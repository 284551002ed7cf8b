//! DeleteRecords' durable log start, and the crash-safe segment rewrite compaction uses.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::support::{append_batches, batch, config, everything, offsets, read_all, segment_files};
use crate::log::batch::assign;
use crate::log::{LogError, PartitionLog};

/// 20 batches of 3 records (161 bytes each), 6 batches per 1000-byte segment.
fn log_with_segments(dir: &std::path::Path) -> PartitionLog {
    let log = PartitionLog::open(dir, config(1000)).unwrap();
    append_batches(&log, 20, 3, 100);
    assert!(log.sealed_segments().len() >= 3);
    log
}

/// A one-record batch carrying offset `offset`, as a compactor would write it.
fn single_record_at(offset: i64) -> Vec<u8> {
    let mut one = batch(1, 20, 5000);
    assign(&mut one, offset, 3);
    one
}

#[test]
fn advancing_the_log_start_hides_older_offsets_deletes_whole_segments_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let first_segments = log.segment_count();

    assert_eq!(log.advance_log_start(31).unwrap(), 31);
    assert_eq!(log.log_start_offset(), 31);
    assert!(matches!(
        log.read(30, everything()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // The batch holding 31 (30..=32) is still served whole, as Kafka does.
    assert_eq!(
        offsets(&log.read(31, everything()).unwrap().bytes)[0],
        (30, 32)
    );
    assert!(
        log.segment_count() < first_segments,
        "segments below 31 are gone"
    );
    assert!(log.sealed_segments()[0].base_offset <= 31);

    // Backwards and past the end change nothing.
    assert_eq!(log.advance_log_start(10).unwrap(), 31);
    assert!(matches!(
        log.advance_log_start(61),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log); // no clean close: recovery runs

    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(reopened.log_start_offset(), 31);
    assert_eq!(reopened.log_end_offset(), 60);
    assert!(matches!(
        reopened.read(30, everything()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn the_log_start_may_reach_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    assert_eq!(log.advance_log_start(60).unwrap(), 60);
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
    assert!(log.read(60, everything()).unwrap().bytes.is_empty());
    log.close().unwrap();
    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(reopened.log_start_offset(), 60);
}

/// Keeps only the last record of each batch, and drops the batch at offset 3 entirely.
fn last_record_only(stored: &[u8]) -> Option<Vec<u8>> {
    let (base, last) = offsets(stored)[0];
    (base != 3).then(|| single_record_at(last))
}

#[test]
fn a_rewrite_keeps_offsets_leaves_gaps_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let segment = log.sealed_segments()[0];
    let stats = log
        .rewrite_segment(segment.base_offset, last_record_only)
        .unwrap()
        .unwrap();
    assert!(stats.changed && stats.bytes_after < stats.bytes_before);
    let expected: Vec<(i64, i64)> = vec![(2, 2), (8, 8), (11, 11), (14, 14), (17, 17)];
    let all = offsets(&read_all(&log));
    assert_eq!(&all[..5], &expected[..]);
    assert_eq!(all[5], (18, 20), "the next segment is untouched");
    // A read inside a gap starts at the next surviving batch.
    assert_eq!(
        offsets(&log.read(4, everything()).unwrap().bytes)[0],
        (8, 8)
    );
    assert_eq!(
        log.log_start_offset(),
        0,
        "compaction never moves the log start"
    );
    assert_eq!(log.log_end_offset(), 60);
    drop(log);

    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(&offsets(&read_all(&reopened))[..5], &expected[..]);
    assert_eq!(reopened.log_end_offset(), 60);
    // Appends continue after the compacted log.
    append_batches(&reopened, 1, 3, 100);
    assert_eq!(reopened.log_end_offset(), 63);
}

#[test]
fn a_crash_before_the_rename_leaves_the_old_segment_and_the_leftover_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let before = read_all(&log);
    drop(log);
    // The cleaner died while writing its output: a partial `.cleaned` file.
    let leftover = dir.path().join(format!("{:020}.cleaned", 0));
    std::fs::write(&leftover, b"half a segment").unwrap();

    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert!(!leftover.exists());
    assert_eq!(read_all(&reopened), before);
}

#[test]
fn a_crash_after_the_rename_rebuilds_the_indexes_from_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let base = log.sealed_segments()[0].base_offset;
    log.rewrite_segment(base, last_record_only)
        .unwrap()
        .unwrap();
    let after = read_all(&log);
    drop(log);
    // The crash came before the new index files were written.
    for ext in ["index", "timeindex"] {
        std::fs::remove_file(dir.path().join(format!("{base:020}.{ext}"))).unwrap();
    }
    assert!(segment_files(dir.path(), "cleaned").is_empty());

    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(read_all(&reopened), after);
}

#[test]
fn a_segment_rewritten_to_nothing_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let sealed = log.sealed_segments();
    let second = sealed[1];
    log.rewrite_segment(second.base_offset, |_| None)
        .unwrap()
        .unwrap();
    assert_eq!(log.sealed_segments().len(), sealed.len() - 1);
    let all = offsets(&read_all(&log));
    let last_of_first = all
        .iter()
        .position(|b| b.1 == second.base_offset - 1)
        .unwrap();
    assert_eq!(all[last_of_first + 1].0, second.next_offset);
    drop(log);
    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(offsets(&read_all(&reopened)), all);
}

#[test]
fn an_emptied_first_segment_stays_so_the_log_start_does_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let sealed = log.sealed_segments();
    log.rewrite_segment(0, |_| None).unwrap().unwrap();
    assert_eq!(log.sealed_segments().len(), sealed.len());
    assert_eq!(log.log_start_offset(), 0);
    // A read from the start finds the first surviving batch.
    assert_eq!(
        offsets(&log.read(0, everything()).unwrap().bytes)[0].0,
        sealed[0].next_offset
    );
    drop(log);
    let reopened = PartitionLog::open(dir.path(), config(1000)).unwrap();
    assert_eq!(reopened.log_start_offset(), 0);
    assert_eq!(offsets(&read_all(&reopened))[0].0, sealed[1].base_offset);
}

#[test]
fn a_rewrite_that_invents_offsets_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_segments(dir.path());
    let before = read_all(&log);
    let base = log.sealed_segments()[0].base_offset;
    let result = log.rewrite_segment(base, |stored| {
        let (_, last) = offsets(stored)[0];
        Some(single_record_at(last + 1))
    });
    assert!(matches!(result, Err(LogError::CorruptBatch { .. })));
    assert_eq!(read_all(&log), before);
    assert!(segment_files(dir.path(), "cleaned").is_empty());
    // The active segment is not a rewrite target.
    let active_base = log.sealed_segments().last().unwrap().next_offset;
    assert!(
        log.rewrite_segment(active_base, |_| None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn reads_keep_working_while_segments_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(log_with_segments(dir.path()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || reads == 0 {
                // Whole, valid batches with ascending offsets, before, during and after.
                let all = offsets(&read_all(&log));
                assert!(all.windows(2).all(|w| w[0].1 < w[1].0), "{all:?}");
                assert_eq!(all.last().unwrap().1, 59);
                reads += 1;
            }
            reads
        })
    };
    for segment in log.sealed_segments() {
        log.rewrite_segment(segment.base_offset, last_record_only)
            .unwrap()
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    assert!(reader.join().unwrap() > 0);
    assert!(
        offsets(&read_all(&log))
            .iter()
            .all(|(base, last)| base == last || *base >= 54)
    );
}
