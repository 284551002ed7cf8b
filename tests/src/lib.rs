//! `commerce-tests`: black-box tests of the `commerce` binary.
//!
//! The tests start real `commerce start` processes (each on its own temporary data directory
//! and free ports) and talk to them only through public interfaces: the Kafka protocol, with
//! librdkafka (the `rdkafka` crate) as the client, HTTP with reqwest, and the `commerce` command line. Nothing
//! here links the broker or storage crates, so what passes here passes for any Kafka client.
//!
//! The binary is not built by this crate (it is another package): build it first with
//! `cargo build --release -p commerce` (or `-p commerce` for a debug test run), or point
//! `COMMERCE_BIN` at it.
//!
//! - [`node`]: one node process: start, SIGKILL, SIGTERM, restart on the same data, its log.
//! - [`kafka`]: rdkafka clients wired for tests: a producer that records every
//!   acknowledgement, a reader that drains partitions to their end, admin helpers.
//! - [`kafka_behaviour`]: Kafka behaviour scenarios taking a bootstrap address, run alike
//!   against one node and a three-node cluster so that the two cannot differ unnoticed.
//! - [`group`]: consumer-group members driven by the test thread, committed offsets.
//! - [`history`]: the checker of a produce history: acknowledged records against the log
//!   read back (lost, duplicated, misplaced, out of order).
//! - [`http`]: a JSON client for the node's REST API (reqwest), with sign-up and login helpers.
//! - [`orders`]: placing and following orders, finding the commands the saga sent.
//! - [`cli`]: running `commerce` tool commands with a time limit.
//! - [`envelopes`]: event and command envelopes produced onto the services' topics.
//! - [`record_signing`]: the platform's `commerce-signature`, so a test can write records
//!   the services accept (as the node's own relays sign them) or forge ones they refuse.
//! - [`limit`]: a per-test time limit, since the test harness has none.
//! - [`raw`]: hand-built Kafka requests for what client libraries will not send.
//! - [`replicated`]: a topic replicated on a three-node cluster: each node's Metadata view
//!   (leader, epoch, replicas, ISR), waiting for agreed leaders, faults (kill, pause, isolate).
//! - [`coordinators`]: where a group's or a transactional id's coordinator is (the leader of
//!   its `__consumer_offsets` or `__transaction_state` partition), waiting until the nodes agree.
//! - [`transactional`]: a transactional producer's run of numbered transactions, each one's
//!   outcome as the client saw it, and the read-back that checks them (whole, once, atomic).
//! - [`eos`]: a consume-transform-produce worker committing its offsets in its transactions.
//! - [`workload`]: an idempotent producer of unique values and the check of its history.
//! - [`wire`]: a bare Kafka wire client (kafka-protocol codec) for APIs rdkafka does not expose.
//! - [`slow_client`]: raw HTTP connections that stall in a request's header or body.
//! - [`proxy`]: a TCP proxy that can drop a response and cut the connection, to make
//!   clients retry requests the node already executed.

// Test support: a failed expectation here IS the test failure, so panicking with a message
// is the intended behaviour.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

pub mod cli;
pub mod cluster;
pub mod coordinators;
pub mod envelopes;
pub mod eos;
pub mod group;
pub mod history;
pub mod http;
pub mod kafka;
pub mod kafka_behaviour;
pub mod limit;
pub mod link;
pub mod membership;
pub mod node;
pub mod orders;
pub mod proxy;
pub mod raw;
pub mod record_signing;
pub mod replicated;
pub mod schedule;
pub mod shop;
pub mod slow_client;
pub mod transactional;
pub mod wire;
pub mod workload;

use std::path::PathBuf;

pub use limit::TimeLimit;
pub use node::Node;

/// The `commerce` binary under test: `COMMERCE_BIN`, else the workspace's
/// `target/<profile>/commerce` for the profile this test crate was built with.
pub fn commerce_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("COMMERCE_BIN") {
        return PathBuf::from(bin);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("the tests crate lives inside the workspace");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let (profile, flag) = if cfg!(debug_assertions) {
        ("debug", "")
    } else {
        ("release", " --release")
    };
    let bin = target.join(profile).join("commerce");
    assert!(
        bin.is_file(),
        "no commerce binary at {}: build it first: cargo build{flag} -p commerce \
         (or set COMMERCE_BIN)",
        bin.display()
    );
    bin
}

/// Polls `probe` until it returns `Some`, panicking with `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
