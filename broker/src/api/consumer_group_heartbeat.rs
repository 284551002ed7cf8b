//! ConsumerGroupHeartbeat (KIP-848, `group.protocol=consumer`): one request to join, stay,
//! report progress and leave; the coordinator answers with the member's epoch and, when it
//! changed, its assignment.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::consumer::{self, Assignment, HEARTBEAT_INTERVAL_MS};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as ResponseAssignment, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let response =
        ConsumerGroupHeartbeatResponse::default().with_heartbeat_interval_ms(HEARTBEAT_INTERVAL_MS);
    if request
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|regex| !regex.is_empty())
    {
        return response
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(
                "regular-expression subscriptions are not supported",
            )));
    }
    let heartbeat = consumer::Heartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|id| id.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        subscribed_topics: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|name| name.to_string()).collect()),
        owned: request.topic_partitions.map(|topics| {
            topics
                .into_iter()
                .flat_map(|topic| {
                    let id = topic.topic_id;
                    topic
                        .partitions
                        .into_iter()
                        .map(move |partition| (id, partition))
                })
                .collect()
        }),
    };
    match broker
        .groups()
        .consumer_heartbeat(broker, request.group_id.as_str(), heartbeat)
    {
        Ok(answer) => response
            .with_member_id(Some(str_bytes(answer.member_id)))
            .with_member_epoch(answer.member_epoch)
            .with_assignment(answer.assignment.map(encode)),
        Err(error) => response
            .with_error_code(error.code())
            .with_member_id(Some(request.member_id))
            .with_member_epoch(-1),
    }
}

fn encode(assignment: Assignment) -> ResponseAssignment {
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in assignment {
        by_topic.entry(topic).or_default().push(partition);
    }
    ResponseAssignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .map(|(topic_id, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}
