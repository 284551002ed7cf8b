//! commerce-bench: the project's benchmarks.
//!
//! - `benches/log.rs` (criterion): the partition log's append and sequential read, i.e. the
//!   broker's produce and consume paths without the network.
//! - `run-e2e.sh`: the end-to-end figures in the README, driving `commerce bench produce|consume`
//!   (an rdkafka load generator) against a real `commerce start` node.
