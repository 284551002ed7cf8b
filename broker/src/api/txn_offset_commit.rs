//! TxnOffsetCommit: stages consumer offsets in the transaction; they become the group's
//! only if the transaction commits. On one node the transaction coordinator stages them; in
//! a cluster the group's coordinator does, in its offsets partition (`group::txn_offsets`).

use crate::broker::Broker;
use crate::group::commit::PartitionCommit;
use crate::producer::TxnOffset;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    if broker.replication().is_some() {
        return cluster(broker, request);
    }
    let offsets: Vec<TxnOffset> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.0.to_string(),
                    partition.partition_index,
                    partition.committed_offset,
                    partition.committed_metadata.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    let result = broker.transactions.stage_offsets(
        broker,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.group_id.0.as_str(),
        offsets,
    );
    let error_code = match result {
        Ok(()) => 0,
        Err(error) => {
            tracing::debug!(%error, "TxnOffsetCommit refused");
            error.kafka_code()
        }
    };
    let mut response = TxnOffsetCommitResponse::default();
    for topic in request.topics {
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(error_code)
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

/// In a cluster: the group coordinator stages the offsets in its offsets partition.
fn cluster(broker: &Arc<Broker>, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
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
    let mut results = broker
        .groups()
        .stage_transactional(
            broker,
            request.group_id.0.as_str(),
            (request.producer_id.0, request.producer_epoch),
            &offsets,
        )
        .into_iter();
    let mut response = TxnOffsetCommitResponse::default();
    for topic in request.topics {
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                let error = results.next().flatten().map_or(0, |error| error.code());
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(error)
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
