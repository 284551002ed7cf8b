//! Coordinators that live on partition leaders (a cluster): the group coordinator on the
//! leaders of `__consumer_offsets`, the transaction coordinator on the leaders of
//! `__transaction_state`. Each keeps its records in its topic and holds in memory only the
//! partitions this node leads and has loaded. This task follows leadership: when the node
//! starts leading a partition it applies its whole log (entries the previous leader may
//! have committed) and then loads the partition, replacing whatever it knew of it; when it
//! stops leading one it forgets it, so it never acts on state another node now owns.

use crate::broker::Broker;
use crate::error::Result;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often leadership of the coordinators' partitions is checked.
const OWNERSHIP_CHECK: Duration = Duration::from_millis(200);

/// A coordinator whose state is kept in the partitions of one internal topic.
pub trait PartitionCoordinator: Send + Sync {
    /// The internal topic holding the coordinator's records.
    fn topic(&self) -> &'static str;
    /// The partitions it has loaded (and so coordinates while it leads them).
    fn loaded(&self) -> BTreeSet<i32>;
    /// Drops what it holds of partition `index`: another node leads it now.
    fn forget(&self, index: i32);
    /// Replays partition `index` into memory, replacing what was known of it. Blocking.
    fn load(&self, broker: &Broker, index: i32) -> Result<()>;
}

/// Why this node may not act as the coordinator of something kept in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOwned {
    /// Another node leads the partition, or none does (NOT_COORDINATOR).
    NotLeader,
    /// This node leads it but has not loaded it yet (COORDINATOR_LOAD_IN_PROGRESS).
    Loading,
}

/// Whether this node coordinates what partition `index` of `topic` holds: always on one
/// node; in a cluster when it leads the partition and `loaded` says it has replayed it.
pub fn check_owned(
    broker: &Broker,
    topic: &str,
    index: i32,
    loaded: impl FnOnce() -> bool,
) -> std::result::Result<(), NotOwned> {
    if broker.replication().is_none() {
        return Ok(());
    }
    let leading = broker
        .topic(topic)
        .and_then(|topic| topic.partition(index).cloned())
        .is_some_and(|partition| partition.is_leader());
    if !leading {
        return Err(NotOwned::NotLeader);
    }
    if !loaded() {
        return Err(NotOwned::Loading);
    }
    Ok(())
}

/// The coordinators of a node, by name, so the loop can reach them from a blocking task.
#[derive(Debug, Clone, Copy)]
enum Coordinator {
    Groups,
    Transactions,
}

impl Coordinator {
    fn of(self, broker: &Broker) -> &dyn PartitionCoordinator {
        match self {
            Coordinator::Groups => broker.groups(),
            Coordinator::Transactions => &broker.transactions,
        }
    }
}

/// Follows leadership of the coordinators' partitions on a cluster node (nothing on one
/// node, where this node coordinates everything from the start).
pub async fn run_ownership(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    if broker.replication().is_none() {
        return;
    }
    let mut ticker = tokio::time::interval(OWNERSHIP_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        for coordinator in [Coordinator::Groups, Coordinator::Transactions] {
            follow(&broker, coordinator).await;
        }
    }
}

/// One pass over one coordinator's partitions.
async fn follow(broker: &Arc<Broker>, coordinator: Coordinator) {
    let topic_name = coordinator.of(broker).topic();
    let Some(topic) = broker.topic(topic_name) else {
        return;
    };
    // A coordinator's lock may be held across Raft appends (a blocking thread waiting for
    // a majority): take it on a blocking thread too, never on a runtime worker.
    let Some(loaded) = blocking(broker, move |broker| coordinator.of(broker).loaded()).await else {
        return;
    };
    for partition in &topic.partitions {
        let index = partition.index;
        if !partition.is_leader() {
            if loaded.contains(&index) {
                blocking(broker, move |broker| coordinator.of(broker).forget(index)).await;
            }
            continue;
        }
        if loaded.contains(&index) {
            continue;
        }
        let Some(replica) = partition.replica() else {
            continue;
        };
        if let Err(error) = replica.caught_up().await {
            tracing::debug!(topic = topic_name, partition = index, %error, "not caught up yet");
            continue;
        }
        let result = blocking(broker, move |broker| {
            coordinator.of(broker).load(broker, index)
        })
        .await;
        match result {
            Some(Ok(())) => tracing::info!(
                topic = topic_name,
                partition = index,
                "took over coordinating this partition's {coordinator:?}"
            ),
            Some(Err(error)) => {
                tracing::error!(topic = topic_name, partition = index, %error, "could not load the partition")
            }
            None => {}
        }
    }
}

/// Runs `work` on a blocking thread; `None` if it panicked (logged).
async fn blocking<T: Send + 'static>(
    broker: &Arc<Broker>,
    work: impl FnOnce(&Broker) -> T + Send + 'static,
) -> Option<T> {
    let broker = broker.clone();
    match tokio::task::spawn_blocking(move || work(&broker)).await {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::error!(%error, "a coordinator task failed");
            None
        }
    }
}
