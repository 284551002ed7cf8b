//! DescribeConfigs for topics (overrides and defaults, each with its source and, if asked,
//! its synonyms) and for this broker (the settings a client may want to read).

use super::create_topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::str_bytes;
use crate::broker::Broker;
use crate::topic_config::KEYS;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use std::sync::Arc;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_STATIC_BROKER: i8 = 4;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
        };
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        match resource.resource_type {
            RESOURCE_TOPIC => match broker.topic(resource.resource_name.as_str()) {
                Some(topic) => {
                    let config = topic.config();
                    for key in KEYS.iter().filter(|key| wanted(key.name)) {
                        let source = if config.overrides.contains_key(key.name) {
                            SOURCE_TOPIC
                        } else {
                            SOURCE_DEFAULT
                        };
                        let mut entry = entry(
                            key.name,
                            config.get(key.name).unwrap_or(key.default),
                            source,
                        );
                        if request.include_documentation {
                            entry.documentation = Some(str_bytes(key.doc));
                        }
                        if request.include_synonyms {
                            entry.synonyms =
                                synonyms(key.name, config.overrides.get(key.name), key.default);
                        }
                        result.configs.push(entry);
                    }
                }
                None => {
                    result.error_code = ResponseError::UnknownTopicOrPartition.code();
                    result.error_message = Some(str_bytes(format!(
                        "unknown topic {}",
                        resource.resource_name.as_str()
                    )));
                }
            },
            RESOURCE_BROKER => {
                let config = broker.config();
                let settings = [
                    ("broker.id", config.node_id.to_string()),
                    ("num.partitions", config.num_partitions.to_string()),
                    (
                        "auto.create.topics.enable",
                        config.auto_create_topics.to_string(),
                    ),
                    (
                        "socket.request.max.bytes",
                        config.max_request_bytes.to_string(),
                    ),
                ];
                for (name, value) in settings.iter().filter(|(name, _)| wanted(name)) {
                    result
                        .configs
                        .push(entry(name, value, SOURCE_STATIC_BROKER));
                }
            }
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message =
                    Some(str_bytes(format!("unsupported resource type {other}")));
            }
        }
        response.results.push(result);
    }
    response
}

fn entry(name: &str, value: &str, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_config_source(source)
        .with_read_only(source == SOURCE_STATIC_BROKER)
}

/// Where a topic config's value may come from, in precedence order (KIP-226): the topic's
/// override if there is one, then the default.
fn synonyms(name: &str, set: Option<&String>, default: &str) -> Vec<DescribeConfigsSynonym> {
    let synonym = |value: &str, source| {
        DescribeConfigsSynonym::default()
            .with_name(str_bytes(name))
            .with_value(Some(str_bytes(value)))
            .with_source(source)
    };
    set.map(|value| synonym(value, SOURCE_TOPIC))
        .into_iter()
        .chain([synonym(default, SOURCE_DEFAULT)])
        .collect()
}
