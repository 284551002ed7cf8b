//! DeleteRecords: moves partitions' log start forward (offset -1: to the high watermark).
//! Records below it are no longer served, and the move survives restarts.

use crate::broker::Broker;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let mut result = DeleteRecordsTopicResult::default().with_name(topic.name.clone());
        for wanted in topic.partitions {
            let partition = DeleteRecordsPartitionResult::default()
                .with_partition_index(wanted.partition_index)
                .with_low_watermark(-1);
            let answer =
                broker.delete_records(topic.name.0.as_str(), wanted.partition_index, wanted.offset);
            result.partitions.push(match answer {
                Ok(low_watermark) => partition.with_low_watermark(low_watermark),
                Err(error) => {
                    tracing::info!(topic = %topic.name.0.as_str(), partition = wanted.partition_index, %error, "DeleteRecords refused");
                    partition.with_error_code(error.kafka_code())
                }
            });
        }
        response.topics.push(result);
    }
    response
}
