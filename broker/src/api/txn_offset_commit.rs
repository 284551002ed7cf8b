//! TxnOffsetCommit: stages consumer offsets in the transaction; they become the group's
//! only if the transaction commits. On one node the transaction coordinator stages them; in
//! a cluster the group's coordinator does, in its offsets partition (`group::txn_offsets`).

use crate::broker::Broker;
use crate::group::commit::PartitionCommit;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let offsets: Vec<PartitionCommit> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| PartitionCommit {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata: partition
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let producer = (request.producer_id.0, request.producer_epoch);
    let group = request.group_id.0.as_str();
    // One error code per partition, in request order.
    let errors: Vec<i16> = if broker.replication().is_some() {
        broker
            .groups()
            .stage_transactional(broker, group, producer, &offsets)
            .into_iter()
            .map(|error| error.map_or(0, |error| error.code()))
            .collect()
    } else {
        let staged = offsets
            .iter()
            .map(|o| {
                (
                    o.topic.clone(),
                    o.partition,
                    o.offset,
                    Some(o.metadata.clone()),
                )
            })
            .collect();
        let result = broker.transactions.stage_offsets(
            broker,
            request.transactional_id.0.as_str(),
            producer.0,
            producer.1,
            group,
            staged,
        );
        let code = result.map_or_else(
            |error| {
                tracing::debug!(%error, "TxnOffsetCommit refused");
                error.kafka_code()
            },
            |()| 0,
        );
        vec![code; offsets.len()]
    };
    let mut errors = errors.into_iter();
    let mut response = TxnOffsetCommitResponse::default();
    for topic in request.topics {
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(errors.next().unwrap_or(0))
            })
            .collect();
        response.topics.push(
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    response
}
