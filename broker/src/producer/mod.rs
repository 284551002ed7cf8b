//! Idempotent and transactional producers.
//!
//! - [`batch_header`]: the producer fields of a v2 batch header, and marker decoding.
//! - [`sequence`]: per-partition idempotence (epochs, the last five batches per producer).
//! - [`txn_index`]: per-partition open and aborted transactions; the last stable offset.
//! - [`partition_state`]: the two above together, as a partition keeps them, rebuilt from
//!   the log on open.
//! - [`marker`]: the control batch that ends a transaction in a partition.
//! - [`coordinator`]: transactional id -> producer id and epoch, transaction state, fencing,
//!   timeouts, over [`txn_metadata`] records; [`store`] persists them with the producer-id high-water mark
//!   ([`id_allocator`]) on one node, [`txn_log`] in `__transaction_state` in a cluster.
//!   Ending a transaction is [`txn_end`]'s; the coordinator in a cluster, [`txn_cluster`]'s.
//! - [`sink`]: the port through which committed transactional offsets reach the group
//!   coordinator.
//!
//! The state machines are pure and synchronous; the Kafka handlers in `api/` and
//! `Partition` drive them.

pub mod batch_header;
pub mod coordinator;
pub mod error;
pub mod id_allocator;
pub mod marker;
pub mod partition_state;
pub mod sequence;
pub mod sink;
pub mod store;
pub mod txn_cluster;
mod txn_end;
pub mod txn_index;
pub mod txn_log;
pub mod txn_metadata;

#[cfg(test)]
mod tests;

pub use coordinator::TransactionCoordinator;
pub use error::ProducerError;
pub use sink::{TxnOffset, TxnOffsetSink};
