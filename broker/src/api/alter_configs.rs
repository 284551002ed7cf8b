//! AlterConfigs: replaces a topic's whole set of overrides (keys left out return to their
//! defaults, as in Kafka). The new set is validated as a whole, then persisted and applied to
//! the live logs; with validate_only it is only checked. Broker configs are static here.

use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topic_config::TopicConfig;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use std::sync::Arc;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

pub fn handle(broker: &Arc<Broker>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let answer = match resource.resource_type {
            RESOURCE_TOPIC => {
                let entries: Vec<(String, Option<String>)> = resource
                    .configs
                    .iter()
                    .map(|config| {
                        (
                            config.name.to_string(),
                            config.value.as_ref().map(|value| value.to_string()),
                        )
                    })
                    .collect();
                broker
                    .alter_topic_config(
                        resource.resource_name.as_str(),
                        request.validate_only,
                        |_| replace_all(&entries),
                    )
                    .map(drop)
                    .map_err(|error| (error.kafka_error(), error.to_string()))
            }
            other => Err(refuse_resource(other)),
        };
        response.responses.push(result(
            resource.resource_type,
            resource.resource_name,
            answer,
        ));
    }
    response
}

/// The overrides a full replacement leaves: every entry with a value (a null value means
/// "back to the default").
fn replace_all(entries: &[(String, Option<String>)]) -> Result<TopicConfig, BrokerError> {
    TopicConfig::from_overrides(
        entries
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.as_deref()?))),
    )
}

/// The answer for a resource type whose configs cannot be changed.
pub(crate) fn refuse_resource(resource_type: i8) -> (ResponseError, String) {
    if resource_type == RESOURCE_BROKER {
        (
            ResponseError::InvalidRequest,
            "broker configs are static: set them in the node's configuration".to_string(),
        )
    } else {
        (
            ResponseError::InvalidRequest,
            format!("unsupported resource type {resource_type}"),
        )
    }
}

fn result(
    resource_type: i8,
    resource_name: kafka_protocol::protocol::StrBytes,
    answer: Result<(), (ResponseError, String)>,
) -> AlterConfigsResourceResponse {
    let result = AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(resource_name);
    match answer {
        Ok(()) => result,
        Err((error, message)) => result
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message))),
    }
}
