//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+, used by
//! admin tools to remove static members).

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let mut response = LeaveGroupResponse::default();
    match broker
        .groups()
        .leave(broker, request.group_id.as_str(), &members)
    {
        Err(error) => response.error_code = error.code(),
        Ok(results) if version < 3 => {
            response.error_code = results
                .first()
                .copied()
                .flatten()
                .map_or(0, |error| error.code());
        }
        Ok(results) => {
            response.members = members
                .into_iter()
                .zip(results)
                .map(|((member_id, instance_id), error)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance_id.map(str_bytes))
                        .with_error_code(error.map_or(0, |error| error.code()))
                })
                .collect();
        }
    }
    response
}
