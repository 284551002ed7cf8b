//! A service's command log as a Raft group: the entries it replicates, the answers it
//! gives the proposer, and [`ServiceMachine`], the storage crate's state machine over a
//! service's fjall store.
//!
//! Apply is where determinism matters: every replica applies the same entry at the same
//! index to the same state. The store keeps the last applied index in the same batch as
//! each entry's effect, so after a restart the entries Raft applies again (those after its
//! last snapshot) that the store already holds are skipped, and those a crash lost from
//! fjall's unsynced tail are applied again. A snapshot is taken only after the store is
//! synced, so the store never lags behind a snapshot Raft may purge its log up to; and
//! because the store holds its own state, reopening the group's kept snapshot reads only
//! its header. Snapshots stream through files both ways (`store_snapshot`,
//! `store_install`): the store is never held whole in memory.
//!
//! A store failure (disk) poisons the store: the service then refuses writes and reports
//! itself unready rather than diverge from the other replicas.

use super::engine::{Applied, CommandMeta, StateMachine};
use super::error::{Rejection, StoreError};
use super::outbox::ProducerSequence;
use super::store::{Position, Store, inbox};
use commerce_storage::raft::SnapshotSource;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// One command as logged.
#[derive(Serialize, Deserialize)]
pub(crate) struct LogEntry<C> {
    pub(crate) meta: CommandMeta,
    pub(crate) command: C,
}

/// One entry of a service group's log.
#[derive(Serialize, Deserialize)]
pub(crate) enum GroupEntry<C> {
    /// A service command.
    Command(LogEntry<C>),
    /// The leader's outbox relay published every event through `through`, leaving these
    /// producer sequences: every replica drops those events from its outbox, so a new
    /// leader's relay resumes after them.
    OutboxPublished {
        through: u64,
        sequences: Vec<ProducerSequence>,
    },
}

/// What applying an entry answers to its proposer (serialized: it may travel back to the
/// node that forwarded the command).
#[derive(Serialize, Deserialize)]
pub(crate) enum Answer<T> {
    Applied(Result<T, Rejection>),
    AlreadyApplied,
    /// An `OutboxPublished` entry was recorded.
    Recorded,
    /// Not applied: the entry was unreadable (refused the same way everywhere) or the store
    /// failed here.
    Failed(String),
}

/// The storage crate's state machine over one service's store.
pub(crate) struct ServiceMachine<M: StateMachine> {
    store: Arc<Store>,
    machine: Arc<M>,
    outbox_signal: Arc<Notify>,
    applied: watch::Sender<u64>,
}

impl<M: StateMachine> ServiceMachine<M> {
    pub(crate) fn new(
        store: Arc<Store>,
        machine: Arc<M>,
        outbox_signal: Arc<Notify>,
        applied: watch::Sender<u64>,
    ) -> Self {
        ServiceMachine {
            store,
            machine,
            outbox_signal,
            applied,
        }
    }

    fn apply_entry(&self, index: u64, bytes: &[u8]) -> Result<Answer<M::Output>, StoreError> {
        if index <= self.store.raft_applied()? {
            // Applied before a restart; Raft replays from its last snapshot.
            return Ok(Answer::Failed(format!("entry {index} was applied before")));
        }
        let entry: GroupEntry<M::Command> = match serde_json::from_slice(bytes) {
            Ok(entry) => entry,
            Err(error) => {
                // Refused the same way on every replica: only the position moves.
                self.store
                    .commit(Default::default(), Vec::new(), None, Position::Raft(index))?;
                return Ok(Answer::Failed(format!("unreadable command: {error}")));
            }
        };
        match entry {
            GroupEntry::Command(entry) => {
                let applied = apply_command(
                    &self.store,
                    self.machine.as_ref(),
                    Position::Raft(index),
                    &entry,
                )?;
                Ok(match applied {
                    Applied::Done(answer) => Answer::Applied(answer),
                    Applied::AlreadyApplied => Answer::AlreadyApplied,
                })
            }
            GroupEntry::OutboxPublished { through, sequences } => {
                self.store.record_published(through, &sequences, index)?;
                Ok(Answer::Recorded)
            }
        }
    }
}

impl<M: StateMachine> commerce_storage::raft::StateMachine for ServiceMachine<M> {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let answer = match self.apply_entry(index, command) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!(%error, index, "a service store failed to apply a command; the service stops taking writes");
                self.store.poison();
                Answer::Failed(error.to_string())
            }
        };
        self.applied.send_replace(index);
        self.outbox_signal.notify_one();
        serde_json::to_vec(&answer).unwrap_or_default()
    }

    /// The store, streamed (see `store_snapshot`). A failure stops the group, which makes
    /// the node unready; the store itself is not at fault, so it is not poisoned.
    fn snapshot_to(
        &self,
        out: &mut dyn Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.store.write_snapshot(out)?;
        Ok(())
    }

    /// Installs the snapshot into the store in bounded batches (see `store_install`); on
    /// open, a store that holds its own state already reads only the snapshot's header.
    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let index = self.store.install_snapshot(snapshot)?;
        self.applied.send_replace(index);
        self.outbox_signal.notify_one();
        Ok(())
    }
}

/// Applies one command at `position`: the inbox check, the state machine, and one atomic
/// commit of its writes, its events and the position.
pub(crate) fn apply_command<M: StateMachine>(
    store: &Store,
    machine: &M,
    position: Position,
    entry: &LogEntry<M::Command>,
) -> Result<Applied<M::Output>, StoreError> {
    let mut tx = store.begin();
    if let Some(event_id) = &entry.meta.consumed_event
        && inbox::seen(&tx, event_id)?
    {
        // Only the log position moves.
        store.commit(Default::default(), Vec::new(), None, position)?;
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
    store.commit(writes, events, entry.meta.traceparent.as_deref(), position)?;
    Ok(Applied::Done(answer))
}
