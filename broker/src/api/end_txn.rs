//! EndTxn: commit or abort the producer's transaction (markers to every partition in it).

use super::now_ms;
use crate::broker::Broker;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: EndTxnRequest) -> EndTxnResponse {
    let result = broker.transactions.end(
        broker,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
        now_ms(),
    );
    let mut response = EndTxnResponse::default();
    if let Err(error) = result {
        tracing::debug!(%error, "EndTxn refused");
        response.error_code = error.kafka_code();
    }
    response
}
