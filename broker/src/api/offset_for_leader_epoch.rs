//! OffsetForLeaderEpoch: where a leader epoch ends, which clients use to detect a log that
//! was truncated under them. A single node has had one epoch (`LEADER_EPOCH`) since the
//! start, so it ends at the log end; Kafka's answers for other epochs follow: a newer
//! current epoch than ours is UNKNOWN_LEADER_EPOCH, an older one FENCED_LEADER_EPOCH, and an
//! epoch we never had is answered with undefined epoch and offset (-1, -1). In a cluster the
//! epochs are the partition group's Raft terms, answered by its leader from the epoch
//! cache.

use crate::broker::Broker;
use crate::partition::LEADER_EPOCH;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use std::sync::Arc;

const UNDEFINED: i32 = -1;

/// A request's current epoch against ours: newer is unknown to us, older is fenced.
fn fencing(requested: i32, ours: i32) -> Option<ResponseError> {
    match requested {
        UNDEFINED => None,
        current if current > ours => Some(ResponseError::UnknownLeaderEpoch),
        current if current < ours => Some(ResponseError::FencedLeaderEpoch),
        _ => None,
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let mut result = OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone());
        for wanted in topic.partitions {
            let answer = EpochEndOffset::default()
                .with_partition(wanted.partition)
                .with_leader_epoch(UNDEFINED)
                .with_end_offset(-1);
            let partition = match broker.partition(topic.topic.0.as_str(), wanted.partition) {
                Ok(partition) => partition,
                Err(error) => {
                    result
                        .partitions
                        .push(answer.with_error_code(error.kafka_code()));
                    continue;
                }
            };
            if let Some(replica) = partition.replica() {
                // A cluster: epochs are Raft terms, and the leader answers.
                let current = partition.leader_epoch();
                let answer = if !partition.is_leader() {
                    answer.with_error_code(ResponseError::NotLeaderOrFollower.code())
                } else if let Some(error) = fencing(wanted.current_leader_epoch, current) {
                    answer.with_error_code(error.code())
                } else {
                    match u64::try_from(wanted.leader_epoch)
                        .ok()
                        .and_then(|epoch| replica.log().epoch_end(epoch))
                    {
                        Some((term, end)) => answer
                            .with_leader_epoch(i32::try_from(term).unwrap_or(UNDEFINED))
                            .with_end_offset(end.min(partition.high_watermark())),
                        None => answer,
                    }
                };
                result.partitions.push(answer);
                continue;
            }
            result
                .partitions
                .push(match fencing(wanted.current_leader_epoch, LEADER_EPOCH) {
                    Some(error) => answer.with_error_code(error.code()),
                    None if wanted.leader_epoch == LEADER_EPOCH => answer
                        .with_leader_epoch(LEADER_EPOCH)
                        .with_end_offset(partition.high_watermark()),
                    None => answer,
                });
        }
        response.topics.push(result);
    }
    response
}
