//! CreateTopics: validates name, partition count, replication factor and configs, then creates
//! (or, with validate_only, only checks). Each topic succeeds or fails on its own.

use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topic_config::{KEYS, TopicConfig};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use std::sync::Arc;

/// DescribeConfigs/CreateTopics config source codes.
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

pub fn handle(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for wanted in request.topics {
        let name = wanted.name.clone();
        let result = match create(broker, &wanted, request.validate_only) {
            Ok((id, partitions, config)) => {
                let factor = replication_factor(broker, name.0.as_str());
                let mut result = CreatableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(factor);
                if version >= 5 {
                    result.configs = Some(config_entries(&config));
                }
                result
            }
            Err(error) => CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(error.kafka_code())
                .with_error_message(Some(str_bytes(error.to_string())))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        };
        response.topics.push(result);
    }
    response
}

fn create(
    broker: &Broker,
    wanted: &CreatableTopic,
    validate_only: bool,
) -> Result<(uuid::Uuid, i32, TopicConfig), BrokerError> {
    let partitions = match (wanted.num_partitions, wanted.assignments.len()) {
        (-1, 0) => broker.config().num_partitions,
        (-1, assigned) => {
            i32::try_from(assigned).map_err(|_| BrokerError::InvalidPartitions(-1))?
        }
        (count, _) => count,
    };
    let factor = match wanted.replication_factor {
        -1 => None,
        factor if factor >= 1 => usize::try_from(factor).ok(),
        factor => return Err(BrokerError::InvalidReplicationFactor(factor)),
    };
    if broker.replication().is_none() && factor.is_some_and(|factor| factor != 1) {
        return Err(BrokerError::InvalidReplicationFactor(
            wanted.replication_factor,
        ));
    }
    let config = TopicConfig::from_overrides(
        wanted
            .configs
            .iter()
            .filter_map(|entry| Some((entry.name.as_str(), entry.value.as_ref()?.as_str()))),
    )?;
    if validate_only {
        broker.validate_new_topic(wanted.name.0.as_str(), partitions)?;
        return Ok((uuid::Uuid::nil(), partitions, config));
    }
    let topic = broker.create_topic_replicated(
        wanted.name.0.as_str(),
        partitions,
        config.clone(),
        factor,
    )?;
    Ok((topic.id, partitions, config))
}

/// How many replicas a created topic's partitions got: 1 on a single node.
fn replication_factor(broker: &Broker, name: &str) -> i16 {
    broker
        .replication()
        .and_then(|replication| {
            let metadata = replication.metadata.current();
            let replicas = metadata
                .topics
                .get(name)?
                .partitions
                .first()?
                .replicas
                .len();
            i16::try_from(replicas).ok()
        })
        .unwrap_or(1)
}

fn config_entries(config: &TopicConfig) -> Vec<CreatableTopicConfigs> {
    KEYS.iter()
        .map(|key| {
            let overridden = config.overrides.contains_key(key.name);
            CreatableTopicConfigs::default()
                .with_name(str_bytes(key.name))
                .with_value(config.get(key.name).map(str_bytes))
                .with_config_source(if overridden {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                })
        })
        .collect()
}
