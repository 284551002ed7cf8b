//! Dense offsets on a partition group's log: Raft's own entries and log-start moves are
//! side entries that take no offset (see `partition_side`), across a restart, a crash that
//! took a batch before them, and apply; and a partition the old format wrote is refused.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, Membership};

use super::control_batch;
use super::partition_store::{PartitionRaftLog, PartitionStoreError};
use super::partition_suite::small_segments;
use super::partition_tests::{blank, log_id, normal, open, six_entries, stored_batches};
use super::state_machine::{GroupStateMachine, StateMachine};
use super::types::{Command, Entry};
use crate::log::PartitionLog;
use crate::log::batch::BatchHeader;
use crate::log::tests::support::batch;

fn membership(term: u64, node: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, node, index),
        payload: EntryPayload::Membership(Membership::new(vec![[1, 2, 3].into()], None)),
    }
}

/// A commit marker of producer 42, as the transaction coordinator proposes it.
fn marker(term: u64, node: u64, index: u64) -> Entry {
    let mut batch = control_batch::control_batch(control_batch::COMMIT_MARKER_TYPE, &[0; 6]);
    batch[21..23].copy_from_slice(&0x30i16.to_be_bytes());
    batch[43..51].copy_from_slice(&42i64.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Entry {
        log_id: log_id(term, node, index),
        payload: EntryPayload::Normal(Command(batch)),
    }
}

#[test]
fn offsets_count_records_only_and_raft_entries_take_none() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // As a fresh group's log starts: the initial membership, the first leader's blank.
    log.append_entries(&[membership(0, 0, 0), blank(1, 1, 1)])
        .unwrap();
    assert_eq!(log.log().log_end_offset(), 0, "no offset taken yet");
    log.append_entries(&[normal(1, 1, 2, 3), normal(1, 1, 3, 2)])
        .unwrap();
    // A leader change and a membership change in between, then a marker and more records.
    log.append_entries(&[
        blank(2, 3, 4),
        membership(2, 3, 5),
        normal(2, 3, 6, 4),
        marker(2, 3, 7),
        normal(2, 3, 8, 1),
    ])
    .unwrap();

    let batches = stored_batches(&log);
    let bases: Vec<i64> = batches.iter().map(|b| b.0).collect();
    assert_eq!(bases, vec![0, 3, 5, 9, 10], "dense: records and the marker");
    assert_eq!(log.log().log_end_offset(), 11);
    assert_eq!(
        batches.iter().map(|b| b.1).collect::<Vec<_>>(),
        vec![1, 1, 2, 2, 2],
        "epoch = term"
    );
    assert_eq!(
        batches.iter().map(|b| b.2 & 0x20).collect::<Vec<_>>(),
        vec![0, 0, 0, 0x20, 0],
        "the marker is the only control batch"
    );
    // Each entry's position; the side entries sit where the next batch starts.
    assert_eq!(
        (0..10).map(|i| log.offset_of(i)).collect::<Vec<_>>(),
        [0, 0, 0, 3, 5, 5, 5, 9, 10]
            .into_iter()
            .map(Some)
            .chain([None])
            .collect::<Vec<_>>()
    );
    assert_eq!(log.offset_after(5), Some(5));
    assert_eq!(log.offset_after(8), Some(11));
    assert_eq!(log.epoch_end(1), Some((1, 5)), "term 2 starts at offset 5");

    // Reading a range returns side entries as they were and stored batches as payloads.
    let entries = log.read_entries(3, 7).unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries[1].log_id,
        log_id(2, 3, 4),
        "leader from the epoch cache"
    );
    assert_eq!(entries[1].payload, EntryPayload::Blank);
    assert_eq!(entries[2].payload, membership(2, 3, 5).payload);
    let EntryPayload::Normal(command) = &entries[3].payload else {
        panic!("entry 6 should be normal");
    };
    assert_eq!(command.0, batches[2].3);
    assert_eq!(BatchHeader::parse(&command.0).unwrap().base_offset, 5);
    // Out-of-range parts of a range are simply not there.
    assert_eq!(log.read_entries(7, 100).unwrap().len(), 2);
    assert!(log.read_entries(9, 10).unwrap().is_empty());

    // The same after a restart: the side entries come back from the metadata file.
    let before = log.read_entries(0, 100).unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.read_entries(0, 100).unwrap(), before);
    assert_eq!(log.offset_of(5), Some(5));
    log.append_entries(&[blank(3, 1, 9), normal(3, 1, 10, 2)])
        .unwrap();
    assert_eq!(
        log.offset_of(10),
        Some(11),
        "the sequence goes on after a restart"
    );
}

/// One append writes its side entries before its batches: when a crash takes a batch, the
/// side entries after it are left over in the metadata, and must never be taken for the
/// entries later written at their indexes (here at the very same offset).
#[test]
fn side_entries_behind_a_lost_batch_are_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let log = open(dir.path());
        log.append_entries(&six_entries()).unwrap();
        let end = log.log().log_end_offset();
        log.append_entries(&[normal(2, 3, 6, 2), blank(3, 1, 7), normal(3, 1, 8, 1)])
            .unwrap();
        end
    };
    // The crash took both batches, 6 and 8 (as recovery cuts a torn tail); the blank
    // entry 7 was in the metadata already.
    let raw = PartitionLog::open(&dir.path().join("log"), small_segments()).unwrap();
    raw.truncate_to(end).unwrap();
    raw.close().unwrap();
    drop(raw);
    {
        let log = open(dir.path());
        assert_eq!(log.index_range(), (0, 6), "nothing after the lost batch");
        assert_eq!(log.log().log_end_offset(), end);
        // Another leader writes 6 and 7 as batches, 7 where the old blank entry sat.
        log.append_entries(&[normal(4, 2, 6, 2), normal(4, 2, 7, 1)])
            .unwrap();
        assert_eq!(log.offset_of(7), Some(end + 2));
    }
    let log = open(dir.path());
    assert_eq!(log.index_range(), (0, 8));
    let entry = &log.read_entries(7, 8).unwrap()[0];
    assert_eq!(entry.log_id, log_id(4, 2, 7));
    assert!(
        matches!(entry.payload, EntryPayload::Normal(_)),
        "{entry:?}"
    );
}

/// DeleteRecords writes nothing to a Kafka log: its log-start entry is a side entry, read
/// back as proposed, and the next batch takes the offset after the last record.
#[test]
fn a_log_start_entry_takes_no_offset_and_reads_back_as_proposed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_entries(&six_entries()).unwrap();
    let command = control_batch::log_start_command(12);
    let entry = Entry {
        log_id: log_id(1, 1, 6),
        payload: EntryPayload::Normal(Command(command.clone())),
    };
    log.append_entries(std::slice::from_ref(&entry)).unwrap();
    assert_eq!(log.log().log_end_offset(), 15, "no offset taken");
    assert_eq!(stored_batches(&log).len(), 5);
    assert_eq!(log.offset_of(6), Some(15));
    log.append_entries(&[normal(1, 1, 7, 2)]).unwrap();
    assert_eq!(log.offset_of(7), Some(15));
    drop(log);
    let log = open(dir.path());
    let stored = log.read_entries(6, 7).unwrap();
    assert_eq!(stored, vec![entry]);
}

/// Applying a log-start entry moves every replica's log start, at most to where the entry
/// sits; the caller's state machine never sees it (it is no batch).
#[tokio::test]
async fn an_applied_log_start_entry_moves_the_log_start_and_bypasses_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut entries = six_entries();
    for (index, offset) in [(6, 7), (7, 99)] {
        entries.push(Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(Command(control_batch::log_start_command(offset))),
        });
    }
    entries.push(normal(1, 1, 8, 2));
    log.append_entries(&entries).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let mut machine = GroupStateMachine::open_partition(
        dir.path(),
        Box::new(Recorder(applied.clone())),
        log.clone(),
    )
    .unwrap();
    machine.apply(entries[..7].to_vec()).await.unwrap();
    assert_eq!(log.log().log_start_offset(), 7, "inside entry 3's batch");
    machine.apply(entries[7..].to_vec()).await.unwrap();
    assert_eq!(
        log.log().log_start_offset(),
        15,
        "not past the entry's own position, though it asked for 99"
    );
    assert_eq!(*applied.lock().unwrap(), vec![1, 2, 3, 4, 5, 8]);
}

/// Records the indexes the adapter hands it.
struct Recorder(Arc<Mutex<Vec<u64>>>);

impl StateMachine for Recorder {
    fn apply(&mut self, index: u64, _command: &[u8]) -> Vec<u8> {
        self.0.lock().unwrap().push(index);
        Vec::new()
    }

    fn snapshot_to(
        &self,
        _: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }

    fn restore_from(
        &mut self,
        _: &mut dyn crate::raft::SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// A partition the old format wrote (Raft's own entries as control batches, taking
/// offsets) is refused with a clear error, and nothing of it is changed.
#[test]
fn an_old_format_partition_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = PartitionLog::open(&dir.path().join("log"), small_segments()).unwrap();
        old.append(&mut control_batch::control_batch(2, b"{}"), 1)
            .unwrap();
        old.append(&mut batch(3, 20, 1000), 1).unwrap();
        old.close().unwrap();
    }
    let refused = PartitionRaftLog::open(dir.path(), small_segments());
    assert!(
        matches!(refused, Err(PartitionStoreError::OldFormat(_))),
        "{:?}",
        refused.err()
    );
    let message = PartitionRaftLog::open(dir.path(), small_segments())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("older version"), "{message}");
    let kept = PartitionLog::open(&dir.path().join("log"), small_segments()).unwrap();
    assert_eq!(kept.log_end_offset(), 4, "the old log is left as it was");

    // A new partition is marked on its first open and opens again.
    let new = tempfile::tempdir().unwrap();
    drop(open(new.path()));
    open(new.path()).append_entries(&six_entries()).unwrap();
    assert_eq!(open(new.path()).index_range(), (0, 6));
}
