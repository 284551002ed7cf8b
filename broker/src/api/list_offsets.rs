//! ListOffsets: latest (-1, the high watermark; the last stable offset for read_committed), earliest (-2, -4: the log start), max
//! timestamp (-3) and the first offset whose record timestamp is at or after a given time.
//! For a timestamp the log finds the batch; the broker decodes that one batch to find the
//! exact record, as Kafka does (compressed batches included).

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::partition::{LEADER_EPOCH, Partition};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use std::sync::Arc;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // The leader epoch field exists from v4 on; the encoder refuses it set on older versions.
    let epoch_field = version >= 4;
    let read_committed = request.isolation_level == 1;
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let mut topic_response = ListOffsetsTopicResponse::default().with_name(topic.name.clone());
        for wanted in topic.partitions {
            let mut base = ListOffsetsPartitionResponse::default()
                .with_partition_index(wanted.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(if epoch_field { LEADER_EPOCH } else { -1 });
            let answer = match broker.partition(topic.name.0.as_str(), wanted.partition_index) {
                // Offsets are the leader's to answer (a follower's high watermark lags).
                Ok(partition) if !partition.is_leader() => Err(ResponseError::NotLeaderOrFollower),
                Ok(partition) => {
                    if epoch_field {
                        base.leader_epoch = partition.leader_epoch();
                    }
                    lookup(&partition, wanted.timestamp, read_committed)
                }
                Err(_) if broker.replication().is_some() => Err(ResponseError::NotLeaderOrFollower),
                Err(error) => Err(error.kafka_error()),
            };
            topic_response.partitions.push(match answer {
                Ok((offset, timestamp)) => base.with_offset(offset).with_timestamp(timestamp),
                Err(error) => base.with_error_code(error.code()),
            });
        }
        response.topics.push(topic_response);
    }
    response
}

/// (offset, timestamp) for the request's timestamp selector; (-1, -1) when no record matches.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64), ResponseError> {
    match timestamp {
        LATEST if read_committed => Ok((partition.last_stable_offset(), -1)),
        LATEST => Ok((partition.high_watermark(), -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((partition.log_start_offset(), -1)),
        MAX_TIMESTAMP => Ok(partition
            .log()
            .max_timestamp()
            .map(|(timestamp, offset)| (offset, timestamp))
            .unwrap_or((-1, -1))),
        target if target >= 0 => by_timestamp(partition, target).map_err(|error| {
            tracing::error!(topic = %partition.topic, partition = partition.index, %error, "timestamp lookup failed");
            error.kafka_error()
        }),
        _ => Err(ResponseError::InvalidRequest),
    }
}

fn by_timestamp(partition: &Partition, target: i64) -> Result<(i64, i64), BrokerError> {
    let Some(batch) = partition.log().find_batch_by_timestamp(target)? else {
        return Ok((-1, -1));
    };
    // DeleteRecords may have put the log start inside or past that batch: records below the
    // start do not count, so walk on from there to the first one that does.
    let start = partition.log_start_offset();
    let mut next = batch.base_offset.max(start);
    while next < partition.high_watermark() {
        let mut bytes = partition.read(next, 1, true)?.bytes;
        let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
            // Undecodable (unknown codec): the batch start is the closest safe answer.
            return Ok((next, batch.max_timestamp));
        };
        if let Some(record) = set
            .records
            .iter()
            .find(|record| record.offset >= start && record.timestamp >= target)
        {
            return Ok((record.offset, record.timestamp));
        }
        let Some(last) = set.records.last() else {
            break;
        };
        next = (last.offset + 1).max(next + 1);
    }
    Ok((-1, -1))
}
