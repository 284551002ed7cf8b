//! Which node coordinates a group, and taking over when that changes (a cluster).
//!
//! On one node this node coordinates every group. In a cluster a group belongs to one
//! `__consumer_offsets` partition (by Kafka's hash of its id) and is coordinated by that
//! partition's leader: FindCoordinator names it, other nodes answer NOT_COORDINATOR, and the
//! offsets it commits are replicated with the partition. When a node becomes the leader of
//! an offsets partition it first applies its whole log and replays the partition into
//! memory (COORDINATOR_LOAD_IN_PROGRESS meanwhile), replacing whatever it knew of those
//! groups, so it continues from every offset the previous coordinator acknowledged.

use super::offsets;
use super::{GroupCoordinator, OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::broker::Broker;
use kafka_protocol::ResponseError;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often leadership of the offsets partitions is checked.
const OWNERSHIP_CHECK: Duration = Duration::from_millis(200);

impl GroupCoordinator {
    /// The `__consumer_offsets` partition of `group_id`.
    pub fn partition_of(group_id: &str) -> i32 {
        offsets::partition_for(group_id, OFFSETS_PARTITIONS)
    }

    /// Ok when this node coordinates `group_id`: always on one node; in a cluster, when it
    /// leads the group's offsets partition and has loaded it.
    pub fn owns(&self, broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
        if broker.replication().is_none() {
            return Ok(());
        }
        let index = Self::partition_of(group_id);
        let leading = broker
            .topic(OFFSETS_TOPIC)
            .and_then(|topic| topic.partition(index).cloned())
            .is_some_and(|partition| partition.is_leader());
        if !leading {
            return Err(ResponseError::NotCoordinator);
        }
        if !self.lock().loaded.contains(&index) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(())
    }

    /// Replays offsets partition `index` into memory, replacing what was known of its
    /// groups. Called on the partition's leader after it applied its whole log.
    fn reload(&self, broker: &Broker, index: i32) -> crate::error::Result<()> {
        let Some(partition) = broker
            .topic(OFFSETS_TOPIC)
            .and_then(|topic| topic.partition(index).cloned())
        else {
            return Ok(());
        };
        let mut inner = self.lock();
        let ours = |group: &String| Self::partition_of(group) == index;
        inner.groups.retain(|group, _| !ours(group));
        inner.consumer_groups.retain(|group, _| !ours(group));
        inner.offsets.retain(|group, _| !ours(group));
        super::store::replay(&mut inner, &partition)?;
        inner.loaded.insert(index);
        tracing::info!(
            partition = index,
            "took over coordinating the groups of {OFFSETS_TOPIC}"
        );
        Ok(())
    }
}

/// Follows leadership of the offsets partitions on a cluster node (nothing on one node):
/// loads a partition's groups when this node starts leading it, and forgets that it had
/// when it stops.
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
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            continue;
        };
        let loaded: BTreeSet<i32> = broker.groups().lock().loaded.clone();
        for partition in &topic.partitions {
            let index = partition.index;
            let leading = partition.is_leader();
            if !leading {
                if loaded.contains(&index) {
                    broker.groups().lock().loaded.remove(&index);
                }
                continue;
            }
            if loaded.contains(&index) {
                continue;
            }
            let Some(replica) = partition.replica() else {
                continue;
            };
            // Everything the previous leader committed is applied here before the replay.
            if let Err(error) = replica.caught_up().await {
                tracing::debug!(partition = index, %error, "not caught up yet");
                continue;
            }
            let reloading = broker.clone();
            let result =
                tokio::task::spawn_blocking(move || reloading.groups().reload(&reloading, index))
                    .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(partition = index, %error, "could not load the offsets partition")
                }
                Err(error) => tracing::error!(%error, "loading an offsets partition failed"),
            }
        }
    }
}
