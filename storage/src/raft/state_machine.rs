//! The state machine a group replicates to, and its openraft adapter.
//!
//! Callers implement the small, synchronous [`StateMachine`] trait (deterministic apply, and
//! a snapshot streamed out and back in); [`GroupStateMachine`] adapts it to openraft's
//! `RaftStateMachine`, keeping the last applied log id, the last membership and the current
//! snapshot.
//!
//! Durability comes from the snapshot plus the log: on open the kept snapshot is restored
//! (a machine that keeps its own state on disk may find it holds it already), then openraft
//! re-applies the committed log entries after it (the log store keeps the committed id).
//! Snapshot data only ever lives in files (see `snapshot_files`): a service's is its whole
//! store, a partition's carries its retained batches. The work on those files, which
//! streams them whole, runs on the blocking pool (see `snapshot_install`).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::Mutex;

use super::control_batch;
use super::partition_snapshot_files as partition_files;
use super::partition_store::PartitionRaftLog;
use super::snapshot_files::{self, StoredSnapshot};
use super::types::{
    CommandResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::log::LogError;

/// Where a state machine reads a snapshot back from: seekable, so it can check the whole
/// snapshot before it changes anything. (The group's snapshot file; memory in tests.)
pub trait SnapshotSource: Read + Seek {}

impl<T: Read + Seek> SnapshotSource for T {}

/// A deterministic state machine fed by a Raft group. Every replica applies the same
/// commands in the same order and must reach the same state: no clocks, no randomness, no
/// local I/O that can fail differently on different nodes inside `apply`.
///
/// Snapshots are streamed rather than handed over as one buffer, because a machine's state
/// may be a whole database: a small machine writes one serialized value and reads it back
/// (`serde_json::to_writer` / `from_reader`); a large one writes and reads a piece at a time.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the command committed at log `index` and returns the answer for the proposer.
    /// A command that is invalid is rejected by the answer, the same way on every replica.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;

    /// Writes the whole state to `out` (a buffered file), for a snapshot. An error stops the
    /// group: no snapshot is kept.
    fn snapshot_to(
        &self,
        out: &mut dyn Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// Replaces the whole state with one [`StateMachine::snapshot_to`] wrote, read from
    /// `snapshot` (buffered, positioned at its start). Called on every open with the kept
    /// snapshot, and with each snapshot received from the leader. A machine that keeps its
    /// state on disk itself may return at once when it holds that state or a later one (a
    /// node reopening its own snapshot). On an error the state must be as it was, or the
    /// machine must refuse to go on (a store that failed a write).
    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// The adapter's state, behind its lock; the snapshot work on it is in `snapshot_install`.
pub(super) struct Inner {
    pub(super) machine: Box<dyn StateMachine>,
    pub(super) last_applied: Option<LogId>,
    pub(super) last_membership: StoredMembership,
    pub(super) current_snapshot: Option<StoredSnapshot>,
    pub(super) dir: PathBuf,
    /// Set for a partition group: its snapshots also carry where the log continues.
    pub(super) partition: Option<Arc<PartitionRaftLog>>,
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

fn sm_write_err(e: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(AnyError::from_dyn(e, None)).into()
}

impl GroupStateMachine {
    /// Wraps `machine`, restoring it from the snapshot kept in `dir` if there is one (and
    /// finishing the install of a received one a crash cut short).
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
        machine: Box<dyn StateMachine>,
        partition: Option<Arc<PartitionRaftLog>>,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| sm_write_err(&e))?;
        let mut inner = Inner {
            machine,
            last_applied: None,
            last_membership: StoredMembership::default(),
            current_snapshot: None,
            dir: dir.to_path_buf(),
            partition,
            attach_retained: false,
        };
        inner.recover().map_err(|e| {
            StorageIOError::read_snapshot(None, AnyError::from_dyn(e.as_ref(), None))
        })?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// From now on, partition snapshots handed to openraft carry the retained batches (see
    /// `partition_snapshot`); called once the group runs.
    pub async fn attach_retained(&self) {
        self.inner.lock().await.attach_retained = true;
    }

    /// Runs `work` on the blocking pool with the adapter locked: snapshot work streams whole
    /// files (and a machine's store) and must not stall the runtime's workers.
    async fn locked_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Inner) -> T + Send + 'static,
    ) -> Result<T, StorageError> {
        let mut inner = self.inner.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || work(&mut inner))
            .await
            .map_err(|e| sm_write_err(&e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (meta, built) = self
            .locked_blocking(|inner| {
                let meta = inner.snapshot_meta();
                let built = inner.build(meta.clone());
                (meta, built)
            })
            .await?;
        let file = built.map_err(|e| {
            StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::from_dyn(e.as_ref(), None),
            )
        })?;
        Ok(Snapshot {
            meta,
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
        let file = snapshot.into_std().await;
        let installing = meta.clone();
        self.locked_blocking(move |inner| inner.install(&installing, file))
            .await?
            .map_err(|e| {
                StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    AnyError::from_dyn(e.as_ref(), None),
                )
                .into()
            })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // The kept data is opened under the lock (a newer snapshot may replace it after, the
        // handle stays valid); a partition's retained batches are copied after, unlocked:
        // the snapshot is immutable, and the log is read under its own locks.
        let opened = self
            .locked_blocking(|inner| {
                let stored = inner.current_snapshot.clone()?;
                let partition = inner.partition.clone().filter(|_| inner.attach_retained);
                let data = stored.data_file(&inner.dir);
                Some((stored.meta, data, partition, inner.dir.clone()))
            })
            .await?;
        let Some((meta, data, partition, dir)) = opened else {
            return Ok(None);
        };
        let read_err = |e: &(dyn std::error::Error + 'static)| -> StorageError {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::from_dyn(e, None))
                .into()
        };
        let data = data.map_err(|e| read_err(&e))?;
        let file = match partition {
            Some(partition) => {
                let sending = meta.clone();
                tokio::task::spawn_blocking(move || {
                    partition_files::send_file(&dir, &sending, data, &partition)
                })
                .await
                .map_err(|e| read_err(&e))?
                .map_err(|e| read_err(e.as_ref()))?
            }
            None => data,
        };
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
