//! AddOffsetsToTxn: a consumer group's offsets will be committed with the transaction.
//! Answered COORDINATOR_NOT_AVAILABLE while no group coordinator is plugged in.

use super::now_ms;
use crate::broker::Broker;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let result = broker.transactions.add_offsets(
        broker,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.group_id.0.as_str(),
        now_ms(),
    );
    let mut response = AddOffsetsToTxnResponse::default();
    if let Err(error) = result {
        tracing::debug!(%error, "AddOffsetsToTxn refused");
        response.error_code = error.kafka_code();
    }
    response
}
