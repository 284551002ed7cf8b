//! Test support: an engine on a real one-voter Raft group, as a node alone runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::engine::{Engine, StateMachine};
use super::store::Store;
use commerce_storage::raft::{GroupId, GroupStart, RaftNode, RaftNodeConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The group id tests use for a service.
pub(crate) const TEST_GROUP: GroupId = GroupId(1 << 48);

/// A one-voter Raft node with its data in `dir/raft`, listening on an ephemeral port.
pub(crate) async fn single_node(dir: &Path) -> Arc<RaftNode> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = RaftNodeConfig::new(1, dir.join("raft"));
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 150;
    config.election_timeout_max_ms = 300;
    Arc::new(RaftNode::start(config, listener).await.unwrap())
}

/// Opens `machine`'s engine on `store` and its group on `raft` (one voter), waiting for the
/// group to elect itself.
pub(crate) async fn replicated<M: StateMachine>(
    raft: &Arc<RaftNode>,
    store: Arc<Store>,
    machine: M,
) -> Arc<Engine<M>> {
    let engine = Engine::open(store, machine).unwrap();
    attach(raft, &engine).await;
    engine
}

/// Opens an engine's group on `raft` (one voter) under the next free test group id and
/// waits for it to elect itself.
pub(crate) async fn attach<M: StateMachine>(raft: &Arc<RaftNode>, engine: &Arc<Engine<M>>) {
    let group = GroupId(TEST_GROUP.0 + raft.groups().len() as u64);
    let members = BTreeMap::from([(1, raft.addr().to_string())]);
    engine
        .replicate(raft.clone(), group, GroupStart::Bootstrap(members))
        .await
        .unwrap();
    for _ in 0..200 {
        if raft.leader(group).unwrap() == Some(1) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the one-voter group did not elect itself");
}

/// A runtime that stays up for a synchronous test, with an engine on it.
pub(crate) struct Standalone<M: StateMachine> {
    pub(crate) engine: Arc<Engine<M>>,
    pub(crate) raft: Arc<RaftNode>,
    pub(crate) runtime: tokio::runtime::Runtime,
}

impl<M: StateMachine> Standalone<M> {
    pub(crate) fn open(dir: &Path, store: Arc<Store>, machine: M) -> Standalone<M> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (engine, raft) = runtime.block_on(async {
            let raft = single_node(dir).await;
            (replicated(&raft, store, machine).await, raft)
        });
        Standalone {
            engine,
            raft,
            runtime,
        }
    }

    /// Stops the group (as a node stopping would), keeping the data.
    pub(crate) fn stop(self) {
        let Standalone { raft, runtime, .. } = self;
        runtime.block_on(raft.shutdown());
    }
}

/// An engine on its own one-voter group, on a runtime that lives as long as the test
/// process: for synchronous tests that only submit (`submit_blocking`) and read.
pub(crate) fn leaked<M: StateMachine>(dir: &Path, store: Arc<Store>, machine: M) -> Arc<Engine<M>> {
    let node = Standalone::open(&dir.join("test-raft"), store, machine);
    let engine = node.engine.clone();
    std::mem::forget(node);
    engine
}
