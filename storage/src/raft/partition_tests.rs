//! The partition log store on its own: entries by index over real segment files, restart,
//! a torn tail, purge past the log end (snapshot reset), and what the batches look like.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, Membership};

use super::control_batch::{self, LEADER_CHANGE_TYPE, MEMBERSHIP_TYPE};
use super::partition_log_store::PartitionLogStore;
use super::partition_store::PartitionRaftLog;
use super::partition_suite::small_segments;
use super::types::{Command, Entry, LogId, Vote};
use crate::log::ReadOptions;
use crate::log::batch::{BatchHeader, Batches};
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

/// Blank at 0 (term 1, leader 1), then normal entries 1..=5 of 3 records each.
fn six_entries() -> Vec<Entry> {
    let mut entries = vec![blank(1, 1, 0)];
    entries.extend((1..=5).map(|i| normal(1, 1, i, 3)));
    entries
}

#[test]
fn entries_map_to_batches_at_offsets_that_count_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&six_entries()).unwrap();

    // Offsets count records: the blank control batch takes 1, each normal batch 3.
    let batches = stored_batches(&log);
    let bases: Vec<i64> = batches.iter().map(|b| b.0).collect();
    assert_eq!(bases, vec![0, 1, 4, 7, 10, 13]);
    assert!(batches.iter().all(|b| b.1 == 1), "epoch = term");
    assert_eq!(
        batches[0].2 & 0x20,
        0x20,
        "the blank entry is a control batch"
    );
    assert_eq!(
        control_batch::control_record(&batches[0].3).unwrap().0,
        LEADER_CHANGE_TYPE
    );
    assert!(batches[1..].iter().all(|b| b.2 & 0x20 == 0));
    assert_eq!(log.offset_of(3), Some(7));
    assert_eq!(log.offset_after(5), Some(16));

    // Reading a range returns the stored batches as the entries' payloads.
    let entries = log.read_entries(2, 4).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].log_id, log_id(1, 1, 2));
    let EntryPayload::Normal(command) = &entries[1].payload else {
        panic!("entry 3 should be normal");
    };
    assert_eq!(command.0, batches[3].3);
    assert_eq!(BatchHeader::parse(&command.0).unwrap().base_offset, 7);
    // Out-of-range parts of a range are simply not there.
    assert_eq!(log.read_entries(4, 100).unwrap().len(), 2);
    assert!(log.read_entries(6, 10).unwrap().is_empty());

    // A membership entry is a control batch too.
    let members = Membership::new(vec![[1, 2, 3].into()], None);
    log.append_entries(&[Entry {
        log_id: log_id(2, 3, 6),
        payload: EntryPayload::Membership(members.clone()),
    }])
    .unwrap();
    let last = stored_batches(&log).pop().unwrap();
    assert_eq!((last.0, last.1, last.2 & 0x20), (16, 2, 0x20));
    assert_eq!(
        control_batch::control_record(&last.3).unwrap().0,
        MEMBERSHIP_TYPE
    );
    let read = log.read_entries(6, 7).unwrap();
    assert_eq!(
        read[0].log_id,
        log_id(2, 3, 6),
        "leader of term 2 from the epoch cache"
    );
    assert_eq!(read[0].payload, EntryPayload::Membership(members));
}

#[tokio::test]
async fn truncate_and_purge_move_the_log_end_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut store = PartitionLogStore::new(log.clone());
    log.append_entries(&six_entries()).unwrap();

    // Truncate since 4: entries 4 and 5 and their batches are gone; a new leader's entry
    // takes index 4 and offset 10 with its own term as the epoch.
    log.truncate_entries(4).unwrap();
    assert_eq!(log.log().log_end_offset(), 10);
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 3))
    );
    log.append_entries(&[blank(3, 2, 4)]).unwrap();
    let batches = stored_batches(&log);
    assert_eq!(batches.last().map(|b| (b.0, b.1)), Some((10, 3)));
    assert_eq!(log.read_entries(4, 5).unwrap()[0].log_id, log_id(3, 2, 4));

    // Purge up to 2: the log starts at entry 3's offset; reads begin there.
    log.purge_entries(log_id(1, 1, 2)).unwrap();
    assert_eq!(log.log().log_start_offset(), 7);
    let entries = log.read_entries(0, 100).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(3, 2, 4)));

    // The high watermark is the offset after the last committed batch.
    store.save_committed(Some(log_id(1, 1, 3))).await.unwrap();
    assert_eq!(log.high_watermark(), 10);
    store.save_committed(Some(log_id(3, 2, 4))).await.unwrap();
    assert_eq!(log.high_watermark(), 11);
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
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(4, 2, 7)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
    assert_eq!(log.high_watermark(), log.offset_after(6).unwrap());
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
    // Cut the last segment file in the middle of the last batch (no clean close: the next
    // open scans and truncates the torn tail).
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

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
        log.append_entries(&[blank(5, 1, 8)]).unwrap();
        log.offset_of(8).unwrap()
    };
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
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
        log_id: log_id(1, 1, 1),
        payload: EntryPayload::Normal(Command(two)),
    };
    assert!(log.append_entries(&[normal(1, 1, 1, 1), bad]).is_err());
    assert_eq!(log.index_range(), (0, 1));
    assert_eq!(log.log().log_end_offset(), 1);
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
        16,
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
}

#[test]
fn a_limited_read_stops_after_the_entry_that_reaches_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&six_entries()).unwrap();
    let all = log.read_entries(0, 6).unwrap();
    let sizes: Vec<usize> = stored_batches(&log).iter().map(|b| b.3.len()).collect();
    assert_eq!(
        log.read_entries_limited(0, 6, 1).unwrap(),
        all[..1],
        "one entry at least"
    );
    let two = sizes[0] + sizes[1];
    assert_eq!(log.read_entries_limited(0, 6, two).unwrap(), all[..2]);
    assert_eq!(log.read_entries_limited(0, 6, two + 1).unwrap(), all[..3]);
    assert_eq!(
        log.read_entries_limited(2, 6, usize::MAX).unwrap(),
        all[2..]
    );
}

/// DeleteRecords on a partition group: the log start moves inside the log (here into
/// entry 3's batch, offsets 7..=9) while Raft keeps every entry, so a lagging replica is
/// still sent entries below it; reopening accepts a log start above the first entry; a
/// later purge deletes below it.
#[tokio::test]
async fn a_raised_log_start_hides_offsets_from_readers_but_not_entries_from_raft() {
    let dir = tempfile::tempdir().unwrap();
    let stored = {
        let log = open(dir.path());
        log.append_entries(&six_entries()).unwrap();
        let stored = log.read_entries(0, 100).unwrap();
        assert_eq!(log.log().raise_log_start(8).unwrap(), 8);
        let options = ReadOptions {
            max_bytes: usize::MAX,
            min_one_batch: true,
            upper_bound: None,
        };
        assert!(log.log().read(6, options).is_err());
        assert_eq!(
            log.read_entries(0, 100).unwrap(),
            stored,
            "Raft still reads every entry"
        );
        stored
    };
    let log = open(dir.path());
    assert_eq!(log.log().log_start_offset(), 8, "kept across a restart");
    assert_eq!(log.read_entries(0, 100).unwrap(), stored);
    // Raft purges through entry 2 (offsets 4..=6): the start stays where it was raised.
    log.purge_entries(log_id(1, 1, 2)).unwrap();
    assert_eq!(log.log().log_start_offset(), 8);
    assert_eq!(
        log.read_entries(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    drop(log);
    assert_eq!(open(dir.path()).log().log_start_offset(), 8);
}

#[test]
fn a_log_start_entry_is_a_command_stored_as_proposed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&six_entries()).unwrap();
    let command = control_batch::log_start_command(12);
    let entry = Entry {
        log_id: log_id(1, 1, 6),
        payload: EntryPayload::Normal(Command(command.clone())),
    };
    log.append_entries(std::slice::from_ref(&entry)).unwrap();
    let stored = log.read_entries(6, 7).unwrap();
    let EntryPayload::Normal(Command(batch)) = &stored[0].payload else {
        panic!(
            "a log-start entry reads back as a normal entry: {:?}",
            stored[0]
        );
    };
    assert_eq!(control_batch::log_start_of(batch), Some(12));
    assert!(control_batch::is_control(batch), "consumers skip it");
}
