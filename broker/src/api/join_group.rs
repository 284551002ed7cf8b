//! JoinGroup: the first phase of a rebalance. The answer may have to wait until every member
//! rejoined (or the rebalance timeout passed); the connection simply awaits it, since Kafka
//! connections handle one request at a time anyway.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::member::{JoinResult, Reply};
use crate::group::state::JoinGroup;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let session_timeout_ms = i64::from(request.session_timeout_ms);
    let join = JoinGroup {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        client_host: String::new(),
        session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout then.
        rebalance_timeout_ms: if version >= 1 {
            i64::from(request.rebalance_timeout_ms)
        } else {
            session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let result = match broker
        .groups()
        .join(broker, request.group_id.as_str(), join)
    {
        Reply::Now(result) => result,
        Reply::Later(receiver) => receiver.await.unwrap_or_else(|_| {
            // The group dropped our answer (deleted, or the member was replaced).
            JoinResult::error(ResponseError::UnknownMemberId, &member_id)
        }),
    };
    response(result, version)
}

fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error.map_or(0, |error| error.code()))
        .with_generation_id(result.generation)
        .with_protocol_name(result.protocol.map(str_bytes))
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|member| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(member.member_id))
                        .with_group_instance_id(member.instance_id.map(str_bytes))
                        .with_metadata(member.metadata)
                })
                .collect(),
        );
    if version >= 7 {
        response.protocol_type = result.protocol_type.map(str_bytes);
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    response
}
