//! commerce-broker: the Kafka-compatible broker.
//!
//! What it is: the Kafka wire protocol (`protocol`, sans I/O), one module per Kafka API
//! (`api`), the node's topics and partitions over the storage crate's partition logs
//! (`Broker`, `Partition`), durable topic metadata (`metadata_store`), and the TCP listener
//! (`server`). The `Broker` is also the in-process handle services use without a network hop
//! (`local::LocalLog`).
//!
//! In a cluster (`replication`) topics come from the controller and each partition is a Raft
//! group whose Raft log is its Kafka log. What it is not: anything about orders and
//! products. Consumer groups
//! and committed offsets live in `group`.

pub mod admin;
pub mod api;
pub mod broker;
pub mod client;
pub mod compaction;
pub mod config;
pub mod controller;
pub mod error;
pub mod group;
pub mod local;
pub mod log_replay;
pub mod metadata_store;
pub mod partition;
pub mod producer;
pub mod protocol;
pub mod record_batch;
pub mod replication;
pub mod server;
pub mod topic_config;
pub mod topic_name;

pub use broker::{Broker, Topic};
pub use config::BrokerConfig;
pub use error::BrokerError;
pub use local::LocalLog;
pub use partition::Partition;
