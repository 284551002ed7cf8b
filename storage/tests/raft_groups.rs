//! The Raft group facility on real loopback TCP: three `RaftNode`s hosting two groups over
//! the multiplexed peer connections, with leader loss, restart and a wiped data directory.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_storage::raft::{
    GroupId, GroupStart, RaftGroupError, RaftNode, RaftNodeConfig, Role, SnapshotSource,
    StateMachine,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test finishes well within this, or fails instead of hanging.
const TEST_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

type Applied = Arc<Mutex<Vec<Vec<u8>>>>;

/// Records every applied command, in order; its snapshot is the whole record.
struct Recorder {
    applied: Applied,
}

impl StateMachine for Recorder {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let mut applied = self.applied.lock().unwrap();
        applied.push(command.to_vec());
        (applied.len() as u64).to_be_bytes().to_vec()
    }

    fn snapshot_to(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(serde_json::to_writer(out, &*self.applied.lock().unwrap())?)
    }

    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        *self.applied.lock().unwrap() = serde_json::from_reader(snapshot)?;
        Ok(())
    }
}

struct TestNode {
    node: Option<RaftNode>,
    addr: SocketAddr,
    config: RaftNodeConfig,
    applied: BTreeMap<GroupId, Applied>,
}

struct Cluster {
    nodes: Vec<TestNode>,
    members: BTreeMap<u64, String>,
    groups: Vec<GroupId>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes on loopback, each hosting every group in `groups`.
    async fn start(groups: &[u64], tune: impl Fn(&mut RaftNodeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let members: BTreeMap<u64, String> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            members,
            groups: groups.iter().map(|&g| GroupId(g)).collect(),
            _dir: dir,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut config = RaftNodeConfig::new(
                i as u64 + 1,
                cluster._dir.path().join(format!("node-{}", i + 1)),
            );
            // Fast elections keep the test short; they do not change what is checked.
            config.heartbeat_interval_ms = 50;
            config.election_timeout_min_ms = 300;
            config.election_timeout_max_ms = 600;
            tune(&mut config);
            let addr = listener.local_addr().unwrap();
            cluster.nodes.push(TestNode {
                node: None,
                addr,
                config,
                applied: BTreeMap::new(),
            });
            cluster
                .run_node(i, listener, GroupStart::Bootstrap(cluster.members.clone()))
                .await;
        }
        cluster
    }

    async fn run_node(&mut self, i: usize, listener: TcpListener, start: GroupStart) {
        let groups = self.groups.clone();
        let test_node = &mut self.nodes[i];
        let node = RaftNode::start(test_node.config.clone(), listener)
            .await
            .unwrap();
        test_node.applied.clear();
        for group in groups {
            let applied = Applied::default();
            node.open_group(
                group,
                start.clone(),
                Box::new(Recorder {
                    applied: applied.clone(),
                }),
            )
            .await
            .unwrap();
            test_node.applied.insert(group, applied);
        }
        test_node.node = Some(node);
    }

    fn node(&self, i: usize) -> &RaftNode {
        self.nodes[i].node.as_ref().unwrap()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect()
    }

    /// Waits until every running node hosting `group` names the same running node as its
    /// leader.
    async fn leader(&self, group: GroupId) -> usize {
        loop {
            let running = self.running();
            let seen: Vec<Option<u64>> = running
                .iter()
                .filter_map(|&i| self.node(i).leader(group).ok())
                .collect();
            if let Some(Some(id)) = seen.first()
                && seen.iter().all(|s| *s == Some(*id))
            {
                let index = (*id - 1) as usize;
                if running.contains(&index)
                    && self.node(index).metrics(group).unwrap().state.is_leader()
                {
                    return index;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Proposes through the current leader, following leadership changes.
    async fn propose(&self, group: GroupId, command: Vec<u8>) {
        loop {
            let leader = self.leader(group).await;
            match self.node(leader).propose(group, command.clone()).await {
                Ok(_) => return,
                Err(RaftGroupError::NotLeader { .. }) => tokio::time::sleep(POLL).await,
                Err(e) => panic!("proposal failed: {e}"),
            }
        }
    }

    async fn propose_many(&self, group: GroupId, range: std::ops::Range<usize>) {
        for n in range {
            self.propose(group, format!("{}:{n}", group.0).into_bytes())
                .await;
        }
    }

    fn applied(&self, i: usize, group: GroupId) -> Vec<Vec<u8>> {
        self.nodes[i].applied[&group].lock().unwrap().clone()
    }

    /// Waits until node `i` has applied `expected` for `group`, then checks it is exactly
    /// that sequence.
    async fn await_applied(&self, i: usize, group: GroupId, expected: &[Vec<u8>]) {
        while self.applied(i, group).len() < expected.len() {
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(
            self.applied(i, group),
            expected,
            "node {} group {}",
            i + 1,
            group.0
        );
    }

    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].node.take().unwrap();
        node.shutdown().await;
    }

    async fn restart(&mut self, i: usize, start: GroupStart) {
        let listener = loop {
            match TcpListener::bind(self.nodes[i].addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(POLL).await,
            }
        };
        self.run_node(i, listener, start).await;
    }

    /// Starts one more node hosting every group with `GroupStart::Join`; returns its index.
    async fn add_node(&mut self) -> usize {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let i = self.nodes.len();
        let mut config = self.nodes[0].config.clone();
        config.node_id = i as u64 + 1;
        config.data_dir = self._dir.path().join(format!("node-{}", i + 1));
        self.nodes.push(TestNode {
            node: None,
            addr: listener.local_addr().unwrap(),
            config,
            applied: BTreeMap::new(),
        });
        self.run_node(i, listener, GroupStart::Join).await;
        i
    }

    /// Reopens `group` on node `i` (after `close_group`) from its data on disk.
    async fn reopen_group(&mut self, i: usize, group: GroupId) {
        let applied = Applied::default();
        let node = self.nodes[i].node.as_ref().unwrap();
        node.open_group(
            group,
            GroupStart::Bootstrap(self.members.clone()),
            Box::new(Recorder {
                applied: applied.clone(),
            }),
        )
        .await
        .unwrap();
        self.nodes[i].applied.insert(group, applied);
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].config.data_dir.clone()
    }

    async fn shutdown(mut self) {
        for i in self.running() {
            self.stop(i).await;
        }
    }
}

fn commands(group: GroupId, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|n| format!("{}:{n}", group.0).into_bytes())
        .collect()
}

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test exceeded its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_groups_apply_the_same_500_commands_in_order_on_every_node() {
    bounded(async {
        let cluster = Cluster::start(&[1, 2], |_| {}).await;
        let (g1, g2) = (GroupId(1), GroupId(2));
        tokio::join!(
            cluster.propose_many(g1, 0..500),
            cluster.propose_many(g2, 0..500)
        );
        for i in 0..3 {
            cluster.await_applied(i, g1, &commands(g1, 0..500)).await;
            cluster.await_applied(i, g2, &commands(g2, 0..500)).await;
        }
        // Both groups' traffic shared one connection per peer in each direction.
        for i in 0..3 {
            let stats = cluster.node(i).transport_stats();
            assert_eq!(stats.dialled, 2, "node {} dialled {stats:?}", i + 1);
            assert_eq!(stats.accepted, 2, "node {} accepted {stats:?}", i + 1);
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_loss_keeps_every_committed_command_and_the_restarted_node_catches_up() {
    bounded(async {
        let mut cluster = Cluster::start(&[1, 2], |_| {}).await;
        let (g1, g2) = (GroupId(1), GroupId(2));
        tokio::join!(
            cluster.propose_many(g1, 0..100),
            cluster.propose_many(g2, 0..100)
        );

        let old_leader = cluster.leader(g1).await;
        cluster.stop(old_leader).await;
        // The two survivors elect a new leader and keep accepting proposals.
        let new_leader = cluster.leader(g1).await;
        assert_ne!(new_leader, old_leader);
        tokio::join!(
            cluster.propose_many(g1, 100..200),
            cluster.propose_many(g2, 100..200)
        );
        for i in cluster.running() {
            cluster.await_applied(i, g1, &commands(g1, 0..200)).await;
            cluster.await_applied(i, g2, &commands(g2, 0..200)).await;
        }

        // Back from its data directory: its log replays and the leader sends what it missed.
        cluster
            .restart(old_leader, GroupStart::Bootstrap(cluster.members.clone()))
            .await;
        cluster
            .await_applied(old_leader, g1, &commands(g1, 0..200))
            .await;
        cluster
            .await_applied(old_leader, g2, &commands(g2, 0..200))
            .await;
        // And it takes part again: more proposals reach it.
        tokio::join!(
            cluster.propose_many(g1, 200..210),
            cluster.propose_many(g2, 200..210)
        );
        for i in 0..3 {
            cluster.await_applied(i, g1, &commands(g1, 0..210)).await;
            cluster.await_applied(i, g2, &commands(g2, 0..210)).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_data_was_wiped_rejoins_from_a_snapshot() {
    bounded(async {
        let mut cluster = Cluster::start(&[1], |config| {
            config.snapshot_every = 50;
            config.keep_logs_after_snapshot = 10;
        })
        .await;
        let g1 = GroupId(1);
        cluster.propose_many(g1, 0..300).await;
        let leader = cluster.leader(g1).await;
        let follower = (leader + 1) % 3;
        cluster
            .await_applied(follower, g1, &commands(g1, 0..300))
            .await;
        // The leader's log no longer starts at the beginning: a node with nothing can only
        // catch up by a snapshot.
        while cluster.node(leader).metrics(g1).unwrap().purged.is_none() {
            tokio::time::sleep(POLL).await;
        }

        cluster.stop(follower).await;
        std::fs::remove_dir_all(cluster.data_dir(follower)).unwrap();
        cluster.restart(follower, GroupStart::Join).await;
        cluster
            .await_applied(follower, g1, &commands(g1, 0..300))
            .await;
        assert!(
            cluster
                .node(follower)
                .metrics(g1)
                .unwrap()
                .snapshot
                .is_some()
        );

        cluster.propose_many(g1, 300..320).await;
        for i in 0..3 {
            cluster.await_applied(i, g1, &commands(g1, 0..320)).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_is_added_and_catches_up_then_a_member_is_removed() {
    bounded(async {
        let mut cluster = Cluster::start(&[1], |_| {}).await;
        let g1 = GroupId(1);
        cluster.propose_many(g1, 0..100).await;

        // Asked before the fourth node exists: it knows no leader until it is a member.
        let leader = cluster.leader(g1).await;
        let fourth = cluster.add_node().await;
        let addr = cluster.nodes[fourth].addr.to_string();
        cluster
            .node(leader)
            .add_member(g1, fourth as u64 + 1, addr)
            .await
            .unwrap();
        cluster
            .await_applied(fourth, g1, &commands(g1, 0..100))
            .await;
        let voters: Vec<u64> = cluster
            .node(leader)
            .metrics(g1)
            .unwrap()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        assert_eq!(voters, vec![1, 2, 3, 4]);

        // Remove a follower; the other three keep replicating.
        let removed = (0..3).find(|&i| i != leader).unwrap();
        cluster
            .node(leader)
            .remove_member(g1, removed as u64 + 1)
            .await
            .unwrap();
        cluster.stop(removed).await;
        cluster.propose_many(g1, 100..150).await;
        for i in cluster.running() {
            cluster.await_applied(i, g1, &commands(g1, 0..150)).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_closed_on_one_node_shows_lag_then_catches_up_when_reopened() {
    bounded(async {
        let mut cluster = Cluster::start(&[1, 2], |_| {}).await;
        let (g1, g2) = (GroupId(1), GroupId(2));
        tokio::join!(
            cluster.propose_many(g1, 0..50),
            cluster.propose_many(g2, 0..50)
        );
        let leader = cluster.leader(g1).await;
        let follower = (leader + 1) % 3;
        cluster
            .await_applied(follower, g1, &commands(g1, 0..50))
            .await;

        cluster.node(follower).close_group(g1).await.unwrap();
        assert_eq!(cluster.node(follower).groups(), vec![g2]);
        tokio::join!(
            cluster.propose_many(g1, 50..100),
            cluster.propose_many(g2, 50..100)
        );
        // The other group on that node is untouched.
        cluster
            .await_applied(follower, g2, &commands(g2, 0..100))
            .await;
        let status = cluster.node(leader).status(g1).unwrap();
        assert_eq!(status.role, Role::Leader);
        assert_eq!(status.voters, vec![1, 2, 3]);
        let lag = status.follower_lag[&(follower as u64 + 1)];
        assert!(lag >= 50, "closed follower lag {lag} in {status:?}");

        cluster.reopen_group(follower, g1).await;
        cluster
            .await_applied(follower, g1, &commands(g1, 0..100))
            .await;
        while cluster.node(leader).status(g1).unwrap().follower_lag[&(follower as u64 + 1)] > 0 {
            tokio::time::sleep(POLL).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_the_raft_port_closes_that_connection_and_changes_nothing() {
    bounded(async {
        let cluster = Cluster::start(&[1], |_| {}).await;
        let g1 = GroupId(1);
        cluster.propose_many(g1, 0..10).await;

        // An absurd length prefix, then a well-sized frame that is not a request.
        let bad_frames: [&[u8]; 2] = [&[0xff, 0xff, 0xff, 0xff], &[0, 0, 0, 3, b'x', b'y', b'z']];
        for bad in bad_frames {
            let mut stream = TcpStream::connect(cluster.nodes[0].addr).await.unwrap();
            stream.write_all(bad).await.unwrap();
            let mut buf = [0u8; 16];
            // The node answers nothing and hangs up.
            assert_eq!(stream.read(&mut buf).await.unwrap_or(0), 0);
        }

        cluster.propose_many(g1, 10..20).await;
        for i in 0..3 {
            cluster.await_applied(i, g1, &commands(g1, 0..20)).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_forwards_proposals_to_the_leader() {
    bounded(async {
        let cluster = Cluster::start(&[1], |_| {}).await;
        let g1 = GroupId(1);
        let leader = cluster.leader(g1).await;
        let follower = (leader + 1) % 3;
        assert!(matches!(
            cluster.node(follower).propose(g1, b"direct".to_vec()).await,
            Err(RaftGroupError::NotLeader {
                leader: Some(_),
                ..
            })
        ));
        for (n, command) in commands(g1, 0..20).into_iter().enumerate() {
            let answer = cluster.node(follower).submit(g1, command).await.unwrap();
            // The leader's state machine answered: the count of commands it has applied.
            assert_eq!(answer, (n as u64 + 1).to_be_bytes().to_vec());
        }
        for i in 0..3 {
            cluster.await_applied(i, g1, &commands(g1, 0..20)).await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_barrier_on_any_member_sees_every_answered_proposal() {
    bounded(async {
        let mut cluster = Cluster::start(&[1], |_| {}).await;
        let g1 = GroupId(1);
        let leader = cluster.leader(g1).await;
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        for (n, command) in commands(g1, 0..30).into_iter().enumerate() {
            // Answered by the leader; then a read on the other nodes must include it.
            cluster.node(leader).propose(g1, command).await.unwrap();
            for &i in &others {
                cluster
                    .node(i)
                    .read_barrier(g1, Duration::from_secs(5))
                    .await
                    .unwrap();
                assert_eq!(
                    cluster.applied(i, g1).len(),
                    n + 1,
                    "node {i} after the barrier"
                );
            }
        }
        cluster
            .node(leader)
            .read_barrier(g1, Duration::from_secs(5))
            .await
            .unwrap();
        // A node cut off from its majority cannot pass a barrier: it cannot know what was
        // committed meanwhile.
        cluster.stop(others[0]).await;
        cluster.stop(others[1]).await;
        let alone = cluster
            .node(leader)
            .read_barrier(g1, Duration::from_secs(2))
            .await;
        assert!(
            alone.is_err(),
            "a leader without a majority passed a read barrier"
        );
        cluster.shutdown().await;
    })
    .await;
}
