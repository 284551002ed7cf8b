//! ListGroups: every live group this node coordinates, filtered by state (v4+) and type
//! (v5+: "classic" for JoinGroup groups, "consumer" for KIP-848 ones). As in Kafka, a
//! cluster's groups are the union of every broker's answer (admin clients ask them all), so
//! a node answers only for the groups whose `__consumer_offsets` partition it leads: a
//! follower replays the other groups' records too, and naming them would list a group once
//! per node.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::GroupCoordinator;
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
    let coordinated = coordinated_here(broker);
    let groups = broker
        .groups()
        .list()
        .into_iter()
        .filter(|(group_id, ..)| coordinated(group_id))
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

/// Whether this node coordinates a group now: always on a single node; in a cluster when it
/// leads the group's `__consumer_offsets` partition.
fn coordinated_here(broker: &Arc<Broker>) -> impl Fn(&str) -> bool {
    let offsets = broker
        .replication()
        .map(|_| broker.groups().offsets_topic(broker).ok());
    move |group_id: &str| match &offsets {
        None => true,
        Some(topic) => topic.as_ref().is_some_and(|topic| {
            topic
                .partition(GroupCoordinator::partition_of(group_id))
                .is_some_and(|partition| partition.is_leader())
        }),
    }
}
