//! DeleteTopics: by name (v1-v5) or by name or id (v6).

use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use std::sync::Arc;
use uuid::Uuid;

pub fn handle(broker: &Arc<Broker>, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut wanted: Vec<(Option<TopicName>, Uuid)> = request
        .topic_names
        .into_iter()
        .map(|name| (Some(name), Uuid::nil()))
        .collect();
    wanted.extend(
        request
            .topics
            .into_iter()
            .map(|state| (state.name, state.topic_id)),
    );
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in wanted {
        let resolved = match &name {
            Some(name) => Some(name.0.to_string()),
            None => broker.topic_by_id(id).map(|topic| topic.name.to_string()),
        };
        let result = match resolved {
            None => Err(ResponseError::UnknownTopicId),
            Some(topic_name) => broker
                .delete_topic(&topic_name)
                .map_err(|error| match error {
                    BrokerError::UnknownTopicOrPartition(_) => {
                        ResponseError::UnknownTopicOrPartition
                    }
                    other => other.kafka_error(),
                }),
        };
        let entry = DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id);
        response.responses.push(match result {
            Ok(topic) => entry.with_topic_id(topic.id),
            Err(error) => entry
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(error.to_string()))),
        });
    }
    response
}
