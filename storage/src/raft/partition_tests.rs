//! The partition log store on its own: entries by index over real segment files, truncate
//! and purge, restart, a torn tail, purge past the log end (snapshot reset), reads by
//! byte budget, a raised log start. Offsets counting records only: `partition_offsets_tests`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload};

use super::partition_log_store::PartitionLogStore;
use super::partition_store::PartitionRaftLog;
use super::partition_suite::small_segments;
use super::types::{Command, Entry, LogId, Vote};
use crate::log::ReadOptions;
use crate::log::batch::Batches;
use crate::log::tests::support::batch;

pub(super) fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

pub(super) fn blank(term: u64, node: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, node, index),
        payload: EntryPayload::Blank,
    }
}

/// A normal entry: one batch of `records` records.
pub(super) fn normal(term: u64, node: u64, index: u64, records: i32) -> Entry {
    Entry {
        log_id: log_id(term, node, index),
        payload: EntryPayload::Normal(Command(batch(records, 20 + index as usize, 1000))),
    }
}

pub(super) fn open(dir: &std::path::Path) -> Arc<PartitionRaftLog> {
    PartitionRaftLog::open(dir, small_segments()).unwrap()
}

/// Every stored batch of the partition log: (base offset, leader epoch, attributes, bytes).
pub(super) fn stored_batches(log: &PartitionRaftLog) -> Vec<(i64, i32, i16, Vec<u8>)> {
    let log = log.log();
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log
            .read(
                offset,
                ReadOptions {
                    max_bytes: usize::MAX,
                    min_one_batch: true,
                    upper_bound: None,
                },
            )
            .unwrap();
        for (at, header) in Batches::new(&read.bytes) {
            let bytes = read.bytes[at..at + header.size()].to_vec();
            let attributes = i16::from_be_bytes([bytes[21], bytes[22]]);
            out.push((header.base_offset, header.leader_epoch, attributes, bytes));
            offset = header.last_offset() + 1;
        }
    }
    out
}

/// Blank at 0 (term 1, leader 1), then normal entries 1..=5 of 3 records each: offsets
/// 0-2 | 3-5 | 6-8 | 9-11 | 12-14, log end 15.
pub(super) fn six_entries() -> Vec<Entry> {
    let mut entries = vec![blank(1, 1, 0)];
    entries.extend((1..=5).map(|i| normal(1, 1, i, 3)));
    entries
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
}

/// Cuts `bytes` off the end of the last segment file (no clean close: the next open scans
/// and truncates the torn tail).
fn tear_tail(dir: &std::path::Path, bytes: u64) {
    let segments = segment_files(dir);
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - bytes)
        .unwrap();
}

#[tokio::test]
async fn truncate_and_purge_move_the_log_end_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut store = PartitionLogStore::new(log.clone());
    log.append_entries(&six_entries()).unwrap();

    // Truncate since 4: entries 4 and 5 and their batches are gone; a new leader's blank
    // entry takes index 4 and no offset, its first batch offset 9 with its term as epoch.
    log.truncate_entries(4).unwrap();
    assert_eq!(log.log().log_end_offset(), 9);
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 3))
    );
    log.append_entries(&[blank(3, 2, 4), normal(3, 2, 5, 2)])
        .unwrap();
    let batches = stored_batches(&log);
    assert_eq!(batches.last().map(|b| (b.0, b.1)), Some((9, 3)));
    assert_eq!(log.read_entries(4, 5).unwrap()[0].log_id, log_id(3, 2, 4));

    // Truncating at a side entry drops it too, and whatever follows.
    log.truncate_entries(4).unwrap();
    assert_eq!(log.index_range(), (0, 4));
    assert_eq!(log.log().log_end_offset(), 9);
    drop((log, store));
    let log = open(dir.path());
    assert_eq!(log.index_range(), (0, 4), "not back after a restart");
    log.append_entries(&[blank(4, 3, 4), normal(4, 3, 5, 2)])
        .unwrap();
    assert_eq!(log.read_entries(4, 5).unwrap()[0].log_id, log_id(4, 3, 4));
    let mut store = PartitionLogStore::new(log.clone());

    // Purge up to 2: the log starts at entry 3's offset; reads begin there.
    log.purge_entries(log_id(1, 1, 2)).unwrap();
    assert_eq!(log.log().log_start_offset(), 6);
    let entries = log.read_entries(0, 100).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(4, 3, 5)));

    // The high watermark is the offset after the last committed entry: a committed blank
    // entry adds nothing to it.
    store.save_committed(Some(log_id(1, 1, 3))).await.unwrap();
    assert_eq!(log.high_watermark(), 9);
    store.save_committed(Some(log_id(4, 3, 4))).await.unwrap();
    assert_eq!(log.high_watermark(), 9);
    store.save_committed(Some(log_id(4, 3, 5))).await.unwrap();
    assert_eq!(log.high_watermark(), 11);

    // Purging through a side entry takes it out of the metadata too.
    log.purge_entries(log_id(4, 3, 4)).unwrap();
    assert_eq!(log.log().log_start_offset(), 9);
    drop((log, store));
    let log = open(dir.path());
    assert_eq!(log.index_range(), (5, 6));
    assert_eq!(log.offset_of(5), Some(9));
}

#[tokio::test]
async fn restart_keeps_vote_entries_and_the_index_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (before, offsets) = {
        let log = open(dir.path());
        let mut store = PartitionLogStore::new(log.clone());
        store.save_vote(&Vote::new(4, 2)).await.unwrap();
        log.append_entries(&six_entries()).unwrap();
        log.append_entries(&[blank(4, 2, 6), normal(4, 2, 7, 5)])
            .unwrap();
        log.purge_entries(log_id(1, 1, 1)).unwrap();
        store.save_committed(Some(log_id(4, 2, 6))).await.unwrap();
        let offsets: Vec<_> = (0..10).map(|i| log.offset_of(i)).collect();
        (log.read_entries(0, 100).unwrap(), offsets)
    };
    let log = open(dir.path());
    let mut store = PartitionLogStore::new(log.clone());
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(4, 2)));
    assert_eq!(log.read_entries(0, 100).unwrap(), before);
    assert_eq!(
        (0..10).map(|i| log.offset_of(i)).collect::<Vec<_>>(),
        offsets
    );
    assert_eq!((log.offset_of(6), log.offset_of(7)), (Some(15), Some(15)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(4, 2, 7)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
    assert_eq!(log.high_watermark(), 15);
}

#[test]
fn a_torn_tail_batch_removes_exactly_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    let removed_offset = {
        let log = open(dir.path());
        log.append_entries(&six_entries()).unwrap();
        log.append_entries(&[blank(2, 3, 6), normal(2, 3, 7, 4)])
            .unwrap();
        log.offset_of(7).unwrap()
    };
    tear_tail(dir.path(), 7);

    let log = open(dir.path());
    assert_eq!(log.index_range(), (0, 7), "entry 7 is gone, 0..=6 remain");
    assert_eq!(log.log().log_end_offset(), removed_offset);
    let entries = log.read_entries(0, 100).unwrap();
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[6].log_id, log_id(2, 3, 6));
    // The index is free again and maps to the same offset.
    log.append_entries(&[normal(2, 3, 7, 2)]).unwrap();
    assert_eq!(log.offset_of(7), Some(removed_offset));

    // A torn tail that took a term's first entry also takes its epoch: a different leader
    // may write that index next.
    let cut = {
        drop(log);
        let log = open(dir.path());
        log.append_entries(&[normal(5, 1, 8, 1)]).unwrap();
        log.offset_of(8).unwrap()
    };
    tear_tail(dir.path(), 3);
    let log = open(dir.path());
    assert_eq!(log.log().log_end_offset(), cut);
    log.append_entries(&[blank(6, 2, 8)]).unwrap();
    assert_eq!(log.read_entries(8, 9).unwrap()[0].log_id, log_id(6, 2, 8));
}

#[test]
fn a_purge_past_the_log_end_restarts_the_log_where_the_snapshot_says() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append_entries(&six_entries()).unwrap();
        // openraft purges past the log end before its state machine worker installs the
        // snapshot: until that says where the leader's log continues, nothing can append.
        log.purge_entries(log_id(3, 2, 20)).unwrap();
        assert!(log.append_entries(&[normal(3, 2, 21, 2)]).is_err());
        // The snapshot up to index 20 comes from a leader whose log continues at 500.
        log.install_snapshot_log(log_id(3, 2, 20), 500, None)
            .unwrap();
        assert_eq!(log.log().log_start_offset(), 500);
        assert_eq!(log.log().log_end_offset(), 500);
        assert!(log.read_entries(0, 100).unwrap().is_empty());
        log.append_entries(&[normal(3, 2, 21, 2)]).unwrap();
        assert_eq!(log.offset_of(21), Some(500));
    }
    let log = open(dir.path());
    assert_eq!(log.index_range(), (21, 22));
    assert_eq!(log.offset_of(21), Some(500));
    assert_eq!(
        log.read_entries(0, 100).unwrap()[0].log_id,
        log_id(3, 2, 21)
    );
}

#[test]
fn a_payload_that_is_not_one_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&[blank(1, 1, 0)]).unwrap();
    let mut two = batch(1, 10, 0);
    two.extend(batch(1, 10, 0));
    let bad = Entry {
        log_id: log_id(1, 1, 2),
        payload: EntryPayload::Normal(Command(two)),
    };
    assert!(
        log.append_entries(&[normal(1, 1, 1, 1), bad, blank(2, 2, 3)])
            .is_err()
    );
    assert_eq!(log.index_range(), (0, 1));
    assert_eq!(log.log().log_end_offset(), 0);
    drop(log);
    assert_eq!(
        open(dir.path()).index_range(),
        (0, 1),
        "no side entry either"
    );
}

#[test]
fn a_snapshot_installed_before_the_purge_resets_the_log_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&six_entries()).unwrap();
    log.install_snapshot_log(log_id(3, 2, 30), 900, None)
        .unwrap();
    assert_eq!(
        log.log().log_end_offset(),
        15,
        "a hint alone changes nothing"
    );
    log.purge_entries(log_id(3, 2, 30)).unwrap();
    assert_eq!(log.log().log_start_offset(), 900);
    log.append_entries(&[normal(3, 2, 31, 2)]).unwrap();
    assert_eq!(log.offset_of(31), Some(900));
}

#[test]
fn a_crash_before_the_snapshot_install_leaves_the_old_log_for_the_purge_to_redo() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append_entries(&six_entries()).unwrap();
        // Past the log end, before the install: nothing is durable yet.
        log.purge_entries(log_id(3, 2, 20)).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.index_range(), (0, 6), "the old log, as it was");
    assert_eq!(log.last_purged(), None);
    // What happens after the install: the adapter's open finds the snapshot file, openraft
    // purges through the snapshot's last entry ("the hole" between log and snapshot).
    log.install_snapshot_log(log_id(3, 2, 20), 700, None)
        .unwrap();
    log.purge_entries(log_id(3, 2, 20)).unwrap();
    log.append_entries(&[normal(3, 2, 21, 2)]).unwrap();
    assert_eq!(log.offset_of(21), Some(700));
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.offset_of(21), Some(700));
    assert_eq!(log.last_purged(), Some(log_id(3, 2, 20)));
    assert_eq!(
        log.read_entries(0, 100).unwrap().len(),
        1,
        "no side entry of the old log"
    );
}

#[test]
fn a_limited_read_stops_after_the_entry_that_reaches_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&six_entries()).unwrap();
    let all = log.read_entries(0, 6).unwrap();
    // Batches of entries 1..=5; the blank entry 0 has none and counts nothing.
    let sizes: Vec<usize> = stored_batches(&log).iter().map(|b| b.3.len()).collect();
    assert_eq!(
        log.read_entries_limited(0, 6, 1).unwrap(),
        all[..2],
        "one batch at least"
    );
    let two = sizes[0] + sizes[1];
    assert_eq!(log.read_entries_limited(0, 6, two).unwrap(), all[..3]);
    assert_eq!(log.read_entries_limited(0, 6, two + 1).unwrap(), all[..4]);
    assert_eq!(
        log.read_entries_limited(2, 6, usize::MAX).unwrap(),
        all[2..]
    );
}

/// DeleteRecords on a partition group: the log start moves inside the log (here into
/// entry 3's batch, offsets 6..=8) while Raft keeps every entry, so a lagging replica is
/// still sent entries below it; reopening accepts a log start above the first entry; a
/// later purge deletes below it.
#[tokio::test]
async fn a_raised_log_start_hides_offsets_from_readers_but_not_entries_from_raft() {
    let dir = tempfile::tempdir().unwrap();
    let stored = {
        let log = open(dir.path());
        log.append_entries(&six_entries()).unwrap();
        let stored = log.read_entries(0, 100).unwrap();
        assert_eq!(log.log().raise_log_start(7).unwrap(), 7);
        let options = ReadOptions {
            max_bytes: usize::MAX,
            min_one_batch: true,
            upper_bound: None,
        };
        assert!(log.log().read(5, options).is_err());
        assert_eq!(
            log.read_entries(0, 100).unwrap(),
            stored,
            "Raft still reads every entry"
        );
        stored
    };
    let log = open(dir.path());
    assert_eq!(log.log().log_start_offset(), 7, "kept across a restart");
    assert_eq!(log.read_entries(0, 100).unwrap(), stored);
    // Raft purges through entry 2 (offsets 3..=5): the start stays where it was raised.
    log.purge_entries(log_id(1, 1, 2)).unwrap();
    assert_eq!(log.log().log_start_offset(), 7);
    assert_eq!(
        log.read_entries(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    drop(log);
    assert_eq!(open(dir.path()).log().log_start_offset(), 7);
}
