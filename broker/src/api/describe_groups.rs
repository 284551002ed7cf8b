//! DescribeGroups: state, protocol and members (with metadata and assignment) per group. An
//! unknown group is described as `Dead`, and from v6 on also answers GROUP_ID_NOT_FOUND.

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(
            |group_id| match broker.groups().describe(group_id.as_str()) {
                None => {
                    let mut group = DescribedGroup::default()
                        .with_group_id(group_id)
                        .with_group_state(str_bytes("Dead"));
                    if version >= 6 {
                        group.error_code = ResponseError::GroupIdNotFound.code();
                    }
                    group
                }
                Some(summary) => DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_group_state(str_bytes(summary.state))
                    .with_protocol_type(str_bytes(summary.protocol_type))
                    .with_protocol_data(str_bytes(summary.protocol))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|member| {
                                let mut described = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(member.member_id))
                                    .with_client_id(str_bytes(member.client_id))
                                    .with_client_host(str_bytes(member.client_host))
                                    .with_member_metadata(member.metadata)
                                    .with_member_assignment(member.assignment);
                                if version >= 4 {
                                    described.group_instance_id = member.instance_id.map(str_bytes);
                                }
                                described
                            })
                            .collect(),
                    ),
            },
        )
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
