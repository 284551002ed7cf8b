//! The state machine a group replicates to, and its openraft adapter.
//!
//! Callers implement the small, synchronous [`StateMachine`] trait (deterministic apply,
//! snapshot, restore); [`GroupStateMachine`] adapts it to openraft's `RaftStateMachine`,
//! keeping the last applied log id, the last membership and the current snapshot.
//!
//! The caller's state lives in memory; durability comes from the snapshot file plus the log:
//! on open the last snapshot is restored, then openraft re-applies the committed log entries
//! after it (the log store keeps the committed id). Snapshot data reaches openraft as files
//! (see `snapshot_files`): a partition's carries its retained batches, which may be large.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::Mutex;

use super::control_batch;
use super::partition_snapshot::PartitionSnapshot;
use super::partition_snapshot_files::{self as partition_files, BoxError};
use super::partition_store::PartitionRaftLog;
use super::snapshot_files::{self, StoredSnapshot};
use super::types::{
    CommandResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::log::LogError;

/// A deterministic state machine fed by a Raft group. Every replica applies the same
/// commands in the same order and must reach the same state: no clocks, no randomness, no
/// local I/O that can fail differently on different nodes inside `apply`.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the command committed at log `index` and returns the answer for the proposer.
    /// A command that is invalid is rejected by the answer, the same way on every replica.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;

    /// The whole state, serialized, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with one produced by [`StateMachine::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

struct Inner {
    machine: Box<dyn StateMachine>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    current_snapshot: Option<StoredSnapshot>,
    dir: PathBuf,
    /// Set for a partition group: its snapshots also carry where the log continues.
    partition: Option<Arc<PartitionRaftLog>>,
    /// Whether a partition snapshot handed to openraft carries the retained batches. Off
    /// while `Raft::new` reads the snapshot (it looks at the meta only): reading a whole
    /// partition on every open would be wasted.
    attach_retained: bool,
}

/// openraft's view of a caller's [`StateMachine`]; cheap to clone (the snapshot builder is
/// a clone).
#[derive(Clone)]
pub struct GroupStateMachine {
    inner: Arc<Mutex<Inner>>,
}

fn sm_read_err(e: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_state_machine(AnyError::from_dyn(e, None)).into()
}

fn sm_write_err(e: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(AnyError::from_dyn(e, None)).into()
}

impl GroupStateMachine {
    /// Wraps `machine`, restoring it from the snapshot kept in `dir` if there is one.
    // openraft's own error type, returned as its traits return it.
    #[allow(clippy::result_large_err)]
    pub fn open(dir: &Path, machine: Box<dyn StateMachine>) -> Result<Self, StorageError> {
        Self::open_with(dir, machine, None)
    }

    /// Like [`GroupStateMachine::open`] for a partition group whose log is `partition`.
    #[allow(clippy::result_large_err)]
    pub fn open_partition(
        dir: &Path,
        machine: Box<dyn StateMachine>,
        partition: Arc<PartitionRaftLog>,
    ) -> Result<Self, StorageError> {
        Self::open_with(dir, machine, Some(partition))
    }

    #[allow(clippy::result_large_err)]
    fn open_with(
        dir: &Path,
        mut machine: Box<dyn StateMachine>,
        partition: Option<Arc<PartitionRaftLog>>,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| sm_write_err(&e))?;
        snapshot_files::remove_scratch(dir).map_err(|e| sm_write_err(&e))?;
        let mut snapshot = StoredSnapshot::read(dir).map_err(|e| sm_read_err(&e))?;
        let state = match &partition {
            Some(partition) => {
                let kept = open_partition_snapshot(dir, snapshot.take(), partition)
                    .map_err(|e| sm_read_err(e.as_ref()))?;
                kept.map(|(stored, state)| {
                    snapshot = Some(stored);
                    state
                })
            }
            None => snapshot.as_ref().map(|stored| stored.data.clone()),
        };
        if let Some(state) = state {
            machine
                .restore(&state)
                .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e)))?;
        }
        let (last_applied, last_membership) = match &snapshot {
            Some(snapshot) => (
                snapshot.meta.last_log_id,
                snapshot.meta.last_membership.clone(),
            ),
            None => (None, StoredMembership::default()),
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                machine,
                last_applied,
                last_membership,
                current_snapshot: snapshot,
                dir: dir.to_path_buf(),
                partition,
                attach_retained: false,
            })),
        })
    }
}

impl GroupStateMachine {
    /// From now on, partition snapshots handed to openraft carry the retained batches (see
    /// `partition_snapshot`); called once the group runs.
    pub async fn attach_retained(&self) {
        self.inner.lock().await.attach_retained = true;
    }
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mut inner = self.inner.lock().await;
        let mut data = inner.machine.snapshot();
        if let Some(partition) = &inner.partition {
            // -1 when the last applied entry is not in this log (only openraft's storage
            // suite applies entries the log never held): a replica installing such a
            // snapshot refuses to guess where its log continues.
            let next_offset = match inner.last_applied {
                Some(last) => partition.offset_after(last.index),
                None => Some(partition.log().log_start_offset()),
            }
            .unwrap_or(-1);
            data = PartitionSnapshot::plain(next_offset, &data);
        }
        let snapshot_id = match inner.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: inner.last_applied,
                last_membership: inner.last_membership.clone(),
                snapshot_id,
            },
            data,
        };
        stored.write(&inner.dir).map_err(|e| {
            StorageIOError::write_snapshot(Some(stored.meta.signature()), AnyError::new(&e))
        })?;
        let file = snapshot_files::data_file(&inner.dir, &stored.data).map_err(|e| {
            StorageIOError::write_snapshot(Some(stored.meta.signature()), AnyError::new(&e))
        })?;
        inner.current_snapshot = Some(stored.clone());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.inner.lock().await;
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut responses = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(command) => {
                    let moved = match &inner.partition {
                        Some(partition) => {
                            apply_log_start(partition, entry.log_id.index, &command.0).map_err(
                                |e| StorageIOError::apply(entry.log_id, AnyError::new(&e)),
                            )?
                        }
                        None => false,
                    };
                    if moved {
                        // Storage's own entry, not a batch: the machine never sees it.
                        Vec::new()
                    } else {
                        inner.machine.apply(entry.log_id.index, &command.0)
                    }
                }
                EntryPayload::Membership(membership) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            responses.push(CommandResponse(response));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let dir = self.inner.lock().await.dir.clone();
        let file = snapshot_files::receiving_file(&dir).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let snapshot_err = |e: &(dyn std::error::Error + 'static)| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::from_dyn(e, None))
                .into()
        };
        let mut file = snapshot.into_std().await;
        let mut inner = self.inner.lock().await;
        let dir = inner.dir.clone();
        let (data, state) = match inner.partition.clone() {
            Some(partition) => {
                let (dir, meta) = (dir.clone(), meta.clone());
                let installed = tokio::task::spawn_blocking(move || {
                    partition_files::install_file(&dir, &meta, file, &partition)
                })
                .await
                .map_err(|e| snapshot_err(&e))?
                .map_err(|e| snapshot_err(e.as_ref()))?;
                (partition_files::kept_data(&installed), installed.state)
            }
            None => {
                let data = snapshot_files::read_all(&mut file).map_err(|e| snapshot_err(&e))?;
                (data.clone(), data)
            }
        };
        inner
            .machine
            .restore(&state)
            .map_err(|e| snapshot_err(e.as_ref()))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        stored.write(&dir).map_err(|e| snapshot_err(&e))?;
        snapshot_files::clear_received(&dir).map_err(|e| snapshot_err(&e))?;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        inner.current_snapshot = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let inner = self.inner.lock().await;
        let Some(stored) = inner.current_snapshot.clone() else {
            return Ok(None);
        };
        let signature = stored.meta.signature();
        let read_err = |e: &(dyn std::error::Error + 'static)| -> StorageError {
            StorageIOError::read_snapshot(Some(signature.clone()), AnyError::from_dyn(e, None))
                .into()
        };
        let dir = inner.dir.clone();
        let partition = inner.partition.clone().filter(|_| inner.attach_retained);
        // Not locked while the file is written: the snapshot is immutable, and the log is
        // read under its own locks.
        drop(inner);
        let meta = stored.meta.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, BoxError> {
            match partition {
                Some(partition) => partition_files::send_file(&dir, &stored, &partition),
                None => Ok(snapshot_files::data_file(&dir, &stored.data)?),
            }
        })
        .await
        .map_err(|e| read_err(&e))?
        .map_err(|e| read_err(e.as_ref()))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// A log-start entry (DeleteRecords) moves the partition's log start here, on every replica
/// at the same entry, and returns true; any other command is left alone (false). Never past
/// the entry's own position: the leader checked the offset against its high watermark,
/// which this entry follows. The segments below stay until Raft purges them.
fn apply_log_start(
    partition: &PartitionRaftLog,
    index: u64,
    command: &[u8],
) -> Result<bool, LogError> {
    let Some(offset) = control_batch::log_start_of(command) else {
        return Ok(false);
    };
    // A side entry (see `partition_side`): its position is where the log stood when it was
    // appended. Only openraft's storage suite applies entries the log never held.
    let position = partition
        .offset_of(index)
        .unwrap_or_else(|| partition.log().log_end_offset());
    partition.log().raise_log_start(offset.min(position))?;
    Ok(true)
}

/// The kept snapshot of a partition group on open, and the state to restore: the log is
/// made to continue where it says, and a received snapshot whose install a crash cut short
/// is installed now (it is newer than the kept one).
fn open_partition_snapshot(
    dir: &Path,
    stored: Option<StoredSnapshot>,
    partition: &PartitionRaftLog,
) -> Result<Option<(StoredSnapshot, Vec<u8>)>, BoxError> {
    if let Some((meta, file)) = snapshot_files::kept_received(dir)?
        && meta.last_log_id > stored.as_ref().and_then(|s| s.meta.last_log_id)
    {
        let installed = partition_files::install_file(dir, &meta, file, partition)?;
        let stored = StoredSnapshot {
            meta,
            data: partition_files::kept_data(&installed),
        };
        stored.write(dir)?;
        snapshot_files::clear_received(dir)?;
        return Ok(Some((stored, installed.state)));
    }
    snapshot_files::clear_received(dir)?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    let kept = PartitionSnapshot::read(&mut std::io::Cursor::new(&stored.data))?;
    if let Some(last) = stored.meta.last_log_id {
        partition.install_snapshot_log(last, kept.next_offset, None)?;
    }
    Ok(Some((stored, kept.state)))
}
