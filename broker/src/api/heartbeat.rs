//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use crate::broker::Broker;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: HeartbeatRequest) -> HeartbeatResponse {
    let error = broker.groups().heartbeat(
        broker,
        request.group_id.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(error.map_or(0, |error| error.code()))
}
