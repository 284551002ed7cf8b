//! The service platform: what every domain service is built from.
//!
//! A service is a deterministic state machine ([`engine::StateMachine`]) over a command log:
//! the HTTP layer turns a request into a command with every id and timestamp already fixed,
//! the [`engine::Engine`] appends it to the service's local command log and applies it, and
//! `apply` writes the state change plus the events it emits through a [`store::Transaction`]
//! that commits as ONE atomic batch. The log is what a Raft group replaces later: apply stays
//! the same, only who appends (and who replays) changes.
//!
//! - [`transaction`]: the storage-neutral transactional interface (typed tables, unique
//!   indexes, inbox, event emission) that `apply` sees.
//! - [`store`]: its fjall implementation, one database per service.
//! - [`engine`]: the command log and the apply loop (replay after a crash).
//! - [`envelope`]: the JSON event envelope every topic carries.
//! - [`event_log`]: the `EventLog` port the services publish through; the composition root
//!   plugs in the built-in broker or an external Kafka.
//! - [`outbox`]: the relay that publishes committed outbox events in order, exactly once.
//! - [`consumer`]: the consumer side: a service's subscriptions read with group semantics,
//!   applied at most once (inbox), poison events retried then sent to `<topic>.dlq`.
//! - [`resilience`]: circuit breaker, call timeout and retry backoff for calls out.
//! - [`http`]: the pieces every service's routes share (error body, caller, request context).
//! - [`secret_file`]: node-local copies of secrets whose real home is replicated state.

pub mod consumer;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod event_log;
pub mod http;
pub mod money;
pub mod outbox;
pub mod resilience;
pub mod secret_file;
pub mod store;
pub mod time;
pub mod transaction;

#[cfg(test)]
mod consumer_tests;
#[cfg(test)]
mod tests;

pub use engine::{Applied, CommandMeta, Engine, StateMachine};
pub use envelope::EventEnvelope;
pub use error::{Rejection, StoreError};
pub use event_log::{
    ConsumedRecord, EventLog, EventLogError, Fetched, PlainRecord, PublishedEvent,
};
pub use http::answer;
pub use money::Money;
pub use store::{ReadTx, Store, Table, Transaction, UniqueIndex};
