//! The state machine adapter's snapshots of a plain group (controller, service): streamed to
//! and from files, installed on an empty replica, and crash-safe on install.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use super::snapshot_files::{self, DATA_BUFFER};
use super::state_machine::{GroupStateMachine, SnapshotSource, StateMachine};
use super::types::{Command, Entry, LogId, SnapshotMeta, StoredMembership};

type Shared = Arc<Mutex<Vec<u8>>>;

/// Its state is every command's bytes, concatenated; its snapshot is the state, written in
/// pieces. Records how much of it was on disk halfway through a snapshot.
#[derive(Default)]
struct Blob {
    state: Shared,
    /// The group directory, to look at the data file while a snapshot is written.
    dir: PathBuf,
    on_disk_halfway: Arc<Mutex<Option<u64>>>,
    refuse_restore: bool,
}

const PIECE: usize = 16 * 1024;

impl StateMachine for Blob {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        self.state.lock().unwrap().extend_from_slice(command);
        Vec::new()
    }

    fn snapshot_to(
        &self,
        out: &mut dyn Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let state = self.state.lock().unwrap();
        for (n, piece) in state.chunks(PIECE).enumerate() {
            if n == state.len() / PIECE / 2 {
                *self.on_disk_halfway.lock().unwrap() = Some(largest_data_file(&self.dir));
            }
            out.write_all(piece)?;
        }
        Ok(())
    }

    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.refuse_restore {
            return Err("refused".into());
        }
        let mut state = Vec::new();
        snapshot.read_to_end(&mut state)?;
        *self.state.lock().unwrap() = state;
        Ok(())
    }
}

fn largest_data_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".data"))
        .map(|entry| entry.metadata().unwrap().len())
        .max()
        .unwrap_or(0)
}

fn blob(dir: &Path) -> (Blob, Shared) {
    let blob = Blob {
        dir: dir.to_path_buf(),
        ..Blob::default()
    };
    let state = blob.state.clone();
    (blob, state)
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// Commands 1..=count of `size` bytes each, every byte its index.
fn entries(count: u64, size: usize) -> Vec<Entry> {
    (1..=count)
        .map(|index| Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Command(vec![index as u8; size])),
        })
        .collect()
}

fn data_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snapshot.") && name != "snapshot.bin")
        .collect();
    names.sort();
    names
}

async fn read_snapshot(machine: &mut GroupStateMachine) -> (SnapshotMeta, Vec<u8>) {
    let snapshot = machine.get_current_snapshot().await.unwrap().unwrap();
    let mut data = Vec::new();
    snapshot
        .snapshot
        .into_std()
        .await
        .read_to_end(&mut data)
        .unwrap();
    (snapshot.meta, data)
}

#[tokio::test]
async fn a_snapshot_streams_to_its_file_as_written_and_installs_on_an_empty_replica() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (machine, leader_state) = blob(leader_dir.path());
    let on_disk_halfway = machine.on_disk_halfway.clone();
    let mut leader = GroupStateMachine::open(leader_dir.path(), Box::new(machine)).unwrap();
    // 2 MiB of state: many times the adapter's buffer.
    leader.apply(entries(32, 64 * 1024)).await.unwrap();
    let built = leader.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(32)));

    // Halfway through, the first half was in the data file already: the adapter streams the
    // machine's writes to disk, holding no more than its buffer.
    let total = leader_state.lock().unwrap().len() as u64;
    let halfway = on_disk_halfway.lock().unwrap().unwrap();
    assert!(
        halfway + DATA_BUFFER as u64 >= total / 2,
        "{halfway} of {total} bytes on disk halfway"
    );

    // The follower receives the data openraft sends into its receiving file, as the chunks
    // would arrive, and installs it.
    let (meta, sent) = read_snapshot(&mut leader).await;
    assert_eq!(sent, *leader_state.lock().unwrap());
    let follower_dir = tempfile::tempdir().unwrap();
    let (machine, follower_state) = blob(follower_dir.path());
    let mut follower = GroupStateMachine::open(follower_dir.path(), Box::new(machine)).unwrap();
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut *receiving, &sent)
        .await
        .unwrap();
    follower.install_snapshot(&meta, receiving).await.unwrap();
    assert_eq!(*follower_state.lock().unwrap(), sent);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        (Some(log_id(32)), StoredMembership::default())
    );
    // The received file became the kept data: nothing else is left in the directory.
    assert_eq!(data_files(follower_dir.path()), ["snapshot.1.data"]);
    assert_eq!(
        read_snapshot(&mut follower).await,
        (meta.clone(), sent.clone())
    );

    // A restart restores it.
    drop(follower);
    let (machine, reopened_state) = blob(follower_dir.path());
    let mut reopened = GroupStateMachine::open(follower_dir.path(), Box::new(machine)).unwrap();
    assert_eq!(*reopened_state.lock().unwrap(), sent);
    assert_eq!(reopened.applied_state().await.unwrap().0, Some(log_id(32)));
}

#[tokio::test]
async fn a_newer_snapshot_replaces_the_kept_files_and_a_sender_keeps_reading_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (machine, _) = blob(dir.path());
    let mut group = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    group.apply(entries(2, 1000)).await.unwrap();
    group.build_snapshot().await.unwrap();
    let old = group.get_current_snapshot().await.unwrap().unwrap();
    group.apply(entries(3, 1000).split_off(2)).await.unwrap();
    group.build_snapshot().await.unwrap();
    assert_eq!(data_files(dir.path()), ["snapshot.2.data"]);

    let mut sent = Vec::new();
    old.snapshot
        .into_std()
        .await
        .read_to_end(&mut sent)
        .unwrap();
    assert_eq!(
        sent.len(),
        2000,
        "the old snapshot's handle still reads it whole"
    );
    let (meta, data) = read_snapshot(&mut group).await;
    assert_eq!((meta.last_log_id, data.len()), (Some(log_id(3)), 3000));
}

/// A received snapshot made durable, as `install_snapshot` leaves it when a crash stops
/// it before it is kept.
fn crash_mid_install(dir: &Path, data: &[u8], last: u64) -> SnapshotMeta {
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(last)),
        last_membership: StoredMembership::default(),
        snapshot_id: format!("1-1-{last}"),
    };
    let mut receiving = snapshot_files::receiving_file(dir).unwrap();
    receiving.write_all(data).unwrap();
    snapshot_files::keep_received(dir, &receiving, &meta).unwrap();
    meta
}

#[tokio::test]
async fn an_install_a_crash_cut_short_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (machine, _) = blob(dir.path());
    let mut group = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    group.apply(entries(2, 10)).await.unwrap();
    group.build_snapshot().await.unwrap();
    drop(group);
    let meta = crash_mid_install(dir.path(), b"the new state", 40);

    let (machine, state) = blob(dir.path());
    let mut reopened = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    assert_eq!(*state.lock().unwrap(), b"the new state");
    assert_eq!(reopened.applied_state().await.unwrap().0, Some(log_id(40)));
    assert_eq!(
        read_snapshot(&mut reopened).await,
        (meta, b"the new state".to_vec())
    );
    assert_eq!(data_files(dir.path()), ["snapshot.2.data"]);
}

#[tokio::test]
async fn a_received_snapshot_no_newer_than_the_kept_one_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (machine, _) = blob(dir.path());
    let mut group = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    group.apply(entries(5, 10)).await.unwrap();
    group.build_snapshot().await.unwrap();
    drop(group);
    // The install finished (the snapshot was kept) but the crash came before the received
    // files were removed.
    crash_mid_install(dir.path(), b"older", 5);

    let (machine, state) = blob(dir.path());
    GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    assert_eq!(
        state.lock().unwrap().len(),
        50,
        "the kept snapshot is restored"
    );
    assert_eq!(data_files(dir.path()), ["snapshot.1.data"]);
}

#[tokio::test]
async fn a_snapshot_the_machine_refuses_leaves_the_kept_one_for_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (machine, _) = blob(dir.path());
    let mut group = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    group.apply(entries(2, 10)).await.unwrap();
    group.build_snapshot().await.unwrap();
    drop(group);
    let (mut machine, _) = blob(dir.path());
    machine.refuse_restore = true;
    // The kept snapshot is refused too: open fails, saying so.
    assert!(GroupStateMachine::open(dir.path(), Box::new(machine)).is_err());

    let (machine, _) = blob(dir.path());
    let mut group = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    let refusing = Blob {
        refuse_restore: true,
        ..blob(dir.path()).0
    };
    let follower_dir = tempfile::tempdir().unwrap();
    let mut follower = GroupStateMachine::open(follower_dir.path(), Box::new(refusing)).unwrap();
    let (meta, data) = read_snapshot(&mut group).await;
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut *receiving, &data)
        .await
        .unwrap();
    assert!(follower.install_snapshot(&meta, receiving).await.is_err());
    assert_eq!(follower.applied_state().await.unwrap().0, None);
    assert!(
        data_files(follower_dir.path()).is_empty(),
        "nothing received is kept for the next open to install again"
    );
}

#[tokio::test]
async fn a_snapshot_kept_inline_by_an_older_version_is_restored_and_sent() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(7)),
        last_membership: StoredMembership::default(),
        snapshot_id: "1-1-7".to_string(),
    };
    // The older layout: length, JSON header without a data file, the data.
    let header = serde_json::to_vec(&serde_json::json!({ "meta": meta })).unwrap();
    let mut bytes = (header.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(b"inline state");
    std::fs::write(dir.path().join("snapshot.bin"), bytes).unwrap();

    let (machine, state) = blob(dir.path());
    let mut group = GroupStateMachine::open(dir.path(), Box::new(machine)).unwrap();
    assert_eq!(*state.lock().unwrap(), b"inline state");
    assert_eq!(
        read_snapshot(&mut group).await,
        (meta, b"inline state".to_vec())
    );
}
