//! AddPartitionsToTxn: partitions the producer is about to write in its transaction. v0-3
//! (what clients send) carry one transaction; v4+ (broker to coordinator, KIP-890) a batch
//! of them, each answered on its own.

use super::now_ms;
use crate::broker::Broker;
use crate::error::BrokerError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    if version < 4 {
        response.results_by_topic_v3_and_below = add(
            broker,
            request.v3_and_below_transactional_id.0.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &request.v3_and_below_topics,
        );
        return response;
    }
    response.results_by_transaction = request
        .transactions
        .iter()
        .map(|txn| {
            let topic_results = add(
                broker,
                txn.transactional_id.0.as_str(),
                txn.producer_id.0,
                txn.producer_epoch,
                &txn.topics,
            );
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id.clone())
                .with_topic_results(topic_results)
        })
        .collect();
    response
}

/// Adds one transaction's partitions. Kafka answers all-or-nothing: unknown partitions get
/// their error and the others OPERATION_NOT_ATTEMPTED.
fn add(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let unknown = |topic: &str, index: i32| broker.partition(topic, index).is_err();
    let any_unknown = topics
        .iter()
        .any(|t| t.partitions.iter().any(|&p| unknown(t.name.0.as_str(), p)));
    let outcome: Result<(), BrokerError> = if any_unknown {
        Ok(())
    } else {
        let partitions: Vec<(String, i32)> = topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
            .collect();
        broker.transactions.add_partitions(
            broker,
            transactional_id,
            producer_id,
            epoch,
            &partitions,
            now_ms(),
        )
    };
    if let Err(error) = &outcome {
        tracing::debug!(%error, "AddPartitionsToTxn refused");
    }
    topics
        .iter()
        .map(|topic| {
            let results = topic
                .partitions
                .iter()
                .map(|&index| {
                    let code = match &outcome {
                        _ if any_unknown && unknown(topic.name.0.as_str(), index) => {
                            ResponseError::UnknownTopicOrPartition.code()
                        }
                        _ if any_unknown => ResponseError::OperationNotAttempted.code(),
                        Ok(()) => 0,
                        Err(error) => error.kafka_code(),
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(index)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(results)
        })
        .collect()
}
