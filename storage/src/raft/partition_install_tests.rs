//! Snapshot install on a partition log: a replica ends up holding the batches the sender
//! retained below the snapshot, byte for byte at the same offsets, after any order of
//! purge and install, after a crash inside the install, and retention then deletes them
//! locally. Also through the state machine adapter, as openraft drives it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Write;
use std::sync::Arc;

use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftStateMachine;
use redb::Durability;

use super::partition_index::{Anchor, Epoch};
use super::partition_retained::BatchSource;
use super::partition_snapshot::{PartitionSnapshot, RetainedHeader};
use super::partition_store::{ANCHOR, EPOCHS, LAST_PURGED, PartitionRaftLog};
use super::partition_tests::{blank, log_id, normal, open, stored_batches};
use super::snapshot_files;
use super::state_machine::{GroupStateMachine, SnapshotSource, StateMachine};
use super::types::{Entry, LogId};

/// Entries 0..=9: term 1 led by node 1 (0..=4), term 2 led by node 3 (5..=9). Offsets
/// (the blank entries 0 and 5 are side entries, at 0 and 12, taking none):
/// - | 0-2 | 3-5 | 6-8 | 9-11 | - | 12-13 | 14-15 | 16-17 | 18-19, log end 20.
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

/// A leader that purged through entry 3 (retention): it retains 4..=9, offsets 9..20.
fn leader(dir: &std::path::Path) -> Arc<PartitionRaftLog> {
    let log = open(dir);
    log.append_entries(&ten_entries()).unwrap();
    log.purge_entries(log_id(1, 1, 3)).unwrap();
    assert_eq!(log.log().log_start_offset(), 9);
    log
}

/// The retained header and batches a snapshot through [`last`] carries.
type Retained = (RetainedHeader, Vec<u8>);

fn retained(leader: &PartitionRaftLog) -> Retained {
    let plan = leader.retained_plan(last().index).unwrap();
    assert_eq!(plan.header.first_index, 4);
    assert_eq!(plan.header.first_offset, 9);
    assert_eq!(plan.upper, 20);
    assert_eq!(
        plan.header.side.keys().copied().collect::<Vec<_>>(),
        vec![5],
        "term 2's blank entry, which has no batch"
    );
    assert_eq!(plan.header.side[&5].position, 12);
    assert_eq!(
        plan.header
            .epochs
            .iter()
            .map(|e| e.term)
            .collect::<Vec<_>>(),
        vec![1, 2],
        "the epochs of the retained entries, the first one's included"
    );
    let mut batches = Vec::new();
    let copied = leader.copy_retained(&plan, &mut batches).unwrap();
    assert_eq!(copied, batches.len() as u64);
    (plan.header, batches)
}

fn install(
    replica: &PartitionRaftLog,
    last: LogId,
    next_offset: i64,
    (header, batches): &Retained,
) -> Result<(), super::partition_store::PartitionStoreError> {
    let batches: &[u8] = batches;
    replica.install_snapshot_log(
        last,
        next_offset,
        Some((header, &batches as &dyn BatchSource)),
    )
}

/// What the replica must hold after the install: the leader's batches and entries.
fn assert_holds_what_the_leader_retains(replica: &PartitionRaftLog, leader: &PartitionRaftLog) {
    assert_eq!(replica.log().log_start_offset(), 9);
    assert_eq!(replica.log().log_end_offset(), 20);
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
    assert_eq!(replica.epoch_end(1), Some((1, 12)));
    assert_eq!(
        (4..10).map(|i| replica.offset_of(i)).collect::<Vec<_>>(),
        (4..10).map(|i| leader.offset_of(i)).collect::<Vec<_>>(),
        "every entry at the leader's position"
    );
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
        install(&replica, last(), 20, &retained).unwrap();
        assert_holds_what_the_leader_retains(&replica, &leader);
        replica.append_entries(&[normal(2, 3, 10, 1)]).unwrap();
        assert_eq!(replica.offset_of(10), Some(20));
    }
    let replica = open(replica_dir.path());
    assert_eq!(replica.index_range(), (4, 11));
    assert_eq!(replica.last_purged(), Some(last()));
    assert_eq!(replica.read_entries(4, 11).unwrap().len(), 7);
    // And it can send the same batches on, as a leader.
    assert_eq!(self::retained(&replica), retained);
}

#[test]
fn an_install_before_the_purge_keeps_the_retained_batches() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    let replica = open(replica_dir.path());
    replica.append_entries(&ten_entries()[..2]).unwrap();
    install(&replica, last(), 20, &retained).unwrap();
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
                    (EPOCHS, serde_json::to_vec(&retained.0.epochs).unwrap()),
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
    install(&replica, last(), 20, &retained).unwrap();
    assert_holds_what_the_leader_retains(&replica, &leader);
}

#[test]
fn retention_below_the_purge_point_deletes_locally_and_stops_at_it() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let retained = retained(&leader);
    {
        let replica = open(replica_dir.path());
        install(&replica, last(), 20, &retained).unwrap();
        replica
            .append_entries(&[normal(2, 3, 10, 1), normal(2, 3, 11, 1)])
            .unwrap();
        // Entries 4..=6 end at 14 (5 is the blank entry, at 12).
        assert!(replica.discard_purged_below(14).unwrap());
        assert_eq!(replica.log().log_start_offset(), 14);
        assert_eq!(replica.index_range(), (7, 12));
        // Entries 10 and 11 lie below 22 too, but Raft has not purged them: it may still
        // send them to a follower.
        assert!(replica.discard_purged_below(22).unwrap());
        assert_eq!(replica.index_range(), (10, 12));
        assert_eq!(replica.log().log_start_offset(), 20);
        assert!(
            !replica.discard_purged_below(22).unwrap(),
            "nothing left to do"
        );
    }
    let replica = open(replica_dir.path());
    assert_eq!(replica.index_range(), (10, 12));
    assert_eq!(replica.log().log_start_offset(), 20);
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
    wrong_epochs.0.epochs = vec![Epoch {
        term: 5,
        leader: 2,
        first_index: 0,
    }];
    let mut cut = retained.clone();
    cut.1.truncate(cut.1.len() - 1);
    let mut side_moved = retained.clone();
    side_moved.0.side.get_mut(&5).unwrap().position = 13;
    let mut side_lost = retained.clone();
    side_lost.0.side.clear();
    let mut side_outside = retained.clone();
    let blank = side_outside.0.side[&5].clone();
    side_outside.0.side.insert(12, blank);
    let cases = [
        (
            "one entry more than the batches",
            log_id(2, 3, 10),
            20,
            &retained,
        ),
        ("the log continuing elsewhere", last(), 21, &retained),
        ("epochs the batches do not have", last(), 20, &wrong_epochs),
        ("a cut last batch", last(), 20, &cut),
        ("a side entry off its position", last(), 20, &side_moved),
        ("a side entry missing", last(), 20, &side_lost),
        ("a side entry past the snapshot", last(), 20, &side_outside),
    ];
    for (what, last, next, retained) in cases {
        assert!(
            install(&replica, last, next, retained).is_err(),
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

    fn snapshot_to(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(serde_json::to_writer(out, &self.0)?)
    }

    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0 = serde_json::from_reader(snapshot)?;
        Ok(())
    }
}

/// A leader's state machine adapter over [`leader`]'s log, snapshotted after entry 9.
async fn leader_machine(dir: &std::path::Path) -> (Arc<PartitionRaftLog>, GroupStateMachine) {
    let log = open(dir);
    log.append_entries(&ten_entries()).unwrap();
    let mut machine =
        GroupStateMachine::open_partition(dir, Box::<Applied>::default(), log.clone()).unwrap();
    machine.apply(ten_entries()).await.unwrap();
    machine.build_snapshot().await.unwrap();
    log.purge_entries(log_id(1, 1, 3)).unwrap();
    (log, machine)
}

/// A snapshot's data, read from the file openraft would send.
async fn data_of(snapshot: openraft::Snapshot<super::types::TypeConfig>) -> Vec<u8> {
    let mut file = snapshot.snapshot.into_std().await;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut data).unwrap();
    data
}

/// The state [`Applied`] restored from a replica's kept snapshot.
async fn applied_of(machine: &mut GroupStateMachine) -> Vec<u64> {
    let snapshot = machine.get_current_snapshot().await.unwrap().unwrap();
    let data = data_of(snapshot).await;
    let kept = PartitionSnapshot::read(&mut std::io::Cursor::new(&data)).unwrap();
    assert_eq!(
        kept.retained, None,
        "a replica keeps no batches in its snapshot"
    );
    serde_json::from_slice(&kept.state).unwrap()
}

fn open_replica(dir: &std::path::Path) -> (Arc<PartitionRaftLog>, GroupStateMachine) {
    let log = open(dir);
    let machine =
        GroupStateMachine::open_partition(dir, Box::<Applied>::default(), log.clone()).unwrap();
    (log, machine)
}

#[tokio::test]
async fn a_snapshot_sent_to_a_replica_carries_the_retained_batches() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader_log, mut leader) = leader_machine(leader_dir.path()).await;

    let plain = data_of(leader.get_current_snapshot().await.unwrap().unwrap()).await;
    assert_eq!(
        PartitionSnapshot::read(&mut std::io::Cursor::new(&plain))
            .unwrap()
            .retained,
        None,
        "not attached while the group opens"
    );
    leader.attach_retained().await;
    let sent = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(sent.meta.last_log_id, Some(last()));
    let meta = sent.meta.clone();
    let data = data_of(sent).await;
    let parsed = PartitionSnapshot::read(&mut std::io::Cursor::new(&data)).unwrap();
    assert_eq!(parsed.next_offset, 20);
    assert_eq!(
        parsed
            .retained
            .as_ref()
            .map(|(header, _, _)| header.first_offset),
        Some(9)
    );

    {
        let (replica_log, mut replica) = open_replica(replica_dir.path());
        // As openraft receives it: into the file the adapter hands out, then installed.
        let mut receiving = replica
            .begin_receiving_snapshot()
            .await
            .unwrap()
            .into_std()
            .await;
        receiving.write_all(&data).unwrap();
        replica
            .install_snapshot(&meta, Box::new(tokio::fs::File::from_std(receiving)))
            .await
            .unwrap();
        assert_holds_what_the_leader_retains(&replica_log, &leader_log);
        assert_eq!(applied_of(&mut replica).await, vec![1, 2, 3, 4, 6, 7, 8, 9]);
    }
    // Kept without the batches, which the log holds; the received file is gone.
    let kept = std::fs::metadata(replica_dir.path().join("snapshot.bin")).unwrap();
    assert!(
        kept.len() < 300,
        "the kept snapshot is {} bytes",
        kept.len()
    );
    assert!(!replica_dir.path().join("snapshot.recv").exists());
    let (replica_log, mut replica) = open_replica(replica_dir.path());
    assert_holds_what_the_leader_retains(&replica_log, &leader_log);
    let (applied, _) = replica.applied_state().await.unwrap();
    assert_eq!(applied, Some(last()));
    assert_eq!(applied_of(&mut replica).await, vec![1, 2, 3, 4, 6, 7, 8, 9]);
}

#[tokio::test]
async fn an_install_a_crash_cut_short_is_finished_on_open() {
    let (leader_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader_log, leader) = leader_machine(leader_dir.path()).await;
    leader.attach_retained().await;
    let sent = leader
        .clone()
        .get_current_snapshot()
        .await
        .unwrap()
        .unwrap();
    let meta = sent.meta.clone();
    let data = data_of(sent).await;
    {
        let (replica_log, _replica) = open_replica(replica_dir.path());
        replica_log.append_entries(&ten_entries()[..2]).unwrap();
        // Received and made durable, then the crash, before the log was touched.
        let mut receiving = snapshot_files::receiving_file(replica_dir.path()).unwrap();
        receiving.write_all(&data).unwrap();
        snapshot_files::keep_received(replica_dir.path(), &receiving, &meta).unwrap();
    }
    let (replica_log, mut replica) = open_replica(replica_dir.path());
    assert_holds_what_the_leader_retains(&replica_log, &leader_log);
    assert_eq!(replica.applied_state().await.unwrap().0, Some(last()));
    assert_eq!(applied_of(&mut replica).await, vec![1, 2, 3, 4, 6, 7, 8, 9]);
    assert!(!replica_dir.path().join("snapshot.recv.meta").exists());
}
