//! Replication: the broker's partitions as Raft groups, driven by the controller.
//!
//! In a cluster the controller group (see `controller`) is the one source of topics: a
//! CreateTopics or an auto-creation is a controller command with the replica placement
//! and group ids fixed before it is proposed, and every node's reconciler opens the
//! partition groups it holds a replica of when it applies that command (and closes and
//! removes them when a topic is deleted). A partition group's Raft log is its Kafka log
//! (the storage crate stores each entry once, as the batch, with the term as leader
//! epoch).
//!
//! - `replica.rs`: one partition's group on this node: leader checks and the produce path.
//! - `machine.rs`: the partition state machine (producer state, the committed end).
//! - `topics.rs`: topic creation and deletion through the controller.
//! - `admin.rs`: config changes and added partitions through the controller.
//! - `reconcile.rs`: the task that makes this node's partitions match the metadata.
//! - `balance.rs`: preferred replicas taking their leadership back.
//! - `membership.rs`: a partition leader moving its group's voters to the replicas the
//!   metadata names (a node added or removed).
//! - `ownership.rs`: the group and transaction coordinators following the leaders of
//!   their internal topics' partitions.
//! - `coordinator_writes.rs`: markers and transactional offsets proposed to partition
//!   groups led anywhere.

mod admin;
mod balance;
mod coordinator_writes;
mod machine;
mod membership;
pub mod ownership;
mod reconcile;
mod replica;
mod topics;

pub use balance::run_leader_balancer;
pub use machine::{MarkerObserver, PartitionMachine};
pub use ownership::run_ownership;
pub use reconcile::run_reconciler;
pub use replica::{LEADER_LEASE, Replica};

use crate::controller::{CONTROLLER_GROUP, MetadataView};
use crate::error::{BrokerError, Result};
use commerce_storage::raft::{GroupId, RaftNode};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Replication factor of a topic created without one: Kafka's usual 3, or every node of a
/// smaller cluster.
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// What the broker needs of the cluster: this node's Raft groups and the controller's
/// metadata as applied here.
pub struct Replication {
    pub raft: Arc<RaftNode>,
    pub metadata: MetadataView,
    pub node_id: u64,
    /// Partition groups whose membership this node (their leader) is changing now.
    changing: Mutex<BTreeSet<u64>>,
}

impl Replication {
    pub fn new(raft: Arc<RaftNode>, metadata: MetadataView, node_id: u64) -> Replication {
        Replication {
            raft,
            metadata,
            node_id,
            changing: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn controller_group() -> GroupId {
        GroupId(CONTROLLER_GROUP)
    }

    /// The controller group's leader as this node knows it.
    /// How many voters the controller group has: the nodes the cluster was formed with (or
    /// has grown or shrunk to).
    pub fn controller_voters(&self) -> usize {
        self.raft
            .metrics(Self::controller_group())
            .map(|metrics| metrics.membership_config.membership().voter_ids().count())
            .unwrap_or(0)
    }

    pub fn controller_leader(&self) -> Option<u64> {
        self.raft.leader(Self::controller_group()).ok().flatten()
    }
}

/// Retention of every partition replica on this node (see [`Replica::enforce_retention`]);
/// the node's maintenance calls it beside `Broker::run_maintenance`.
pub async fn enforce_retention(broker: &crate::broker::Broker, now_ms: i64) {
    for topic in broker.topics() {
        for partition in &topic.partitions {
            let Some(replica) = partition.replica() else {
                continue;
            };
            if let Err(error) = replica.enforce_retention(now_ms).await {
                tracing::debug!(topic = %topic.name, partition = partition.index, %error, "retention purge not done yet");
            }
        }
    }
}

/// Runs `future` to completion from synchronous code on a tokio worker (or blocking)
/// thread: the worker hands its other tasks to the rest of the pool meanwhile. For the
/// in-process callers (services, the group coordinator, admin paths) whose APIs are
/// synchronous; the Kafka produce path awaits instead.
pub fn wait_blocking<F: Future>(future: F) -> Result<F::Output> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| BrokerError::Replication("no async runtime to wait on".to_string()))?;
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        return Err(BrokerError::Replication(
            "a cluster node needs the multi-threaded runtime".to_string(),
        ));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(future)))
}
