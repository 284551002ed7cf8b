//! DeleteGroups: removes empty groups and their committed offsets (NON_EMPTY_GROUP while
//! members remain, GROUP_ID_NOT_FOUND for unknown ones).

use crate::broker::Broker;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|group_id| {
            let error = broker.groups().delete_group(broker, group_id.as_str());
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error.map_or(0, |error| error.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
