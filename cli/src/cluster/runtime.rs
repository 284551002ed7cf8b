//! A cluster node's Raft side: its Raft listener and groups, the controller group it forms
//! (or joins) with its peers, and its registration in the cluster metadata.
//!
//! Forming: every initial voter opens the controller group with the same voter map from
//! `--peers`; openraft lets them all initialize with it, and a node that already holds the
//! group's state (a restart) ignores it. A node whose data was wiped initializes with that
//! same first membership entry, which the leader then overwrites with its log; a node added
//! later starts with `--join` and waits for the leader to bring it in.

use super::peers::ClusterSettings;
use anyhow::Context;
use commerce_broker::controller::{
    CONTROLLER_GROUP, ControllerAnswer, ControllerCommand, ControllerMachine, MetadataView,
    NodeRecord, decode_answer, drain_plan, encode,
};
use commerce_broker::metadata_store::new_cluster_id;
use commerce_storage::raft::{
    GroupId, GroupStart, GroupStatus, MemberChange, RaftGroupError, RaftNode, RaftNodeConfig, Role,
};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long adding a node to a service group may take (it catches up first).
const MEMBER_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The services' Raft groups, which every node of the cluster hosts.
fn service_groups() -> impl Iterator<Item = GroupId> {
    crate::services::SERVICE_GROUPS
        .iter()
        .filter_map(|name| crate::services::service_group(name))
}

/// Wait between attempts to register while the controller has no leader yet.
const REGISTER_RETRY: Duration = Duration::from_millis(500);
/// How long `add_node` waits for the added node to register, and how often it looks.
const REGISTER_WAIT: Duration = Duration::from_secs(30);
const REGISTER_POLL: Duration = Duration::from_millis(50);

pub struct ClusterRuntime {
    raft: Arc<RaftNode>,
    metadata: MetadataView,
    registration: JoinHandle<()>,
}

pub const fn controller_group() -> GroupId {
    GroupId(CONTROLLER_GROUP)
}

impl ClusterRuntime {
    /// Starts the Raft listener, opens the controller group and registers `me` in the
    /// background (it succeeds once the controller has a leader).
    pub async fn start(
        settings: &ClusterSettings,
        data_dir: &Path,
        me: NodeRecord,
        tuning: crate::config::RaftTuning,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<ClusterRuntime> {
        let listener = TcpListener::bind(settings.raft_addr)
            .await
            .with_context(|| format!("cannot listen for Raft on {}", settings.raft_addr))?;
        let mut config = RaftNodeConfig::new(settings.node_id, data_dir.join("raft"));
        tuning.apply(&mut config);
        config.dial = settings
            .dial
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        let raft = RaftNode::start(config, listener)
            .await
            .context("cannot start the Raft node")?;
        let (machine, metadata) = ControllerMachine::new();
        let start = if settings.join {
            GroupStart::Join
        } else {
            GroupStart::Bootstrap(
                settings
                    .peers
                    .iter()
                    .map(|(id, addr)| (*id, addr.to_string()))
                    .collect(),
            )
        };
        raft.open_group(controller_group(), start, Box::new(machine))
            .await
            .context("cannot open the controller group")?;
        let raft = Arc::new(raft);
        let registration = tokio::spawn(register(raft.clone(), me, stopped));
        Ok(ClusterRuntime {
            raft,
            metadata,
            registration,
        })
    }

    /// The node's Raft groups (the broker opens its partition groups on it).
    pub fn raft(&self) -> Arc<RaftNode> {
        self.raft.clone()
    }

    /// The controller's metadata as applied on this node.
    pub fn metadata(&self) -> MetadataView {
        self.metadata.clone()
    }

    /// This node's view of the cluster, for `/cluster/status`.
    pub fn status(&self) -> NodeStatus {
        let metadata = self.metadata.current();
        let partitions: std::collections::BTreeMap<u64, String> = metadata
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(move |(index, placed)| (placed.group, format!("{}-{index}", topic.name)))
            })
            .collect();
        let groups = self
            .raft
            .groups()
            .into_iter()
            .filter_map(|group| self.raft.status(group).ok())
            .map(|status| {
                let group = status.group;
                let mut view = GroupView::from(status);
                view.partition = partitions.get(&view.group).cloned();
                if view.role == "leader" {
                    view.has_majority =
                        Some(self.raft.leads(group, crate::services::leadership::LEASE));
                }
                view
            })
            .collect();
        NodeStatus {
            node_id: self.raft.node_id(),
            raft_addr: self.raft.addr().to_string(),
            groups,
            nodes: metadata.nodes.into_values().collect(),
            topics: metadata.topics.len(),
        }
    }

    /// Adds node `id` (Raft listener `raft_addr`, started with `--join`) to the controller
    /// group: it catches up as a learner, then becomes a voter. Returns once the node has
    /// registered too, so replicas can be placed on it right away. Controller leader only.
    pub async fn add_node(&self, id: u64, raft_addr: String) -> Result<(), MembershipError> {
        self.leading()?;
        self.raft
            .add_member(controller_group(), id, raft_addr.clone())
            .await
            .map_err(|error| MembershipError::Raft(error.to_string()))?;
        let deadline = tokio::time::Instant::now() + REGISTER_WAIT;
        while !self.metadata.current().nodes.contains_key(&id) {
            if tokio::time::Instant::now() >= deadline {
                return Err(MembershipError::Raft(format!(
                    "node {id} joined the controller group but did not register within {REGISTER_WAIT:?}"
                )));
            }
            tokio::time::sleep(REGISTER_POLL).await;
        }
        // Every service's state is replicated on it too (it opened those groups with
        // `--join`): it catches up as a learner of each, then votes.
        for group in service_groups() {
            let add = MemberChange::Add {
                node: id,
                addr: raft_addr.clone(),
            };
            self.change_service_group(group, add).await?;
        }
        Ok(())
    }

    /// Starts taking node `id` out of the cluster's data: its partition replicas are
    /// reassigned to the other nodes (with the preferred leaders kept spread over them: see
    /// [`drain_plan`]) and it leaves every service group. The partitions' leaders move the
    /// replicas in the background; `commerce cluster remove-node` watches them through
    /// `/cluster/status` and then calls [`ClusterRuntime::remove_node`]. Idempotent: once
    /// the placement holds nothing of `id`, proposes nothing. Controller leader only.
    pub async fn drain_node(&self, id: u64) -> Result<(), MembershipError> {
        self.leading()?;
        let metadata = self.metadata.current();
        if !metadata.nodes.contains_key(&id) {
            return Err(MembershipError::Refused(format!(
                "no node {id} in the cluster"
            )));
        }
        if !metadata.leaving.contains(&id) {
            // First, so no topic created from now on is placed on the node.
            self.apply(ControllerCommand::MarkLeaving { id }).await?;
        }
        let plan = drain_plan(&metadata, id)
            .map_err(|error| MembershipError::Refused(error.to_string()))?;
        for (name, partition, replicas) in plan {
            tracing::info!(topic = %name, partition, ?replicas, node = id, "reassigning a partition off a leaving node");
            self.apply(ControllerCommand::ReassignPartition {
                name,
                partition,
                replicas,
            })
            .await?;
        }
        for group in service_groups() {
            self.change_service_group(group, MemberChange::Remove { node: id })
                .await?;
        }
        Ok(())
    }

    /// Removes node `id` from the cluster: drains it ([`ClusterRuntime::drain_node`]),
    /// then, once no group this node leads still counts it among its voters, takes it out
    /// of the cluster metadata and the controller group. Refused while a replica is still
    /// moving, so the node keeps serving what it holds until the last move is done (the
    /// command waits for that through every node's status first). Controller leader only.
    pub async fn remove_node(&self, id: u64) -> Result<(), MembershipError> {
        self.drain_node(id).await?;
        let still: Vec<String> = self
            .raft
            .groups()
            .into_iter()
            .filter(|group| *group != controller_group())
            .filter_map(|group| self.raft.status(group).ok())
            .filter(|status| status.role == Role::Leader && status.voters.contains(&id))
            .map(|status| status.group.to_string())
            .collect();
        if !still.is_empty() {
            return Err(MembershipError::StillReplicating(format!(
                "node {id} is still a voter of {}; its replicas are moving (see `commerce cluster status`)",
                still.join(", ")
            )));
        }
        self.apply(ControllerCommand::RemoveNode { id }).await?;
        self.raft
            .remove_member(controller_group(), id)
            .await
            .map_err(|error| MembershipError::Raft(error.to_string()))
    }

    /// Makes `change` to a service group through its leader, wherever it is, trying again
    /// while the group elects one (a preferred leader taking over, a leader just killed) or
    /// a step times out, until [`MEMBER_CHANGE_TIMEOUT`]. Each change is idempotent.
    async fn change_service_group(
        &self,
        group: GroupId,
        change: MemberChange,
    ) -> Result<(), MembershipError> {
        let deadline = tokio::time::Instant::now() + MEMBER_CHANGE_TIMEOUT;
        loop {
            let result = self
                .raft
                .change_members_anywhere(group, change.clone(), MEMBER_CHANGE_TIMEOUT)
                .await;
            match result {
                Ok(()) => return Ok(()),
                Err(
                    error @ (RaftGroupError::NotLeader { .. }
                    | RaftGroupError::Forward { .. }
                    | RaftGroupError::Raft { .. }),
                ) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(%group, %error, "service group membership change not made yet; retrying");
                    tokio::time::sleep(REGISTER_RETRY).await;
                }
                Err(error) => return Err(MembershipError::Raft(error.to_string())),
            }
        }
    }

    /// Proposes `command` to the controller group (this node leads it) and maps a refusal.
    async fn apply(&self, command: ControllerCommand) -> Result<(), MembershipError> {
        let command = encode(&command).map_err(|error| MembershipError::Raft(error.to_string()))?;
        let answer = self
            .raft
            .propose(controller_group(), command)
            .await
            .map_err(|error| MembershipError::Raft(error.to_string()))?;
        match decode_answer(&answer) {
            Ok(ControllerAnswer::Applied) => Ok(()),
            Ok(ControllerAnswer::Refused { message, .. }) => Err(MembershipError::Refused(message)),
            Err(error) => Err(MembershipError::Raft(error.to_string())),
        }
    }

    /// Ok on the controller leader; otherwise where the leader's HTTP gateway is.
    fn leading(&self) -> Result<(), MembershipError> {
        let leader = self
            .raft
            .leader(controller_group())
            .map_err(|error| MembershipError::Raft(error.to_string()))?;
        if leader == Some(self.raft.node_id()) {
            return Ok(());
        }
        let http = leader.and_then(|id| {
            self.metadata
                .current()
                .nodes
                .get(&id)
                .map(|node| node.http_addr.clone())
        });
        Err(MembershipError::NotLeader { leader, http })
    }

    /// Stops registration, every group and the Raft listener.
    pub async fn shutdown(self) {
        self.registration.abort();
        let _ = self.registration.await;
        self.raft.shutdown().await;
    }
}

/// Claims a cluster id, then registers `me`, each proposed until the controller answers
/// (both idempotent: a restart claims and registers again, and changes nothing). The claim
/// comes first so that the id is decided before this node is listed as a broker: the
/// first claim the controller applies, from whichever node, is the cluster's id.
async fn register(raft: Arc<RaftNode>, me: NodeRecord, mut stopped: watch::Receiver<bool>) {
    let claim = ControllerCommand::ClaimClusterId {
        id: new_cluster_id(),
    };
    let node = me.id;
    // (command, what it is, what its success means)
    for (command, what, done) in [
        (
            claim,
            "cluster id claim",
            "claimed a cluster id (the first claim is kept)",
        ),
        (
            ControllerCommand::RegisterNode(me),
            "registration",
            "registered in the cluster",
        ),
    ] {
        let Ok(command) = encode(&command) else {
            tracing::error!("cannot encode this node's {what} command");
            return;
        };
        loop {
            match raft.submit(controller_group(), command.clone()).await {
                Ok(answer) => match decode_answer(&answer) {
                    Ok(ControllerAnswer::Applied) => {
                        tracing::info!(node, "{done}");
                        break;
                    }
                    Ok(ControllerAnswer::Refused { message, .. }) => {
                        tracing::error!(%message, "the controller refused this node's {what}");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "unreadable controller answer"),
                },
                Err(error) => tracing::debug!(%error, "{what} not accepted yet; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(REGISTER_RETRY) => {}
                _ = stopped.changed() => return,
            }
        }
    }
}

/// Why a membership change was not made.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("this node does not lead the controller (leader: node {leader:?} at {http:?})")]
    NotLeader {
        leader: Option<u64>,
        http: Option<String>,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    StillReplicating(String),
    #[error("the controller group failed: {0}")]
    Raft(String),
}

/// One node's answer at `/cluster/status`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub raft_addr: String,
    pub groups: Vec<GroupView>,
    /// The nodes registered in the cluster metadata, as this node has applied it.
    pub nodes: Vec<NodeRecord>,
    pub topics: usize,
}

/// A Raft group as one node sees it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct GroupView {
    pub group: u64,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub voters: Vec<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// On the leader: entries each follower is behind.
    pub follower_lag: std::collections::BTreeMap<u64, u64>,
    pub stopped: Option<String>,
    /// The topic partition a partition group replicates (`orders-0`); none for the
    /// controller.
    #[serde(default)]
    pub partition: Option<String>,
    /// On the leader: whether a majority of the voters acknowledged it within the lease.
    /// A leader cut off from its majority still calls itself leader until it hears of a
    /// newer term; it leads nothing.
    #[serde(default)]
    pub has_majority: Option<bool>,
}

impl From<GroupStatus> for GroupView {
    fn from(status: GroupStatus) -> GroupView {
        GroupView {
            group: status.group.0,
            role: match status.role {
                Role::Leader => "leader",
                Role::Follower => "follower",
                Role::Candidate => "candidate",
                Role::Learner => "learner",
                Role::Stopped => "stopped",
            }
            .to_string(),
            term: status.term,
            leader: status.leader,
            voters: status.voters,
            last_log_index: status.last_log_index,
            last_applied_index: status.last_applied_index,
            follower_lag: status.follower_lag,
            stopped: status.stopped,
            partition: None,
            has_majority: None,
        }
    }
}
