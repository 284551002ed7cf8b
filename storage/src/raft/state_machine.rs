//! The state machine a group replicates to, and its openraft adapter.
//!
//! Callers implement the small, synchronous [`StateMachine`] trait (deterministic apply,
//! snapshot, restore); [`GroupStateMachine`] adapts it to openraft's `RaftStateMachine`,
//! keeping the last applied log id, the last membership and the current snapshot.
//!
//! The caller's state lives in memory; durability comes from the snapshot file plus the log:
//! on open the last snapshot is restored, then openraft re-applies the committed log entries
//! after it (the log store keeps the committed id). The snapshot is written to a temporary
//! file, fsynced and renamed, so a crash leaves the old or the new one, never half of one.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::partition_snapshot::PartitionSnapshot;
use super::partition_store::PartitionRaftLog;
use super::types::{
    CommandResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

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

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// A snapshot as kept in memory and on disk.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta,
}

impl StoredSnapshot {
    /// File layout: u32 big-endian header length, JSON header, raw state bytes.
    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let header = serde_json::to_vec(&SnapshotHeader {
            meta: self.meta.clone(),
        })?;
        let len = u32::try_from(header.len())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&len.to_be_bytes())?;
        file.write_all(&header)?;
        file.write_all(&self.data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    }

    fn read(dir: &Path) -> std::io::Result<Option<Self>> {
        let bytes = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("snapshot shorter than its length prefix"))?;
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| invalid("snapshot header too long"))?;
        let (header, data) = rest
            .split_at_checked(len)
            .ok_or_else(|| invalid("snapshot shorter than its header"))?;
        let header: SnapshotHeader = serde_json::from_slice(header)?;
        Ok(Some(Self {
            meta: header.meta,
            data: data.to_vec(),
        }))
    }
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

fn sm_read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_state_machine(AnyError::from_dyn(e, None)).into()
}

fn sm_write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
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
        let snapshot = StoredSnapshot::read(dir).map_err(|e| sm_read_err(&e))?;
        let mut snapshot = snapshot;
        let (last_applied, last_membership) = match &mut snapshot {
            Some(snapshot) => {
                let state = match &partition {
                    Some(partition) => {
                        let parsed = PartitionSnapshot::parse(&snapshot.data)
                            .map_err(|e| sm_read_err(&e))?;
                        if let Some(last) = snapshot.meta.last_log_id {
                            partition
                                .install_snapshot_log(
                                    last,
                                    parsed.next_offset,
                                    parsed.retained.as_ref(),
                                )
                                .map_err(|e| sm_read_err(&e))?;
                        }
                        if parsed.retained.is_some() {
                            // An install a crash interrupted, now finished: keep the
                            // snapshot without the batches the log holds again.
                            let stripped = parsed
                                .without_retained()
                                .encode()
                                .map_err(|e| sm_read_err(&e))?;
                            snapshot.data = stripped;
                            snapshot.write(dir).map_err(|e| sm_write_err(&e))?;
                        }
                        PartitionSnapshot::parse(&snapshot.data)
                            .map_err(|e| sm_read_err(&e))?
                            .state
                    }
                    None => &snapshot.data,
                };
                machine
                    .restore(state)
                    .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e)))?;
                (
                    snapshot.meta.last_log_id,
                    snapshot.meta.last_membership.clone(),
                )
            }
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
            data = PartitionSnapshot {
                next_offset,
                retained: None,
                state: &data,
            }
            .encode()
            .map_err(|e| sm_write_err(&e))?;
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
        inner.current_snapshot = Some(stored.clone());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
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
                    inner.machine.apply(entry.log_id.index, &command.0)
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let snapshot_err = |e: &(dyn std::error::Error + 'static)| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::from_dyn(e, None))
                .into()
        };
        let mut stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let mut inner = self.inner.lock().await;
        if let Some(partition) = inner.partition.clone() {
            let parsed = PartitionSnapshot::parse(&stored.data).map_err(|e| snapshot_err(&e))?;
            inner
                .machine
                .restore(parsed.state)
                .map_err(|e| snapshot_err(e.as_ref()))?;
            let with_retained = parsed.retained.is_some();
            // The snapshot as received first: if the install below is cut short, open
            // redoes it from this file (see `partition_install`).
            let dir = inner.dir.clone();
            let (stored_back, result) = tokio::task::spawn_blocking(move || {
                let result = install_partition(&dir, &stored, &partition);
                (stored, result)
            })
            .await
            .map_err(|e| snapshot_err(&e))?;
            stored = stored_back;
            let stripped = result.map_err(|e| snapshot_err(e.as_ref()))?;
            if with_retained {
                stored.data = stripped;
            }
        } else {
            inner
                .machine
                .restore(&stored.data)
                .map_err(|e| snapshot_err(e.as_ref()))?;
        }
        stored.write(&inner.dir).map_err(|e| snapshot_err(&e))?;
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
        let (Some(partition), true, Some(last)) = (
            inner.partition.clone(),
            inner.attach_retained,
            stored.meta.last_log_id,
        ) else {
            return Ok(Some(Snapshot {
                meta: stored.meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            }));
        };
        drop(inner);
        let signature = stored.meta.signature();
        let read_err = |e: &(dyn std::error::Error + 'static)| -> StorageError {
            StorageIOError::read_snapshot(Some(signature.clone()), AnyError::from_dyn(e, None))
                .into()
        };
        // Reading the retained batches may take a while; the state machine is not locked
        // meanwhile (the snapshot is immutable, and the log read holds the log's own lock).
        let data =
            tokio::task::spawn_blocking(move || attach_retained(&stored.data, last, &partition))
                .await
                .map_err(|e| read_err(&e))?
                .map_err(|e| read_err(e.as_ref()))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A replica's install of a partition snapshot: the received snapshot to disk, then its log
/// (see `partition_install`). Returns the snapshot without its retained batches, to keep.
fn install_partition(
    dir: &Path,
    stored: &StoredSnapshot,
    partition: &PartitionRaftLog,
) -> Result<Vec<u8>, BoxError> {
    let parsed = PartitionSnapshot::parse(&stored.data)?;
    if parsed.retained.is_some() {
        stored.write(dir)?;
    }
    if let Some(last) = stored.meta.last_log_id {
        partition.install_snapshot_log(last, parsed.next_offset, parsed.retained.as_ref())?;
    }
    Ok(parsed.without_retained().encode()?)
}

/// A stored partition snapshot (last entry `last`) with the batches this log retains
/// through `last` attached, as sent to a replica.
fn attach_retained(
    data: &[u8],
    last: LogId,
    partition: &PartitionRaftLog,
) -> Result<Vec<u8>, BoxError> {
    let parsed = PartitionSnapshot::parse(data)?;
    let retained = partition.retained_through(last.index)?;
    Ok(PartitionSnapshot {
        next_offset: parsed.next_offset,
        retained: retained.as_ref().map(|r| r.as_retained()),
        state: parsed.state,
    }
    .encode()?)
}
