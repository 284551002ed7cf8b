//! FindCoordinator: one node coordinates every group and every transactional id, so the
//! answer is always this node. v0-3 answer one key in top-level fields, v4+ a list.

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let config = broker.config();
    let node = BrokerId(config.node_id);
    let host = str_bytes(config.advertised_host.clone());
    let port = i32::from(config.advertised_port);
    let mut response = FindCoordinatorResponse::default();
    if version < 4 {
        response.node_id = node;
        response.host = host;
        response.port = port;
        return response;
    }
    response.coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            Coordinator::default()
                .with_key(key)
                .with_node_id(node)
                .with_host(host.clone())
                .with_port(port)
        })
        .collect();
    response
}
