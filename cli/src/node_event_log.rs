//! The event log a node runs its services on, picked once at start: in process on the
//! node's own broker (`BrokerEventLog`, a single node), or over the Kafka protocol on the
//! cluster's replicated topics (`ClusterEventLog`).

use crate::cluster_event_log::ClusterEventLog;
use crate::event_log::BrokerEventLog;
use commerce_services::platform::{EventLog, EventLogError, Fetched, PlainRecord, PublishedEvent};
use std::time::Duration;

#[derive(Clone)]
pub enum NodeEventLog {
    Local(BrokerEventLog),
    Cluster(ClusterEventLog),
}

impl EventLog for NodeEventLog {
    async fn partition_for(&self, topic: &str, key: &str) -> Result<i32, EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.partition_for(topic, key).await,
            NodeEventLog::Cluster(log) => log.partition_for(topic, key).await,
        }
    }

    async fn publish(&self, event: PublishedEvent<'_>) -> Result<(), EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.publish(event).await,
            NodeEventLog::Cluster(log) => log.publish(event).await,
        }
    }

    async fn last_published(
        &self,
        topic: &str,
        producer_id: i64,
    ) -> Result<Option<u64>, EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.last_published(topic, producer_id).await,
            NodeEventLog::Cluster(log) => log.last_published(topic, producer_id).await,
        }
    }

    async fn partitions(&self, topic: &str) -> Result<i32, EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.partitions(topic).await,
            NodeEventLog::Cluster(log) => log.partitions(topic).await,
        }
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<Fetched, EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.fetch(topic, partition, offset, max_wait).await,
            NodeEventLog::Cluster(log) => log.fetch(topic, partition, offset, max_wait).await,
        }
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.committed_offset(group, topic, partition).await,
            NodeEventLog::Cluster(log) => log.committed_offset(group, topic, partition).await,
        }
    }

    async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.commit_offset(group, topic, partition, offset).await,
            NodeEventLog::Cluster(log) => log.commit_offset(group, topic, partition, offset).await,
        }
    }

    async fn publish_record(&self, record: PlainRecord<'_>) -> Result<(), EventLogError> {
        match self {
            NodeEventLog::Local(log) => log.publish_record(record).await,
            NodeEventLog::Cluster(log) => log.publish_record(record).await,
        }
    }
}
