//! A service's engine as the composition root handles it, whatever its state machine: its
//! store, its Raft group and its read barrier. [`ServiceEngine`] erases the engine's
//! command type so that every service is wired, replicated and supervised the same way.

use commerce_services::platform::outbox::OutboxProgress;
use commerce_services::platform::{Engine, StateMachine, Store, StoreError};
use commerce_storage::raft::{GroupId, GroupStart, RaftNode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;

pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

pub trait ServiceEngine: OutboxProgress {
    fn store(&self) -> &Arc<Store>;
    fn outbox_signal(&self) -> Arc<Notify>;
    /// Opens the engine's Raft group on this node.
    fn replicate(&self, raft: Arc<RaftNode>, group: GroupId, start: GroupStart) -> Pending<'_, ()>;
    /// See [`Engine::read_barrier`].
    fn read_barrier(&self) -> Pending<'_, ()>;
}

impl<M: StateMachine> ServiceEngine for Engine<M> {
    fn store(&self) -> &Arc<Store> {
        Engine::store(self)
    }

    fn outbox_signal(&self) -> Arc<Notify> {
        Engine::outbox_signal(self)
    }

    fn replicate(&self, raft: Arc<RaftNode>, group: GroupId, start: GroupStart) -> Pending<'_, ()> {
        Box::pin(Engine::replicate(self, raft, group, start))
    }

    fn read_barrier(&self) -> Pending<'_, ()> {
        Box::pin(Engine::read_barrier(self))
    }
}
