//! [`RaftNode`]: one node hosting many Raft groups.
//!
//! The node owns a data directory (`<data_dir>/groups/<id>/` per group: its redb log and its
//! snapshot file), a Raft listener that dispatches incoming RPCs by group id, and the set of
//! outgoing peer connections every group shares. Groups are opened one by one by the layer
//! above (the controller decides which groups a node hosts).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use openraft::storage::RaftLogStorage;

use super::control_batch;
use super::error::RaftGroupError;
use super::log_store::GroupLogStore;
use super::members::change_members;
use super::network::{GroupNetworkFactory, Peers};
use super::partition_log_store::PartitionLogStore;
use super::partition_store::PartitionRaftLog;
use super::server::{self, Router};
use super::state_machine::{GroupStateMachine, StateMachine};
use super::status::GroupStatus;
use super::types::{Command, GroupId, NodeId, Raft, TypeConfig};
use super::wire::MemberChange;
use crate::log::LogConfig;

/// How long a forwarded proposal may take, commit included.
pub(super) const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// How a node runs its groups. Times in milliseconds.
#[derive(Debug, Clone)]
pub struct RaftNodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A group snapshots its state machine after this many entries since its last snapshot.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower catches up
    /// from the log rather than by a full snapshot.
    pub keep_logs_after_snapshot: u64,
    /// Addresses to dial instead of a peer's membership address (NAT, test proxies).
    pub dial: BTreeMap<NodeId, String>,
}

impl RaftNodeConfig {
    /// Defaults suited to a LAN cluster.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every: 10_000,
            keep_logs_after_snapshot: 1_000,
            dial: BTreeMap::new(),
        }
    }

    fn openraft(&self) -> Result<Arc<openraft::Config>, RaftGroupError> {
        let config = openraft::Config {
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            ..Default::default()
        };
        config
            .validate()
            .map(Arc::new)
            .map_err(|e| RaftGroupError::Config(e.to_string()))
    }
}

/// Maps a failed client write (proposal or membership change) to the facility's error.
pub(super) fn write_error(
    group: GroupId,
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> RaftGroupError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            RaftGroupError::NotLeader {
                group,
                leader: forward.leader_id,
            }
        }
        RaftError::Fatal(fatal) => RaftGroupError::Stopped {
            group,
            message: fatal.to_string(),
        },
        RaftError::APIError(e) => RaftGroupError::Raft {
            group,
            message: e.to_string(),
        },
    }
}

fn storage_error(group: GroupId, e: &dyn std::fmt::Display) -> RaftGroupError {
    RaftGroupError::Storage {
        group,
        message: e.to_string(),
    }
}

/// Connections of a node's Raft transport since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    /// Outgoing connections this node opened (one per peer unless a link broke).
    pub dialled: u64,
    /// Incoming connections its listener accepted.
    pub accepted: u64,
}

/// How a group starts on this node.
#[derive(Debug, Clone)]
pub enum GroupStart {
    /// A brand-new group with these voters (node id -> Raft address). Every initial member
    /// opens it with the same map; a node that already holds the group's state ignores it,
    /// so restarting with `Bootstrap` is harmless.
    Bootstrap(BTreeMap<NodeId, String>),
    /// Join an existing group: wait for its leader to replicate (or snapshot) everything,
    /// e.g. after this node's data was lost, or as a newly added member. A node that lost
    /// its data must use this, not `Bootstrap`: it must not invent a membership of its own.
    Join,
}

/// How long one snapshot RPC of a partition group may take. openraft's default (200 ms) is
/// shorter than installing a snapshot of some MiB of retained batches; past it the leader
/// would copy and send the whole snapshot again.
const PARTITION_SNAPSHOT_RPC_TIMEOUT_MS: u64 = 30_000;

/// A node hosting many Raft groups.
pub struct RaftNode {
    pub(super) config: RaftNodeConfig,
    raft_config: Arc<openraft::Config>,
    /// Partition groups never purge their log after a snapshot: their log is the Kafka
    /// log, which only retention (through [`RaftNode::purge_through`]) may shorten. Their
    /// snapshot RPCs may take long: the last chunk is answered once the retained batches it
    /// carries are in the replica's log.
    partition_config: Arc<openraft::Config>,
    addr: SocketAddr,
    router: Arc<Router>,
    pub(super) peers: Arc<Peers>,
    /// The listener task; taken by the first shutdown.
    server: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl RaftNode {
    /// Starts serving Raft traffic on `listener`. No group is open yet.
    pub async fn start(
        config: RaftNodeConfig,
        listener: TcpListener,
    ) -> Result<Self, RaftGroupError> {
        let raft_config = config.openraft()?;
        let partition_config = Arc::new(openraft::Config {
            max_in_snapshot_log_to_keep: u64::MAX,
            install_snapshot_timeout: PARTITION_SNAPSHOT_RPC_TIMEOUT_MS,
            ..(*raft_config).clone()
        });
        std::fs::create_dir_all(config.data_dir.join("groups"))?;
        let addr = listener.local_addr()?;
        let router = Arc::new(Router::default());
        let server = tokio::spawn(server::run(listener, router.clone()));
        let peers = Arc::new(Peers::with_dial(config.dial.clone()));
        Ok(Self {
            config,
            raft_config,
            partition_config,
            addr,
            router,
            peers,
            server: std::sync::Mutex::new(Some(server)),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// The address the Raft listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.config
            .data_dir
            .join("groups")
            .join(group.0.to_string())
    }

    /// Opens `group` on this node, recovering its log and snapshot from disk, with `machine`
    /// as its state machine (restored from the snapshot, then fed the committed entries).
    /// Its Raft log is a redb file of its own (the controller and service groups).
    pub async fn open_group(
        &self,
        group: GroupId,
        start: GroupStart,
        machine: Box<dyn StateMachine>,
    ) -> Result<(), RaftGroupError> {
        if self.router.get(group).is_some() {
            return Err(RaftGroupError::GroupExists(group));
        }
        let dir = self.group_dir(group);
        let log_store = GroupLogStore::open(&dir).map_err(|e| storage_error(group, &e))?;
        let state_machine =
            GroupStateMachine::open(&dir, machine).map_err(|e| storage_error(group, &e))?;
        let config = self.raft_config.clone();
        self.run_group(group, start, config, log_store, state_machine)
            .await
    }

    /// Opens a partition group: like [`RaftNode::open_group`], but its Raft log IS the
    /// partition's Kafka log (`<group dir>/log`, configured by `log_config`): every
    /// proposal must be exactly one v2 record batch, stored once with its term as the
    /// partitionLeaderEpoch. Returns the shared log, which the broker reads (Fetch) up to
    /// its high watermark.
    pub async fn open_partition_group(
        &self,
        group: GroupId,
        start: GroupStart,
        machine: Box<dyn StateMachine>,
        log_config: LogConfig,
    ) -> Result<Arc<PartitionRaftLog>, RaftGroupError> {
        if self.router.get(group).is_some() {
            return Err(RaftGroupError::GroupExists(group));
        }
        let dir = self.group_dir(group);
        // Opening scans the batch headers once; like the redb open, done in place.
        let shared =
            PartitionRaftLog::open(&dir, log_config).map_err(|e| storage_error(group, &e))?;
        let state_machine = GroupStateMachine::open_partition(&dir, machine, shared.clone())
            .map_err(|e| storage_error(group, &e))?;
        let log_store = PartitionLogStore::new(shared.clone());
        let config = self.partition_config.clone();
        self.run_group(group, start, config, log_store, state_machine.clone())
            .await?;
        state_machine.attach_retained().await;
        self.router.mark_partition(group);
        Ok(shared)
    }

    async fn run_group<LS>(
        &self,
        group: GroupId,
        start: GroupStart,
        raft_config: Arc<openraft::Config>,
        log_store: LS,
        state_machine: GroupStateMachine,
    ) -> Result<(), RaftGroupError>
    where
        LS: RaftLogStorage<TypeConfig>,
    {
        let network = GroupNetworkFactory {
            group,
            peers: self.peers.clone(),
        };
        let raft = Raft::new(
            self.config.node_id,
            raft_config,
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| RaftGroupError::Stopped {
            group,
            message: e.to_string(),
        })?;
        if let GroupStart::Bootstrap(members) = start {
            let members: BTreeMap<NodeId, BasicNode> = members
                .into_iter()
                .map(|(id, addr)| (id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                // NotAllowed: the group already has state (a restart); nothing to do.
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(RaftGroupError::Raft {
                        group,
                        message: e.to_string(),
                    });
                }
            }
        }
        if !self.router.insert(group, raft.clone()) {
            let _ = raft.shutdown().await;
            return Err(RaftGroupError::GroupExists(group));
        }
        Ok(())
    }

    /// Stops `group` on this node and forgets it; its data stays on disk, so opening it again
    /// recovers it (as after a node restart). Peers see the group as unknown meanwhile.
    pub async fn close_group(&self, group: GroupId) -> Result<(), RaftGroupError> {
        let raft = self
            .router
            .remove(group)
            .ok_or(RaftGroupError::UnknownGroup(group))?;
        raft.shutdown().await.map_err(|e| RaftGroupError::Stopped {
            group,
            message: e.to_string(),
        })
    }

    /// The groups open on this node, in id order.
    pub fn groups(&self) -> Vec<GroupId> {
        self.router.ids()
    }

    /// `group`'s role, term, leader, log position and (on the leader) follower lag here.
    pub fn status(&self, group: GroupId) -> Result<GroupStatus, RaftGroupError> {
        let metrics = self.metrics(group)?;
        Ok(GroupStatus::from_metrics(group, &metrics))
    }

    pub(super) fn raft(&self, group: GroupId) -> Result<Raft, RaftGroupError> {
        self.router
            .get(group)
            .ok_or(RaftGroupError::UnknownGroup(group))
    }

    /// A partition group takes exactly one non-control v2 batch per command; refused
    /// before anything is written.
    fn check_command(&self, group: GroupId, command: &[u8]) -> Result<(), RaftGroupError> {
        if self.router.is_partition(group) {
            control_batch::validate_command(command).map_err(|e| RaftGroupError::BadCommand {
                group,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Replicates `command` through `group` and returns what the state machine answered once
    /// a majority has it and it is applied here. Only the leader accepts proposals.
    pub async fn propose(
        &self,
        group: GroupId,
        command: Vec<u8>,
    ) -> Result<Vec<u8>, RaftGroupError> {
        let raft = self.raft(group)?;
        self.check_command(group, &command)?;
        raft.client_write(Command(command))
            .await
            .map(|response| response.data.0)
            .map_err(|e| write_error(group, e))
    }

    /// Like [`RaftNode::propose`], but returns as soon as the command has its place in the
    /// group's log order; the returned future then answers once it is committed and
    /// applied. Commands queued one after another this way are replicated in that order
    /// and several at once (a producer pipelining batches).
    pub async fn propose_queued(
        &self,
        group: GroupId,
        command: Vec<u8>,
    ) -> Result<
        impl std::future::Future<Output = Result<Vec<u8>, RaftGroupError>> + Send + use<>,
        RaftGroupError,
    > {
        let raft = self.raft(group)?;
        self.check_command(group, &command)?;
        let answer =
            raft.client_write_ff(Command(command))
                .await
                .map_err(|e| RaftGroupError::Stopped {
                    group,
                    message: e.to_string(),
                })?;
        Ok(async move {
            match answer.await {
                Ok(Ok(response)) => Ok(response.data.0),
                Ok(Err(e)) => Err(write_error(group, RaftError::APIError(e))),
                Err(_) => Err(RaftGroupError::Stopped {
                    group,
                    message: "the group stopped before answering".to_string(),
                }),
            }
        })
    }

    /// Adds node `node` (Raft address `addr`) to `group` as a voter: it first joins as a
    /// learner and catches up (the call waits for that), then the leader commits the joint
    /// and the final membership. The new node must have opened the group with
    /// [`GroupStart::Join`]. Leader only.
    pub async fn add_member(
        &self,
        group: GroupId,
        node: NodeId,
        addr: String,
    ) -> Result<(), RaftGroupError> {
        change_members(&self.raft(group)?, group, MemberChange::Add { node, addr }).await
    }

    /// Removes node `node` from `group`'s members (not kept as a learner). Leader only.
    pub async fn remove_member(&self, group: GroupId, node: NodeId) -> Result<(), RaftGroupError> {
        change_members(&self.raft(group)?, group, MemberChange::Remove { node }).await
    }

    /// On `group`'s leader: waits (at most `limit`) until every entry in its log is applied
    /// here, entries of earlier terms included. A check made against the state machine
    /// afterwards sees every entry that can still commit, which is what a leader needs
    /// before it decides a retried request is new (the idempotent producer). `NotLeader`
    /// when this node does not lead, or stops leading while it waits.
    pub async fn wait_leader_applied(
        &self,
        group: GroupId,
        limit: Duration,
    ) -> Result<(), RaftGroupError> {
        let raft = self.raft(group)?;
        let me = self.config.node_id;
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(me) {
            return Err(RaftGroupError::NotLeader {
                group,
                leader: metrics.current_leader,
            });
        }
        let target = metrics.last_log_index;
        if metrics.last_applied.map(|id| id.index) >= target {
            return Ok(());
        }
        let caught_up = raft
            .wait(Some(limit))
            .metrics(
                |m| m.current_leader != Some(me) || m.last_applied.map(|id| id.index) >= target,
                "leader applied its log",
            )
            .await
            .map_err(|e| RaftGroupError::Raft {
                group,
                message: e.to_string(),
            })?;
        if caught_up.current_leader != Some(me) {
            return Err(RaftGroupError::NotLeader {
                group,
                leader: caught_up.current_leader,
            });
        }
        Ok(())
    }

    /// Whether this node leads `group` with a majority that acknowledged it within `lease`.
    /// A leader cut off from its peers keeps its role until it hears a higher term; this is
    /// false for it, so it is not advertised as the leader and refuses client writes early.
    pub fn leads(&self, group: GroupId, lease: Duration) -> bool {
        let Ok(raft) = self.raft(group) else {
            return false;
        };
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let alone = metrics.membership_config.membership().voter_ids().count() <= 1;
        metrics.current_leader == Some(self.config.node_id)
            && (alone
                || metrics
                    .millis_since_quorum_ack
                    .is_some_and(|age| age <= lease_ms))
    }

    /// Initializes `group`, opened with [`GroupStart::Join`], as [`GroupStart::Bootstrap`]
    /// would have: with these voters, and this node standing for election at once. Nothing
    /// happens if the group already has state here. For a group whose first member was
    /// meant to bootstrap it but never did (it was down).
    pub async fn bootstrap(
        &self,
        group: GroupId,
        members: BTreeMap<NodeId, String>,
    ) -> Result<(), RaftGroupError> {
        let members: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.raft(group)?.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(RaftGroupError::Raft {
                group,
                message: e.to_string(),
            }),
        }
    }

    /// Purges `group`'s log on this node through entry `index` (retention of a partition
    /// group, whose log openraft never purges by itself). openraft purges only entries a
    /// snapshot covers, so this asks for a snapshot first when the last one is older; the
    /// purge may then happen a moment later, and calling again is harmless.
    pub async fn purge_through(&self, group: GroupId, index: u64) -> Result<(), RaftGroupError> {
        let raft = self.raft(group)?;
        let snapshot = raft.metrics().borrow().snapshot.map(|id| id.index);
        let stopped = |e: openraft::error::Fatal<NodeId>| RaftGroupError::Stopped {
            group,
            message: e.to_string(),
        };
        if snapshot < Some(index) {
            raft.trigger().snapshot().await.map_err(stopped)?;
        }
        raft.trigger().purge_log(index).await.map_err(stopped)
    }

    /// Stands for election in `group` now. Peers that heard from a leader within their
    /// lease refuse; a leader grants it once its own vote is older than its lease, if this
    /// node's log is as long as its own, and then steps down. That is how a group's
    /// preferred replica takes its leadership back when it returns (openraft 0.9 has no
    /// leader transfer).
    pub async fn campaign(&self, group: GroupId) -> Result<(), RaftGroupError> {
        self.raft(group)?
            .trigger()
            .elect()
            .await
            .map_err(|e| RaftGroupError::Stopped {
                group,
                message: e.to_string(),
            })
    }

    /// The leader of `group` as this node knows it.
    pub fn leader(&self, group: GroupId) -> Result<Option<NodeId>, RaftGroupError> {
        Ok(self.raft(group)?.metrics().borrow().current_leader)
    }

    /// openraft's metrics of `group` on this node: state, term, last log / applied index,
    /// leader, membership and (on the leader) each follower's replication progress.
    pub fn metrics(
        &self,
        group: GroupId,
    ) -> Result<RaftMetrics<NodeId, BasicNode>, RaftGroupError> {
        Ok(self.raft(group)?.metrics().borrow().clone())
    }

    /// Node-to-node connection counts: every group shares one connection per peer, so in a
    /// healthy cluster each count stays at the number of peers.
    pub fn transport_stats(&self) -> TransportStats {
        TransportStats {
            dialled: self.peers.dialled(),
            accepted: self.router.accepted(),
        }
    }

    /// The data directory of `group` on this node.
    pub fn group_data_dir(&self, group: GroupId) -> PathBuf {
        self.group_dir(group)
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Stops every group and the listener, and drops the peer connections. The data
    /// directory can be reopened by a new `RaftNode` afterwards.
    pub async fn shutdown(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            server.abort();
            // Wait for the listener (and with it every inbound connection) to be gone.
            let _ = server.await;
        }
        for (group, raft) in self.router.drain() {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(%group, error = %e, "raft group did not stop cleanly");
            }
        }
        self.peers.clear();
    }
}
