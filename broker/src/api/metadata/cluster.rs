//! Metadata on a cluster node: every registered broker, the controller leader, and each
//! partition's Raft leader (its term as leader epoch), replicas and in-sync replicas.
//!
//! Topics come from the controller's metadata as applied on this node, so a node answers
//! for every topic, including partitions it holds no replica of (their leader is then
//! unknown here: LEADER_NOT_AVAILABLE, and the client asks another broker). A leader
//! names as in sync itself and the followers that are at most [`ISR_MAX_LAG`] entries
//! behind; a follower, which cannot see the others' progress, names every replica.

use super::{OPERATIONS_OMITTED, topic_error};
use crate::api::str_bytes;
use crate::broker::{Broker, Topic};
use crate::controller::TopicMetadata;
use crate::replication::Replication;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use std::sync::Arc;
use uuid::Uuid;

/// A follower further behind than this many entries is out of the ISR.
pub const ISR_MAX_LAG: u64 = 1_000;

pub fn handle(
    broker: &Arc<Broker>,
    replication: &Replication,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let metadata = replication.metadata.current();
    let mut response = MetadataResponse::default();
    response.brokers = metadata
        .nodes
        .values()
        .filter_map(|node| {
            let (host, port) = node.kafka_addr.rsplit_once(':')?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(i32::try_from(node.id).ok()?))
                    .with_host(str_bytes(host))
                    .with_port(port.parse().ok()?),
            )
        })
        .collect();
    // Null (Metadata v2+ allows it) until this node has applied the controller's decision:
    // a client never sees two ids from one cluster.
    response.cluster_id = broker.cluster_id().map(str_bytes);
    response.controller_id = BrokerId(
        replication
            .controller_leader()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(-1),
    );
    response.cluster_authorized_operations = OPERATIONS_OMITTED;
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    response.topics = match request.topics {
        None => metadata
            .topics
            .values()
            .map(|wanted| describe(broker, replication, wanted))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => by_name(broker, replication, name.0.as_str(), allow_create),
                None => match metadata.topics.values().find(|t| t.id == wanted.topic_id) {
                    Some(topic) => describe(broker, replication, topic),
                    None => topic_error(None, wanted.topic_id, ResponseError::UnknownTopicId),
                },
            })
            .collect(),
    };
    response
}

fn by_name(
    broker: &Arc<Broker>,
    replication: &Replication,
    name: &str,
    allow_create: bool,
) -> MetadataResponseTopic {
    if let Some(topic) = replication.metadata.current().topics.get(name) {
        return describe(broker, replication, topic);
    }
    let name_field = Some(TopicName(str_bytes(name)));
    if !(allow_create && broker.config().auto_create_topics) {
        let error = match crate::topic_name::TopicName::parse(name) {
            Ok(_) => ResponseError::UnknownTopicOrPartition,
            Err(_) => ResponseError::InvalidTopicException,
        };
        return topic_error(name_field, Uuid::nil(), error);
    }
    match broker.ensure_topic(name) {
        Ok(_) => match replication.metadata.current().topics.get(name) {
            Some(topic) => describe(broker, replication, topic),
            None => topic_error(name_field, Uuid::nil(), ResponseError::LeaderNotAvailable),
        },
        Err(error) => {
            tracing::debug!(topic = name, %error, "auto-creating a topic failed");
            topic_error(name_field, Uuid::nil(), error.kafka_error())
        }
    }
}

fn describe(
    broker: &Broker,
    replication: &Replication,
    wanted: &TopicMetadata,
) -> MetadataResponseTopic {
    let local: Option<Arc<Topic>> = broker.topic(&wanted.name).filter(|t| t.id == wanted.id);
    let me = replication.node_id;
    let broker_id = |id: u64| BrokerId(i32::try_from(id).unwrap_or(-1));
    let partitions = wanted
        .partitions
        .iter()
        .enumerate()
        .map(|(index, placed)| {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            let replicas: Vec<BrokerId> = placed.replicas.iter().map(|id| broker_id(*id)).collect();
            let partition = local.as_ref().and_then(|topic| topic.partition(index));
            let status = partition.and_then(|p| p.replica()).and_then(|r| r.status());
            let leading = partition.is_some_and(|p| p.is_leader());
            // Another node's leadership as this replica last heard of it; ours only with a
            // live majority (an isolated leader is not advertised).
            let leader = match &status {
                Some(_) if leading => Some(me),
                Some(status) => status.leader.filter(|leader| *leader != me),
                None => None,
            };
            let isr: Vec<BrokerId> = match &status {
                Some(status) if leading => placed
                    .replicas
                    .iter()
                    .filter(|id| {
                        **id == me
                            || status
                                .follower_lag
                                .get(id)
                                .is_some_and(|lag| *lag <= ISR_MAX_LAG)
                    })
                    .map(|id| broker_id(*id))
                    .collect(),
                _ => replicas.clone(),
            };
            let epoch = status
                .as_ref()
                .and_then(|status| i32::try_from(status.term).ok())
                .unwrap_or(-1);
            let answer = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(leader.map_or(BrokerId(-1), broker_id))
                .with_leader_epoch(epoch)
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr);
            match leader {
                Some(_) => answer,
                None => answer.with_error_code(ResponseError::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(wanted.name.as_str()))))
        .with_topic_id(wanted.id)
        .with_is_internal(wanted.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}
