//! Snapshot install on a partition log: a replica ends up holding the batches the sender
//! retained below the snapshot, byte for byte at the same offsets, after any order of
//! purge and install, after a crash inside the install, and retention then deletes them
//! locally. Also through the state machine adapter, as openraft drives it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Cursor;
use std::sync::Arc;

use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftStateMachine;
use redb::Durability;

use super::partition_index::{Anchor, Epoch};
use super::partition_install::RetainedBatches;
use super::partition_snapshot::PartitionSnapshot;
use super::partition_store::{ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog};
use super::partition_tests::{blank, log_id, normal, open, stored_batches};
use super::state_machine::{GroupStateMachine, StateMachine};
use super::types::{Entry, LogId};

/// Entries 0..=9: term 1 led by node 1 (0..=4), term 2 led by node 3 (5..=9). Offsets:
/// 0 | 1-3 | 4-6 | 7-9 | 10-12 | 13 | 14-15 | 16-17 | 18-19 | 20-21, log end 22.
fn ten_entries() -> Vec<Entry> {
    let mut entries = vec![blank(1, 1, 0)];
    entries.extend((1..=4).map(|i| normal(1, 1, i, 3)));
    entries.push(blank(2, 3, 5));
    entries.extend((6..=9).map(|i| normal(2, 3, i, 2)));
    entries
}

/// The snapshot's last entry.
fn last() -> LogId {
    log_id(2, 3, 9)
}

/// A leader that purged through entry 3 (retention): it retains 4..=9, offsets 10..22.
fn leader(dir: &std::path::Path) -> Arc<PartitionRaftLog> {
    let log = open(dir);
    log.append_entries(&ten_entries()).unwrap();
    log.purge_entries(log_id(1, 1, 3)).unwrap();
    assert_eq!(log.log().log_start_offset(), 10);
    log
}

fn retained(leader: &PartitionRaftLog) -> RetainedBatches {
    let retained = leader.retained_through(last().index).unwrap().unwrap();
    assert_eq!(retained.header.first_index, 4);
    assert_eq!(retained.header.first_offset, 10);
    assert_eq!(
        retained
            .header
            .epochs
            .iter()
            .map(|e| e.term)
            .collect::<Vec<_>>(),
        vec![1, 2],
        "the epochs of the retained entries, the first one's included"
    );
    retained
}

/// What the replica must hold after the install: the leader's batches and entries.
fn assert_holds_what_the_leader_retains(replica: &PartitionRaftLog, leader: &PartitionRaftLog) {
    assert_eq!(replica.log().log_start_offset(), 10);
    assert_eq!(replica.log().log_end_offset(), 22);
    assert_eq!(
        stored_batches(replica),
        stored_batches(leader),
        "byte-identical batches at identical offsets"
    );
    assert_eq!(replica.index_range(), (4, 10));
    assert_eq!(replica.last_purged(), Some(last()));
    assert_eq!(
        replica.read_entries(4, 10).unwrap(),
        leader.read_entries(4, 10).unwrap(),
        "each entry keeps its term and leader"
    );
    assert_eq!(replica.epoch_end(1), leader.epoch_end(1));
}

#[test]
fn a_replica_installs_the_retained_batches_and_continues_after_them() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    {
        let replica = open(replica_dir.path());
        // openraft's purge may come before its state machine worker installs.
        replica.purge_entries(last()).unwrap();
        replica
            .install_snapshot_log(last(), 22, Some(&retained.as_retained()))
            .unwrap();
        assert_holds_what_the_leader_retains(&replica, &leader);
        replica.append_entries(&[normal(2, 3, 10, 1)]).unwrap();
        assert_eq!(replica.offset_of(10), Some(22));
    }
    let replica = open(replica_dir.path());
    assert_eq!(replica.index_range(), (4, 11));
    assert_eq!(replica.last_purged(), Some(last()));
    assert_eq!(replica.read_entries(4, 11).unwrap().len(), 7);
    // And it can send the same batches on, as a leader.
    assert_eq!(replica.retained_through(9).unwrap().unwrap(), retained);
}

#[test]
fn an_install_before_the_purge_keeps_the_retained_batches() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    let replica = open(replica_dir.path());
    replica.append_entries(&ten_entries()[..2]).unwrap();
    replica
        .install_snapshot_log(last(), 22, Some(&retained.as_retained()))
        .unwrap();
    replica.purge_entries(last()).unwrap();
    assert_holds_what_the_leader_retains(&replica, &leader);
}

#[test]
fn a_crash_inside_the_install_is_redone_from_the_snapshot() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    {
        let replica = open(replica_dir.path());
        replica.append_entries(&ten_entries()[..2]).unwrap();
        // Step 1 of the install, then the crash.
        replica
            .write_meta(
                &[
                    (LAST_PURGED, serde_json::to_vec(&last()).unwrap()),
                    (
                        ANCHOR,
                        serde_json::to_vec(&Anchor {
                            index: 4,
                            offset: -1,
                        })
                        .unwrap(),
                    ),
                    (EPOCHS, serde_json::to_vec(&retained.header.epochs).unwrap()),
                ],
                Durability::Immediate,
            )
            .unwrap();
    }
    let replica = open(replica_dir.path());
    assert!(
        replica.append_entries(&[normal(2, 3, 10, 1)]).is_err(),
        "nothing appends while the install is pending"
    );
    assert_eq!(replica.high_watermark(), replica.log().log_start_offset());
    replica
        .install_snapshot_log(last(), 22, Some(&retained.as_retained()))
        .unwrap();
    assert_holds_what_the_leader_retains(&replica, &leader);
}

#[test]
fn retention_below_the_purge_point_deletes_locally_and_stops_at_it() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    {
        let replica = open(replica_dir.path());
        replica
            .install_snapshot_log(last(), 22, Some(&retained.as_retained()))
            .unwrap();
        replica
            .append_entries(&[normal(2, 3, 10, 1), normal(2, 3, 11, 1)])
            .unwrap();
        // Entries 4..=6 end at 16.
        assert!(replica.discard_purged_below(16).unwrap());
        assert_eq!(replica.log().log_start_offset(), 16);
        assert_eq!(replica.index_range(), (7, 12));
        // Entries 10 and 11 lie below 24 too, but Raft has not purged them: it may still
        // send them to a follower.
        assert!(replica.discard_purged_below(24).unwrap());
        assert_eq!(replica.index_range(), (10, 12));
        assert_eq!(replica.log().log_start_offset(), 22);
        assert!(
            !replica.discard_purged_below(24).unwrap(),
            "nothing left to do"
        );
    }
    let replica = open(replica_dir.path());
    assert_eq!(replica.index_range(), (10, 12));
    assert_eq!(replica.log().log_start_offset(), 22);
    assert_eq!(replica.read_entries(10, 12).unwrap().len(), 2);
}

#[test]
fn retained_batches_that_do_not_match_the_snapshot_change_nothing() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    let replica = open(replica_dir.path());
    replica.append_entries(&ten_entries()[..2]).unwrap();
    let before = stored_batches(&replica);

    let mut wrong_epochs = retained.clone();
    wrong_epochs.header.epochs = vec![Epoch {
        term: 5,
        leader: 2,
        first_index: 0,
    }];
    let mut cut = retained.clone();
    cut.batches.truncate(cut.batches.len() - 1);
    let cases = [
        (
            "one entry more than the batches",
            log_id(2, 3, 10),
            22,
            &retained,
        ),
        ("the log continuing elsewhere", last(), 23, &retained),
        ("epochs the batches do not have", last(), 22, &wrong_epochs),
        ("a cut last batch", last(), 22, &cut),
    ];
    for (what, last, next, retained) in cases {
        assert!(
            replica
                .install_snapshot_log(last, next, Some(&retained.as_retained()))
                .is_err(),
            "{what} is refused"
        );
        assert_eq!(stored_batches(&replica), before, "{what} changed the log");
        assert_eq!(replica.index_range(), (0, 2));
        assert_eq!(replica.last_purged(), None);
    }
}

/// Keeps the indexes it applied, so a restore can be checked.
#[derive(Default)]
struct Applied(Vec<u64>);

impl StateMachine for Applied {
    fn apply(&mut self, index: u64, _command: &[u8]) -> Vec<u8> {
        self.0.push(index);
        Vec::new()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0 = serde_json::from_slice(snapshot)?;
        Ok(())
    }
}

#[tokio::test]
async fn a_snapshot_sent_to_a_replica_carries_the_retained_batches() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_log = open(leader_dir.path());
    leader_log.append_entries(&ten_entries()).unwrap();
    let mut leader = GroupStateMachine::open_partition(
        leader_dir.path(),
        Box::<Applied>::default(),
        leader_log.clone(),
    )
    .unwrap();
    leader.apply(ten_entries()).await.unwrap();
    leader.build_snapshot().await.unwrap();
    leader_log.purge_entries(log_id(1, 1, 3)).unwrap();

    let plain = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(
        PartitionSnapshot::parse(plain.snapshot.get_ref())
            .unwrap()
            .retained,
        None,
        "not attached while the group opens"
    );
    leader.attach_retained().await;
    let sent = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(sent.meta.last_log_id, Some(last()));
    let parsed = PartitionSnapshot::parse(sent.snapshot.get_ref()).unwrap();
    assert_eq!(parsed.next_offset, 22);
    assert_eq!(
        parsed.retained.as_ref().map(|r| r.header.first_offset),
        Some(10)
    );

    {
        let replica_log = open(replica_dir.path());
        let mut replica = GroupStateMachine::open_partition(
            replica_dir.path(),
            Box::<Applied>::default(),
            replica_log.clone(),
        )
        .unwrap();
        replica
            .install_snapshot(
                &sent.meta,
                Box::new(Cursor::new(sent.snapshot.into_inner())),
            )
            .await
            .unwrap();
        assert_holds_what_the_leader_retains(&replica_log, &leader_log);
    }
    // Kept without the batches, which the log holds; a reopen finds the same log and state.
    let kept = std::fs::metadata(replica_dir.path().join("snapshot.bin")).unwrap();
    assert!(
        kept.len() < 200,
        "the kept snapshot is {} bytes",
        kept.len()
    );
    let replica_log = open(replica_dir.path());
    let mut replica = GroupStateMachine::open_partition(
        replica_dir.path(),
        Box::<Applied>::default(),
        replica_log.clone(),
    )
    .unwrap();
    assert_holds_what_the_leader_retains(&replica_log, &leader_log);
    let (applied, _) = replica.applied_state().await.unwrap();
    assert_eq!(applied, Some(last()));
    let snapshot = replica.get_current_snapshot().await.unwrap().unwrap();
    let state = PartitionSnapshot::parse(snapshot.snapshot.get_ref())
        .unwrap()
        .state
        .to_vec();
    let indexes: Vec<u64> = serde_json::from_slice(&state).unwrap();
    assert_eq!(indexes, vec![1, 2, 3, 4, 6, 7, 8, 9], "the leader's state");
}
