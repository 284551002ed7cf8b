//! Topic administration on a cluster node: config changes and added partitions are
//! controller commands (every node applies them as its reconciler sees them), and this
//! node answers once it has applied the change itself. (DeleteRecords is a partition
//! group's own entry: `Replica::delete_records`.)

use super::topics::{submit, wait_until};
use super::{DEFAULT_REPLICATION_FACTOR, Replication};
use crate::broker::{Broker, MAX_PARTITIONS};
use crate::controller::{ControllerCommand, place_replicas};
use crate::error::{BrokerError, Result};
use crate::topic_config::TopicConfig;
use std::collections::BTreeSet;

impl Broker {
    /// AlterConfigs / IncrementalAlterConfigs in a cluster: `changed` (validated) becomes
    /// the topic's config on every node.
    pub(crate) fn set_config_through_controller(
        &self,
        replication: &Replication,
        name: &str,
        changed: &TopicConfig,
    ) -> Result<()> {
        submit(
            replication,
            &ControllerCommand::SetTopicConfig {
                name: name.to_string(),
                config: changed.clone(),
            },
        )?;
        wait_until(|| {
            self.topic(name)
                .filter(|topic| topic.config() == *changed)
                .map(|_| ())
        })
        .ok_or_else(|| {
            BrokerError::RequestTimedOut(format!(
                "the config of {name} changed but this node has not applied it yet"
            ))
        })
    }

    /// CreatePartitions in a cluster: the new partitions are placed like a new topic's,
    /// with the topic's replication factor.
    pub(crate) fn add_partitions_through_controller(
        &self,
        replication: &Replication,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<()> {
        let metadata = replication.metadata.current();
        let topic = metadata
            .topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if count <= current || count > MAX_PARTITIONS {
            return Err(BrokerError::InvalidPartitions(count));
        }
        if validate_only {
            return Ok(());
        }
        let nodes: BTreeSet<u64> = metadata.placeable_nodes();
        let factor = topic
            .partitions
            .first()
            .map_or(DEFAULT_REPLICATION_FACTOR.min(nodes.len()), |p| {
                p.replicas.len()
            });
        let added =
            usize::try_from(count - current).map_err(|_| BrokerError::InvalidPartitions(count))?;
        let replicas = place_replicas(&nodes, &metadata.preferred_leader_counts(), added, factor)?;
        submit(
            replication,
            &ControllerCommand::AddPartitions {
                name: name.to_string(),
                replicas,
            },
        )?;
        let count_now = usize::try_from(count).unwrap_or(usize::MAX);
        wait_until(|| {
            let applied = replication.metadata.current();
            let grown = applied
                .topics
                .get(name)
                .is_some_and(|topic| topic.partitions.len() == count_now);
            let opened = self.topic(name).is_some_and(|topic| {
                let hosted = applied.topics.get(name).map_or(0, |placed| {
                    placed
                        .partitions
                        .iter()
                        .filter(|p| p.replicas.contains(&replication.node_id))
                        .count()
                });
                topic.partitions.len() == hosted
            });
            (grown && opened).then_some(())
        })
        .ok_or_else(|| {
            BrokerError::RequestTimedOut(format!(
                "{name} grew to {count} partitions but this node has not opened them yet"
            ))
        })
    }
}
