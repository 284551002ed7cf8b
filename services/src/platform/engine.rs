//! The engine: a service's command log and the deterministic apply loop over it.
//!
//! `submit` fixes the command's id and timestamp, appends the command to the log (synced),
//! then applies it: `apply` reads and writes through a [`Transaction`] and the engine commits
//! the writes, the emitted events and the new applied index in one batch. After a crash the
//! entries past the applied index are applied again on open, so an acknowledged command is
//! never lost and never half-applied. Because apply sees only the command and the state, a
//! Raft group can later own the log and every replica applies the same entries to the same
//! result; handlers do not change.
//!
//! A command born of a consumed event (`submit_consumed`) carries the event's id; apply skips
//! it when the inbox already holds that id and otherwise records the id in the same batch as
//! the effect, so a redelivered event is applied at most once whatever the handler does.

use super::envelope::EventEnvelope;
use super::error::{Rejection, StoreError};
use super::store::{META_APPLIED, Store, Transaction, inbox};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A service's state machine.
pub trait StateMachine: Send + Sync + 'static {
    type Command: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Output: Send + 'static;

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

#[derive(Serialize, Deserialize)]
struct LogEntry<C> {
    meta: CommandMeta,
    command: C,
}

pub struct Engine<M: StateMachine> {
    store: Arc<Store>,
    machine: M,
    /// The last log index; held while appending and applying so commands apply in log order.
    last_index: Mutex<u64>,
    /// Woken after every commit that may have added outbox events.
    outbox_signal: Arc<Notify>,
}

impl<M: StateMachine> Engine<M> {
    /// Opens the engine on a store, applying log entries a crash left unapplied.
    pub fn open(store: Arc<Store>, machine: M) -> Result<Arc<Engine<M>>, StoreError> {
        let applied = store.meta_u64(META_APPLIED)?;
        let mut last = applied;
        for (index, bytes) in store.log_after(applied)? {
            let entry: LogEntry<M::Command> = serde_json::from_slice(&bytes)?;
            // Replayed answers have no caller any more; only the state they leave matters.
            let _answer = apply_one(&store, &machine, index, &entry)?;
            last = index;
        }
        let last = last.max(store.last_log_index()?);
        Ok(Arc::new(Engine {
            store,
            machine,
            last_index: Mutex::new(last),
            outbox_signal: Arc::new(Notify::new()),
        }))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox_signal.clone()
    }

    /// Logs and applies a command; the outer error is a local store failure, the inner one
    /// the command's deterministic rejection.
    pub async fn submit(
        self: &Arc<Self>,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Result<M::Output, Rejection>, StoreError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.submit_blocking(command, context))
            .await
            .map_err(|error| StoreError::Task(error.to_string()))?
    }

    /// Logs and applies a command born of a consumed event (`context.consumed_event` names
    /// it): applied at most once per event id.
    pub async fn submit_consumed(
        self: &Arc<Self>,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Applied<M::Output>, StoreError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.submit_entry(command, context))
            .await
            .map_err(|error| StoreError::Task(error.to_string()))?
    }

    /// `submit` for callers without a runtime (the `user create` command, bootstrap).
    pub fn submit_blocking(
        &self,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Result<M::Output, Rejection>, StoreError> {
        match self.submit_entry(command, context)? {
            Applied::Done(answer) => Ok(answer),
            Applied::AlreadyApplied => Ok(Err(Rejection::conflict(
                "already_applied",
                None,
                "the event this command reacts to was applied before",
            ))),
        }
    }

    fn submit_entry(
        &self,
        command: M::Command,
        context: CommandContext,
    ) -> Result<Applied<M::Output>, StoreError> {
        let entry = LogEntry {
            meta: CommandMeta {
                command_id: uuid::Uuid::new_v4().to_string(),
                at_ms: super::time::now_ms(),
                correlation_id: context.correlation_id,
                causation_id: context.causation_id,
                traceparent: context.traceparent,
                consumed_event: context.consumed_event,
            },
            command,
        };
        let bytes = serde_json::to_vec(&entry)?;
        let mut last = self.last_index.lock().map_err(|_| StoreError::Poisoned)?;
        let index = *last + 1;
        self.store.append_log(index, &bytes)?;
        *last = index;
        let answer = apply_one(&self.store, &self.machine, index, &entry)?;
        drop(last);
        self.outbox_signal.notify_one();
        Ok(answer)
    }
}

fn apply_one<M: StateMachine>(
    store: &Store,
    machine: &M,
    index: u64,
    entry: &LogEntry<M::Command>,
) -> Result<Applied<M::Output>, StoreError> {
    let mut tx = store.begin();
    if let Some(event_id) = &entry.meta.consumed_event
        && inbox::seen(&tx, event_id)?
    {
        // Only the log position moves.
        store.commit(Default::default(), Vec::new(), None, index)?;
        return Ok(Applied::AlreadyApplied);
    }
    let answer = match machine.apply(&mut tx, &entry.command, &entry.meta) {
        Ok(answer) => answer,
        Err(error) => {
            store.poison();
            return Err(error);
        }
    };
    if answer.is_ok()
        && let Some(event_id) = &entry.meta.consumed_event
    {
        inbox::record(&mut tx, event_id);
    }
    let (writes, events) = match &answer {
        Ok(_) => (
            std::mem::take(&mut tx.writes),
            std::mem::take(&mut tx.events),
        ),
        // A rejected command leaves no trace but its place in the log.
        Err(_) => Default::default(),
    };
    store.commit(writes, events, entry.meta.traceparent.as_deref(), index)?;
    Ok(Applied::Done(answer))
}
