//! CreatePartitions: grows topics. Each topic succeeds or fails on its own; manual replica
//! assignments are accepted only as the single node (the only broker there is).

use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use std::collections::HashSet;
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    let mut seen = HashSet::new();
    for topic in &request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        // Kafka refuses a topic named twice in one request, both entries.
        let answer = if !seen.insert(topic.name.0.as_str()) {
            Err((
                ResponseError::InvalidRequest,
                "topic named more than once".to_string(),
            ))
        } else {
            grow(broker, topic, request.validate_only)
                .map_err(|error| (error.kafka_error(), error.to_string()))
        };
        response.results.push(match answer {
            Ok(()) => result,
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(message))),
        });
    }
    response
}

fn grow(
    broker: &Broker,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), BrokerError> {
    let node = broker.config().node_id;
    if let Some(assignments) = &topic.assignments
        && assignments
            .iter()
            .any(|assignment| assignment.broker_ids.iter().any(|id| id.0 != node))
    {
        return Err(BrokerError::InvalidReplicaAssignment(format!(
            "only broker {node} exists"
        )));
    }
    broker.create_partitions(topic.name.0.as_str(), topic.count, validate_only)
}
