//! SyncGroup: the leader sends the assignment; every member (leader included) waits for its
//! share, which arrives when the leader's request does.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::member::{Reply, SyncResult};
use crate::group::state::SyncGroup;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let protocol = match (request.protocol_type, request.protocol_name) {
        (Some(protocol_type), Some(name)) if version >= 5 => {
            Some((protocol_type.to_string(), name.to_string()))
        }
        _ => None,
    };
    let sync = SyncGroup {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation: request.generation_id,
        protocol,
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    let result = match broker
        .groups()
        .sync(broker, request.group_id.as_str(), sync)
    {
        Reply::Now(result) => result,
        Reply::Later(receiver) => receiver
            .await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress)),
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error.map_or(0, |error| error.code()))
        .with_assignment(result.assignment);
    if version >= 5 {
        response.protocol_type = result.protocol_type.map(str_bytes);
        response.protocol_name = result.protocol.map(str_bytes);
    }
    response
}
