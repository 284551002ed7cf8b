//! Operator tools: Kafka admin and data commands (`topic`, `group`, `produce`, `consume`) and the
//! load generator (`bench`), in the manner of kcat and rpk.
//!
//! They speak only the Kafka protocol, through librdkafka (the `rdkafka` crate), so they work
//! against ANY Kafka-compatible broker, ours or not; they never reach into the broker crate.
//! Every command takes the same connection flags (`connection::ConnectionArgs`): `--brokers`
//! (env `COMMERCE_BROKERS`) and `-X key=value` passthrough of librdkafka properties, which
//! override the defaults each command picks for itself.

pub mod bench;
mod bench_fetch;
pub mod bench_http;
mod bench_orders;
mod bench_txn;
pub mod connection;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;
