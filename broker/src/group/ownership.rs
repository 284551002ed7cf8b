//! Which node coordinates a group (a cluster).
//!
//! On one node this node coordinates every group. In a cluster a group belongs to one
//! `__consumer_offsets` partition (by Kafka's hash of its id) and is coordinated by that
//! partition's leader: FindCoordinator names it, other nodes answer NOT_COORDINATOR, and the
//! offsets it commits are replicated with the partition. Taking over a partition when
//! leadership moves is `replication::ownership`'s: it loads the partition into memory
//! (COORDINATOR_LOAD_IN_PROGRESS meanwhile), so the new coordinator continues from every
//! offset the previous one acknowledged.

use super::offsets;
use super::{GroupCoordinator, OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::replication::ownership::{self, NotOwned, PartitionCoordinator};
use kafka_protocol::ResponseError;
use std::collections::BTreeSet;

impl GroupCoordinator {
    /// The `__consumer_offsets` partition of `group_id`.
    pub fn partition_of(group_id: &str) -> i32 {
        offsets::partition_for(group_id, OFFSETS_PARTITIONS)
    }

    /// Ok when this node coordinates `group_id`: always on one node; in a cluster, when it
    /// leads the group's offsets partition and has loaded it.
    pub fn owns(&self, broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
        let index = Self::partition_of(group_id);
        ownership::check_owned(broker, OFFSETS_TOPIC, index, || {
            self.lock().loaded.contains_key(&index)
        })
        .map_err(|unowned| match unowned {
            NotOwned::NotLeader => ResponseError::NotCoordinator,
            NotOwned::Loading => ResponseError::CoordinatorLoadInProgress,
        })
    }
}

impl PartitionCoordinator for GroupCoordinator {
    fn topic(&self) -> &'static str {
        OFFSETS_TOPIC
    }

    fn loaded(&self) -> BTreeSet<i32> {
        self.lock().loaded.keys().copied().collect()
    }

    fn forget(&self, index: i32) {
        let mut inner = self.lock();
        inner.loaded.remove(&index);
        inner.pending.forget(index);
    }

    /// Replays offsets partition `index` into memory, replacing what was known of its
    /// groups.
    fn load(&self, broker: &Broker, index: i32) -> crate::error::Result<()> {
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
        inner.pending.forget(index);
        let (_, replayed_to) = super::store::replay(&mut inner, &partition)?;
        inner.loaded.insert(index, replayed_to);
        Ok(())
    }
}
