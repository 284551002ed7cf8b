//! The service platform: what every domain service is built from.
//!
//! A service is a deterministic state machine ([`engine::StateMachine`]) over a command log:
//! the HTTP layer turns a request into a command with every id and timestamp already fixed,
//! the [`engine::Engine`] proposes it to the service's Raft group, and every replica applies
//! it: `apply` writes the state change plus the events it emits through a
//! [`store::Transaction`] that commits as ONE atomic batch. Any node serves any request: a
//! write on a follower is forwarded to the leader, and a read waits for its replica to have
//! applied what the leader committed ([`engine::Engine::read_barrier`]).
//!
//! - [`transaction`]: the storage-neutral transactional interface (typed tables, unique
//!   indexes, inbox, event emission) that `apply` sees.
//! - [`store`]: its fjall implementation, one database per service.
//! - [`engine`]: the command log (a Raft group per service; one voter on a node alone) and
//!   the apply loop; `group`: the group's entries and its state machine over the store;
//!   `store_snapshot` / `store_install`: the store's snapshot for a replica that must catch
//!   up wholesale, streamed out and installed in bounded batches.
//! - [`envelope`]: the JSON event envelope every topic carries.
//! - [`event_log`]: the `EventLog` port the services publish through; the composition root
//!   plugs in the built-in broker or an external Kafka.
//! - [`outbox`]: the relay that publishes committed outbox events in order, exactly once.
//! - [`consumer`]: the consumer side: a service's subscriptions read with group semantics,
//!   applied at most once (inbox), poison events retried then sent to `<topic>.dlq`.
//! - [`record_signature`]: the `commerce-signature` header the relay puts on every record and
//!   the consumer checks, so a record not written by the platform's services is refused.
//! - [`resilience`]: circuit breaker, call timeout and retry backoff for calls out.
//! - [`http`]: the pieces every service's routes share (error body, caller, request context).
//! - [`card`]: card data as services may hold it: a number only in memory until tokenized.
//! - [`secret_file`]: node-local copies of secrets whose real home is replicated state.

pub mod card;
pub mod consumer;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod event_log;
mod group;
pub mod http;
pub mod json_body;
pub mod money;
pub mod outbox;
pub mod record_signature;
pub mod resilience;
pub mod secret_file;
pub mod store;
mod store_install;
mod store_snapshot;
#[cfg(test)]
mod store_snapshot_tests;
#[cfg(test)]
pub(crate) mod testing;
pub mod time;
pub mod transaction;

#[cfg(test)]
mod consumer_tests;
#[cfg(test)]
mod group_snapshot_tests;
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
