//! A service group over three Raft nodes on loopback: a replica that lost its data while the
//! others purged their logs behind a snapshot is rebuilt from the snapshot of a store, sent
//! and installed through files, and then takes part again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::engine::{CommandContext, Engine, StateMachine};
use super::store::{Store, Table, Transaction};
use super::{CommandMeta, Rejection, StoreError};
use commerce_storage::raft::{GroupId, GroupStart, RaftNode, RaftNodeConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Every step finishes well within this, or the test fails instead of hanging.
const TEST_LIMIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(20);
const GROUP: GroupId = GroupId(1 << 48);

/// Stores a value of the given size under a key, and says so in an event.
struct Put;
const VALUES: Table<Vec<u8>> = Table::new("value");

impl StateMachine for Put {
    type Command = (String, usize);
    type Output = ();

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        (key, size): &(String, usize),
        meta: &CommandMeta,
    ) -> Result<Result<(), Rejection>, StoreError> {
        VALUES.put(tx, key, &vec![7; *size])?;
        tx.emit("values", meta.event("Put", key, 1, size)?);
        Ok(Ok(()))
    }
}

struct Replica {
    raft: Arc<RaftNode>,
    engine: Arc<Engine<Put>>,
}

async fn start(id: u64, dir: &Path, listener: TcpListener, start: GroupStart) -> Replica {
    let mut config = RaftNodeConfig::new(id, dir.join("raft"));
    config.heartbeat_interval_ms = 50;
    config.election_timeout_min_ms = 300;
    config.election_timeout_max_ms = 600;
    // Snapshots often and a short log behind them: a replica with nothing can only catch
    // up by a snapshot.
    config.snapshot_every = 50;
    config.keep_logs_after_snapshot = 10;
    let raft = Arc::new(RaftNode::start(config, listener).await.unwrap());
    let store = Arc::new(Store::open(&dir.join("store")).unwrap());
    let engine = Engine::open(store, Put).unwrap();
    engine.replicate(raft.clone(), GROUP, start).await.unwrap();
    Replica { raft, engine }
}

async fn put_many(engine: &Engine<Put>, range: std::ops::Range<usize>) {
    for n in range {
        engine
            .submit((format!("key-{n:04}"), 4096), CommandContext::default())
            .await
            .unwrap()
            .unwrap();
    }
}

/// Waits until `replica` has applied what `leader` has.
async fn caught_up(replica: &Replica, leader: &Replica) {
    let target = leader.engine.applied_index();
    let mut applied = replica.engine.applied();
    applied.wait_for(|index| *index >= target).await.unwrap();
}

/// The replicated keyspaces' records.
fn contents(store: &Store) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for (tag, keyspace) in store.replicated_keyspaces() {
        for guard in keyspace.iter() {
            let (key, value) = guard.into_inner().unwrap();
            all.push((tag, key.to_vec(), value.to_vec()));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_data_was_wiped_is_rebuilt_from_a_snapshot_of_the_store() {
    tokio::time::timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let members: BTreeMap<u64, String> =
            (1..=3).zip(addrs.iter().map(ToString::to_string)).collect();
        let mut replicas = Vec::new();
        for (id, listener) in (1..=3).zip(listeners) {
            let node_dir = dir.path().join(format!("node-{id}"));
            let bootstrap = GroupStart::Bootstrap(members.clone());
            replicas.push(start(id, &node_dir, listener, bootstrap).await);
        }

        // 300 entries of 4 KiB: the store is many times the snapshot's chunk.
        put_many(&replicas[0].engine, 0..300).await;
        let leader = (replicas[0].raft.leader(GROUP).unwrap().unwrap() - 1) as usize;
        let wiped = (leader + 1) % 3;
        while replicas[leader]
            .raft
            .metrics(GROUP)
            .unwrap()
            .purged
            .is_none()
        {
            tokio::time::sleep(POLL).await;
        }

        // It loses its disk and comes back, empty, at its address.
        let Replica { raft, engine } = replicas.remove(wiped);
        raft.shutdown().await;
        drop((raft, engine));
        let listener = loop {
            match TcpListener::bind(addrs[wiped]).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(POLL).await,
            }
        };
        let fresh = dir.path().join(format!("node-{}-wiped", wiped + 1));
        replicas.insert(
            wiped,
            start(wiped as u64 + 1, &fresh, listener, GroupStart::Join).await,
        );
        caught_up(&replicas[wiped], &replicas[leader]).await;
        assert!(
            replicas[wiped]
                .raft
                .metrics(GROUP)
                .unwrap()
                .snapshot
                .is_some(),
            "the wiped replica caught up by a snapshot"
        );
        assert_eq!(
            contents(replicas[wiped].engine.store()),
            contents(replicas[leader].engine.store())
        );

        // And it takes part again: a command through it reaches every replica.
        put_many(&replicas[wiped].engine, 300..310).await;
        for replica in &replicas {
            caught_up(replica, &replicas[leader]).await;
        }
        let expected = contents(replicas[leader].engine.store());
        for replica in &replicas {
            assert_eq!(contents(replica.engine.store()), expected);
        }
        for replica in &replicas {
            replica.raft.shutdown().await;
        }
    })
    .await
    .expect("the test did not finish in time");
}
