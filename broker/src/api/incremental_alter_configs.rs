//! IncrementalAlterConfigs: changes individual topic config keys — SET, DELETE (back to the
//! default), APPEND and SUBTRACT (for list-valued keys: `cleanup.policy`). All operations on
//! one resource apply together or not at all; validate_only only checks them.

use super::alter_configs::{RESOURCE_TOPIC, refuse_resource};
use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topic_config::{self, TopicConfig};
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use std::collections::HashSet;
use std::sync::Arc;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Keys whose value is a comma-separated list, the only ones APPEND and SUBTRACT apply to.
const LIST_KEYS: &[&str] = &["cleanup.policy"];

pub fn handle(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let answer = match resource.resource_type {
            RESOURCE_TOPIC => broker
                .alter_topic_config(
                    resource.resource_name.as_str(),
                    request.validate_only,
                    |current| apply(current, &resource.configs),
                )
                .map(drop)
                .map_err(|error| (error.kafka_error(), error.to_string())),
            other => Err(refuse_resource(other)),
        };
        let result = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        response.responses.push(match answer {
            Ok(()) => result,
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(message))),
        });
    }
    response
}

/// The config after `operations`, each checked; the first bad one refuses them all.
fn apply(
    current: &TopicConfig,
    operations: &[AlterableConfig],
) -> Result<TopicConfig, BrokerError> {
    let mut next = current.clone();
    let mut seen = HashSet::new();
    for operation in operations {
        let name = operation.name.as_str();
        let invalid = |reason: &str| BrokerError::InvalidConfig {
            key: name.to_string(),
            reason: reason.to_string(),
        };
        if !seen.insert(name) {
            return Err(invalid("named more than once in one request"));
        }
        let value = operation.value.as_ref().map(|value| value.as_str());
        match operation.config_operation {
            SET => {
                let value = value.ok_or_else(|| invalid("SET needs a value"))?;
                topic_config::validate(name, value)?;
                next.overrides.insert(name.to_string(), value.to_string());
            }
            DELETE => {
                // Deleting an unknown key is an error in Kafka too.
                topic_config::validate_name(name)?;
                next.overrides.remove(name);
            }
            APPEND | SUBTRACT => {
                if !LIST_KEYS.contains(&name) {
                    return Err(invalid(
                        "APPEND and SUBTRACT apply to list-valued configs only",
                    ));
                }
                let value = value.ok_or_else(|| invalid("APPEND and SUBTRACT need a value"))?;
                let mut items: Vec<String> = next
                    .get(name)
                    .unwrap_or_default()
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .filter(|item| !item.is_empty())
                    .collect();
                for item in value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                {
                    if operation.config_operation == APPEND {
                        if !items.iter().any(|existing| existing == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|existing| existing != item);
                    }
                }
                let joined = items.join(",");
                topic_config::validate(name, &joined)?;
                next.overrides.insert(name.to_string(), joined);
            }
            other => return Err(invalid(&format!("unknown operation {other}"))),
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(str_bytes(name))
            .with_config_operation(operation)
            .with_value(value.map(str_bytes))
    }

    #[test]
    fn set_delete_append_and_subtract() {
        let start = TopicConfig::from_overrides([("retention.ms", "1000")]).unwrap();
        let next = apply(
            &start,
            &[
                op("retention.ms", DELETE, None),
                op("segment.bytes", SET, Some("4096")),
                op("cleanup.policy", APPEND, Some("compact")),
            ],
        )
        .unwrap();
        assert_eq!(next.overrides.get("retention.ms"), None);
        assert_eq!(next.get("segment.bytes"), Some("4096"));
        assert_eq!(next.get("cleanup.policy"), Some("delete,compact"));
        let next = apply(&next, &[op("cleanup.policy", SUBTRACT, Some("delete"))]).unwrap();
        assert_eq!(next.get("cleanup.policy"), Some("compact"));
    }

    #[test]
    fn bad_operations_are_refused() {
        let start = TopicConfig::default();
        assert!(apply(&start, &[op("retention.ms", SET, Some("soon"))]).is_err());
        assert!(apply(&start, &[op("retention.ms", APPEND, Some("1"))]).is_err());
        assert!(apply(&start, &[op("no.such.key", DELETE, None)]).is_err());
        assert!(apply(&start, &[op("cleanup.policy", SUBTRACT, Some("delete"))]).is_err());
        assert!(apply(&start, &[op("retention.ms", 9, Some("1"))]).is_err());
    }
}
