//! The transaction coordinator in a cluster: which node coordinates a transactional id (the
//! leader of its `__transaction_state` partition, once it has loaded it), loading and
//! forgetting those partitions as leadership moves (`replication::ownership` drives it), and
//! which partitions a transaction may add (any the controller names, led anywhere).

use super::coordinator::{Inner, TransactionCoordinator};
use super::error::ProducerError;
use super::txn_log::{self, TXN_STATE_TOPIC};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::replication::ownership::{self, NotOwned, PartitionCoordinator};
use std::collections::BTreeSet;

impl TransactionCoordinator {
    /// Ok when this node coordinates `transactional_id`: always on one node; in a cluster
    /// when it leads the id's `__transaction_state` partition and has loaded it.
    pub(super) fn owns(
        broker: &Broker,
        inner: &Inner,
        transactional_id: &str,
    ) -> Result<(), ProducerError> {
        let index = txn_log::partition_of(transactional_id);
        ownership::check_owned(broker, TXN_STATE_TOPIC, index, || {
            inner.loaded.contains(&index)
        })
        .map_err(|unowned| match unowned {
            NotOwned::NotLeader => ProducerError::NotCoordinator,
            NotOwned::Loading => ProducerError::CoordinatorLoadInProgress,
        })
    }

    /// A partition a transaction may add: one this node hosts, or in a cluster one the
    /// controller's metadata names (its leader may be any node).
    pub(super) fn check_partition(broker: &Broker, topic: &str, index: i32) -> Result<()> {
        let Some(replication) = broker.replication() else {
            return broker.partition(topic, index).map(drop);
        };
        let count = replication
            .metadata
            .current()
            .topics
            .get(topic)
            .map_or(0, |topic| topic.partitions.len());
        if usize::try_from(index).is_ok_and(|index| index < count) {
            Ok(())
        } else {
            Err(BrokerError::UnknownTopicOrPartition(format!(
                "{topic}-{index}"
            )))
        }
    }
}

impl PartitionCoordinator for TransactionCoordinator {
    fn topic(&self) -> &'static str {
        TXN_STATE_TOPIC
    }

    fn loaded(&self) -> BTreeSet<i32> {
        self.lock().loaded.clone()
    }

    fn forget(&self, index: i32) {
        let mut inner = self.lock();
        inner.loaded.remove(&index);
        inner.drop_partition(index);
    }

    /// Replays `__transaction_state` partition `index`, replacing what was known of its
    /// transactional ids. Transactions a Prepare record left half done are finished by the
    /// next tick.
    fn load(&self, broker: &Broker, index: i32) -> Result<()> {
        let Some(partition) = broker
            .topic(TXN_STATE_TOPIC)
            .and_then(|topic| topic.partition(index).cloned())
        else {
            return Ok(());
        };
        let loaded = txn_log::replay(&partition)?;
        let mut inner = self.lock();
        inner.drop_partition(index);
        for metadata in loaded {
            inner.publish(metadata);
        }
        inner.loaded.insert(index);
        Ok(())
    }
}

impl Inner {
    /// Drops the transactional ids kept in `__transaction_state` partition `index`, and the
    /// producer ids that named them.
    fn drop_partition(&mut self, index: i32) {
        self.txns.retain(|id, _| txn_log::partition_of(id) != index);
        let Inner {
            txns, by_producer, ..
        } = self;
        by_producer.retain(|_, id| txns.contains_key(id));
    }
}
