//! The engine: a service's command log and the deterministic apply loop over it.
//!
//! The command log is a Raft group (the storage crate's group facility, as for partitions):
//! `submit` fixes the command's id and timestamp, proposes the entry to the service's group
//! (a follower forwards it to the leader) and answers with what applying it returned. Every
//! replica applies the same entries in the same order through [`ServiceMachine`] to its own
//! fjall store: `apply` reads and writes through a [`Transaction`] and the store commits the
//! writes, the emitted events (the outbox) and the applied index in one batch. A node alone
//! runs the same group with one voter: there is one command-log implementation.
//!
//! A command born of a consumed event (`submit_consumed`) carries the event's id; apply skips
//! it when the inbox already holds that id and otherwise records the id in the same batch as
//! the effect, so a redelivered event is applied at most once whatever the handler does.
//!
//! Reads are served from the local replica. [`Engine::read_barrier`] makes one linearizable:
//! it waits until this replica has applied everything the leader had committed when the
//! read began (Raft's ReadIndex), so a read on any node sees every write answered before it.

use super::envelope::EventEnvelope;
use super::error::{Rejection, StoreError};
use super::group::{Answer, GroupEntry, LogEntry, ServiceMachine};
use super::outbox::{OutboxProgress, ProducerSequence};
use super::store::{META_APPLIED, Position, Store, Transaction};
use commerce_storage::raft::{GroupId, GroupStart, RaftGroupError, RaftNode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a command or a read waits for its group to elect a leader before it is
/// refused: a few election timeouts, and the time to notice the old leader is gone.
const ELECTION_WAIT: Duration = Duration::from_secs(5);
const ELECTION_POLL: Duration = Duration::from_millis(100);
/// How long a read waits for the local replica to catch up with the leader.
const READ_BARRIER_LIMIT: Duration = Duration::from_secs(5);

/// A service's state machine.
pub trait StateMachine: Send + Sync + 'static {
    type Command: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Travels back to a proposer on another node, so it is serializable.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Applies one command. Must be deterministic: same state + same command = same writes,
    /// same events, same answer. A rejection changes nothing; a `StoreError` stops the service.
    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Self::Command,
        meta: &CommandMeta,
    ) -> Result<Result<Self::Output, Rejection>, StoreError>;
}

/// Where a command comes from, as the edge knows it.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    /// The id of the event this command reacts to (inbox deduplication).
    pub consumed_event: Option<String>,
}

/// What applying a command came to.
#[derive(Debug)]
pub enum Applied<T> {
    /// Applied (or deterministically rejected).
    Done(Result<T, Rejection>),
    /// The consumed event it carries was applied before: nothing changed.
    AlreadyApplied,
}

/// Everything about a command that is fixed before it is logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandMeta {
    pub command_id: String,
    pub at_ms: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    /// Set for a command born of a consumed event: that event's id. Older log entries have
    /// none.
    #[serde(default)]
    pub consumed_event: Option<String>,
}

impl CommandMeta {
    /// An event envelope for this command. The event id is derived from the command id, the
    /// event type and the aggregate, so a replayed command emits the very same event.
    pub fn event(
        &self,
        event_type: &str,
        aggregate_id: &str,
        version: u32,
        data: impl Serialize,
    ) -> Result<EventEnvelope, StoreError> {
        let digest = Sha256::new()
            .chain_update(self.command_id.as_bytes())
            .chain_update([0])
            .chain_update(event_type.as_bytes())
            .chain_update([0])
            .chain_update(aggregate_id.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        for (out, byte) in bytes.iter_mut().zip(digest.iter()) {
            *out = *byte;
        }
        let id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
        Ok(EventEnvelope {
            id: id.to_string(),
            event_type: event_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            occurred_at: super::time::rfc3339(self.at_ms),
            correlation_id: self.correlation_id.clone(),
            // The request that caused a command-born event is its correlation scope; a
            // consumed event names the event it reacted to.
            causation_id: self
                .causation_id
                .clone()
                .or_else(|| Some(self.command_id.clone())),
            version,
            data: serde_json::to_value(data)?,
        })
    }
}

/// The Raft group a service's command log is, on this node.
#[derive(Clone)]
struct Group {
    raft: Arc<RaftNode>,
    id: GroupId,
}

pub struct Engine<M: StateMachine> {
    store: Arc<Store>,
    machine: Arc<M>,
    group: OnceLock<Group>,
    /// The runtime the group runs on, for `submit_blocking` from plain threads.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Woken after every commit that may have added outbox events.
    outbox_signal: Arc<Notify>,
    /// The last applied log index here, for read models cached beside the store.
    applied: watch::Sender<u64>,
}

impl<M: StateMachine> Engine<M> {
    /// Opens the engine on a store. Entries a node-local command log (before service groups)
    /// left unapplied are applied first; the engine takes commands once
    /// [`Engine::replicate`] has opened its group.
    pub fn open(store: Arc<Store>, machine: M) -> Result<Arc<Engine<M>>, StoreError> {
        let machine = Arc::new(machine);
        upgrade_local_log(&store, machine.as_ref())?;
        let (applied, _) = watch::channel(store.meta_u64(super::store::META_RAFT_APPLIED)?);
        Ok(Arc::new(Engine {
            store,
            machine,
            group: OnceLock::new(),
            runtime: OnceLock::new(),
            outbox_signal: Arc::new(Notify::new()),
            applied,
        }))
    }

    /// Opens the service's Raft group `group` on `raft`, this engine's store as its state
    /// machine. Once it returns, `submit` proposes there.
    pub async fn replicate(
        &self,
        raft: Arc<RaftNode>,
        group: GroupId,
        start: GroupStart,
    ) -> Result<(), StoreError> {
        let machine = ServiceMachine::new(
            self.store.clone(),
            self.machine.clone(),
            self.outbox_signal.clone(),
            self.applied.clone(),
        );
        raft.open_group(group, start, Box::new(machine))
            .await
            .map_err(unavailable)?;
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        self.group
            .set(Group { raft, id: group })
            .map_err(|_| StoreError::Unavailable(format!("{group} is open already")))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox_signal.clone()
    }

    /// The applied index, changing after every applied entry.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The last entry applied here.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The service's group on this node, once [`Engine::replicate`] opened it.
    pub fn group(&self) -> Option<(Arc<RaftNode>, GroupId)> {
        self.group.get().map(|group| (group.raft.clone(), group.id))
    }

    fn joined(&self) -> Result<&Group, StoreError> {
        self.group.get().ok_or_else(|| {
            StoreError::Unavailable("the service's command log is not open yet".to_string())
        })
    }

    /// Waits until this replica has applied every command answered anywhere before the call
    /// (see the module comment). Reads that must not miss a write made through another
    /// node call it first.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let group = self.joined()?;
        let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
        loop {
            match group.raft.read_barrier(group.id, READ_BARRIER_LIMIT).await {
                Ok(()) => return Ok(()),
                // Asking again changes nothing: a leader that died (its connection closed)
                // or an election under way is waited out, up to the limit.
                Err(
                    RaftGroupError::NotLeader { .. }
                    | RaftGroupError::Forward { .. }
                    | RaftGroupError::Raft { .. },
                ) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(ELECTION_POLL).await;
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
    }

    /// Logs and applies a command; the outer error is a store or log failure, the inner one
    /// the command's deterministic rejection.
    pub async fn submit(
        &self,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Result<M::Output, Rejection>, StoreError> {
        match self.submit_consumed(command, context).await? {
            Applied::Done(answer) => Ok(answer),
            Applied::AlreadyApplied => Ok(Err(Rejection::conflict(
                "already_applied",
                None,
                "the event this command reacts to was applied before",
            ))),
        }
    }

    /// Logs and applies a command born of a consumed event (`context.consumed_event` names
    /// it): applied at most once per event id.
    pub async fn submit_consumed(
        &self,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Applied<M::Output>, StoreError> {
        let entry = GroupEntry::Command(LogEntry {
            meta: CommandMeta {
                command_id: uuid::Uuid::new_v4().to_string(),
                at_ms: super::time::now_ms(),
                correlation_id: context.correlation_id,
                causation_id: context.causation_id,
                traceparent: context.traceparent,
                consumed_event: context.consumed_event,
            },
            command,
        });
        match self.propose(&entry).await? {
            Answer::Applied(answer) => Ok(Applied::Done(answer)),
            Answer::AlreadyApplied => Ok(Applied::AlreadyApplied),
            Answer::Recorded => Err(StoreError::Unavailable(
                "the command log answered a command as a relay record".to_string(),
            )),
            Answer::Failed(message) => Err(StoreError::Unavailable(message)),
        }
    }

    /// `submit` for callers outside the runtime's workers (a plain thread): blocks on the
    /// runtime the group runs on.
    pub fn submit_blocking(
        &self,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Result<M::Output, Rejection>, StoreError> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return tokio::task::block_in_place(|| handle.block_on(self.submit(command, context)));
        }
        let handle = self.runtime.get().ok_or_else(|| {
            StoreError::Unavailable("the service's command log is not open yet".to_string())
        })?;
        handle.block_on(self.submit(command, context))
    }

    /// `read_barrier` for callers outside the runtime's workers (see `submit_blocking`).
    pub fn read_barrier_blocking(&self) -> Result<(), StoreError> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return tokio::task::block_in_place(|| handle.block_on(self.read_barrier()));
        }
        let handle = self.runtime.get().ok_or_else(|| {
            StoreError::Unavailable("the service's command log is not open yet".to_string())
        })?;
        handle.block_on(self.read_barrier())
    }

    async fn propose(
        &self,
        entry: &GroupEntry<M::Command>,
    ) -> Result<Answer<M::Output>, StoreError> {
        let group = self.joined()?;
        let bytes = serde_json::to_vec(entry)?;
        let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
        loop {
            match group.raft.submit(group.id, bytes.clone()).await {
                Ok(answer) => return Ok(serde_json::from_slice(&answer)?),
                // No leader known yet (an election): nothing was proposed, so asking again
                // cannot apply the command twice.
                Err(RaftGroupError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(ELECTION_POLL).await;
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
    }
}

impl<M: StateMachine> OutboxProgress for Engine<M> {
    fn record_published(
        &self,
        through: u64,
        sequences: Vec<ProducerSequence>,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>> {
        Box::pin(async move {
            let entry: GroupEntry<M::Command> = GroupEntry::OutboxPublished { through, sequences };
            match self.propose(&entry).await? {
                Answer::Failed(message) => Err(StoreError::Unavailable(message)),
                _ => Ok(()),
            }
        })
    }
}

/// A replication failure is no local store failure: the command may go through on a retry
/// once the group has a leader with a majority again.
fn unavailable(error: RaftGroupError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Applies what a node-local command log (the engine before service groups) logged but had
/// not applied when the node stopped, then forgets that log. Only an upgraded data directory
/// has any.
fn upgrade_local_log<M: StateMachine>(store: &Store, machine: &M) -> Result<(), StoreError> {
    let applied = store.meta_u64(META_APPLIED)?;
    for (index, bytes) in store.log_after(applied)? {
        let entry: LogEntry<M::Command> = serde_json::from_slice(&bytes)?;
        super::group::apply_command(store, machine, Position::Upgrade(index), &entry)?;
    }
    Ok(())
}
