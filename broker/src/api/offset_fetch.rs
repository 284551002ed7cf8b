//! OffsetFetch: a group's committed offsets — one group before v8, several groups per request
//! from v8 on. A partition without a commit answers offset -1 (no error), as in Kafka.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::GroupOffsets;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use std::collections::BTreeMap;
use std::sync::Arc;

/// (offset, leader epoch, metadata) per partition, grouped by topic.
type Answer = BTreeMap<String, Vec<(i32, i64, i32, String)>>;

pub fn handle(
    broker: &Arc<Broker>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = request
            .groups
            .into_iter()
            .map(|group| {
                let wanted = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                        .collect()
                });
                if let Err(error) = broker.groups().owns(broker, group.group_id.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id)
                        .with_error_code(error.code());
                }
                let offsets = broker.groups().fetch_offsets(group.group_id.as_str());
                let topics = answer(&offsets, wanted)
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(name)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(index, offset, epoch, metadata)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(index)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(str_bytes(metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_topics(topics)
            })
            .collect();
        return response;
    }
    let wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.to_string(), topic.partition_indexes))
            .collect()
    });
    if let Err(error) = broker.groups().owns(broker, request.group_id.as_str()) {
        response.error_code = error.code();
        return response;
    }
    let offsets = broker.groups().fetch_offsets(request.group_id.as_str());
    response.topics = answer(&offsets, wanted)
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, offset, epoch, metadata)| {
                            let mut partition = OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(metadata)));
                            if version >= 5 {
                                partition.committed_leader_epoch = epoch;
                            }
                            partition
                        })
                        .collect(),
                )
        })
        .collect();
    response
}

/// The requested partitions (all committed ones when `wanted` is `None`).
fn answer(offsets: &GroupOffsets, wanted: Option<Vec<(String, Vec<i32>)>>) -> Answer {
    let mut answer = Answer::new();
    match wanted {
        None => {
            for ((topic, partition), committed) in offsets {
                answer.entry(topic.clone()).or_default().push((
                    *partition,
                    committed.offset,
                    committed.leader_epoch,
                    committed.metadata.clone(),
                ));
            }
        }
        Some(topics) => {
            for (topic, partitions) in topics {
                let entry = answer.entry(topic.clone()).or_default();
                for partition in partitions {
                    entry.push(match offsets.get(&(topic.clone(), partition)) {
                        Some(committed) => (
                            partition,
                            committed.offset,
                            committed.leader_epoch,
                            committed.metadata.clone(),
                        ),
                        None => (partition, -1, -1, String::new()),
                    });
                }
            }
        }
    }
    answer
}
