//! FindCoordinator: this node coordinates every group (and, on one node, every transactional
//! id). Asking for a group coordinator creates `__consumer_offsets`, as Kafka does, so that
//! the first JoinGroup finds it. v4+ asks for several keys at once.

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use std::sync::Arc;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let error = match request.key_type {
        GROUP => broker.groups().offsets_topic(broker).err().map(|error| {
            tracing::error!(%error, "cannot create the offsets topic");
            ResponseError::CoordinatorNotAvailable
        }),
        TRANSACTION => None,
        _ => Some(ResponseError::InvalidRequest),
    };
    let config = broker.config();
    let (node, host, port) = match error {
        None => (
            config.node_id,
            config.advertised_host.clone(),
            i32::from(config.advertised_port),
        ),
        Some(_) => (-1, String::new(), -1),
    };
    let code = error.map_or(0, |error| error.code());
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host.clone()))
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
    } else {
        response.error_code = code;
        response.node_id = BrokerId(node);
        response.host = str_bytes(host);
        response.port = port;
    }
    response
}
