//! OffsetCommit: a group member's (or an admin tool's) consumed positions, written durably to
//! `__consumer_offsets` before the answer.

use crate::broker::Broker;
use crate::group::commit::{Commit, PartitionCommit};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use std::sync::Arc;

pub fn handle(broker: &Arc<Broker>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let offsets = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| PartitionCommit {
                topic: topic.name.to_string(),
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata: partition
                    .committed_metadata
                    .as_ref()
                    .map(|metadata| metadata.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let commit = Commit {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        generation: request.generation_id_or_member_epoch,
        offsets,
    };
    let mut results = broker.groups().commit(broker, commit).into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let error = results.next().flatten();
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error.map_or(0, |error| error.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
