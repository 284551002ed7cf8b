//! Metadata: brokers, cluster id, controller, and topics with their partitions. Unknown topics
//! are created when the client allows it and the broker is configured to (Kafka's
//! `auto.create.topics.enable`, on by default); invalid names get INVALID_TOPIC_EXCEPTION.

use super::str_bytes;
use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::partition::LEADER_EPOCH;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use std::sync::Arc;
use uuid::Uuid;

mod cluster;

/// Sent when the client did not ask for authorized operations.
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(broker: &Arc<Broker>, request: MetadataRequest, version: i16) -> MetadataResponse {
    if let Some(replication) = broker.replication() {
        return cluster::handle(broker, replication, request, version);
    }
    let config = broker.config();
    let mut response = MetadataResponse::default();
    response.brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(config.node_id))
            .with_host(str_bytes(config.advertised_host.clone()))
            .with_port(i32::from(config.advertised_port)),
    ];
    response.cluster_id = broker.cluster_id().map(str_bytes);
    response.controller_id = BrokerId(config.node_id);
    response.cluster_authorized_operations = OPERATIONS_OMITTED;

    // Before v4 there is no flag and clients expect auto-creation.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    response.topics = match request.topics {
        None => broker
            .topics()
            .iter()
            .map(|topic| describe(broker, topic))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => by_name(broker, name.0.as_str(), allow_create),
                None => match broker.topic_by_id(wanted.topic_id) {
                    Some(topic) => describe(broker, &topic),
                    None => topic_error(None, wanted.topic_id, ResponseError::UnknownTopicId),
                },
            })
            .collect(),
    };
    response
}

fn by_name(broker: &Arc<Broker>, name: &str, allow_create: bool) -> MetadataResponseTopic {
    if let Some(topic) = broker.topic(name) {
        return describe(broker, &topic);
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
        Ok(topic) => describe(broker, &topic),
        Err(error) => {
            if !matches!(error, BrokerError::InvalidTopic { .. }) {
                tracing::warn!(topic = name, %error, "auto-creating a topic failed");
            }
            topic_error(name_field, Uuid::nil(), error.kafka_error())
        }
    }
}

fn topic_error(name: Option<TopicName>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

fn describe(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.config().node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            MetadataResponsePartition::default()
                .with_partition_index(partition.index)
                .with_leader_id(node)
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.as_str()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}
