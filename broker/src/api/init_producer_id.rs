//! InitProducerId: a producer id and epoch for an idempotent producer (fresh each time, or
//! the next epoch when the client names its current one), or for a transactional id (the
//! coordinator bumps the epoch, fencing earlier instances and aborting what they left open).

use super::now_ms;
use crate::broker::Broker;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let producer_id = request.producer_id.0;
    let epoch = request.producer_epoch;
    let result = match request.transactional_id.as_ref().map(|id| id.0.as_str()) {
        None => broker.transactions.init_idempotent(producer_id, epoch),
        Some(transactional_id) => broker.transactions.init_transactional(
            broker,
            transactional_id,
            request.transaction_timeout_ms,
            producer_id,
            epoch,
            now_ms(),
        ),
    };
    let response = InitProducerIdResponse::default();
    match result {
        Ok((producer_id, epoch)) => response
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(error) => {
            tracing::debug!(%error, "InitProducerId refused");
            response
                .with_error_code(error.kafka_code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
