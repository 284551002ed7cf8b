//! ListGroups: every live group, filtered by state (v4+) and type (v5+: "classic" for
//! JoinGroup groups, "consumer" for KIP-848 ones).

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    // Kafka matches the filters case-insensitively.
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|state| state.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|kind| kind.to_lowercase())
        .collect();
    let groups = broker
        .groups()
        .list()
        .into_iter()
        .filter(|(_, _, state, kind)| {
            (states.is_empty() || states.contains(&state.to_lowercase()))
                && (types.is_empty() || types.iter().any(|wanted| wanted == kind))
        })
        .map(|(group_id, protocol_type, state, kind)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_protocol_type(str_bytes(protocol_type));
            if version >= 4 {
                listed.group_state = str_bytes(state);
            }
            if version >= 5 {
                listed.group_type = str_bytes(kind);
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
