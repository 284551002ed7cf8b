//! Produce: append each partition's record batches as they came off the wire (the log only
//! rewrites base offset and leader epoch), answering per partition. acks=0 gets no response;
//! acks=1 and acks=-1 answer after the append (one node: the leader is the whole ISR). In
//! a cluster both answer once a majority of the partition's replicas has the batch (acks=1
//! is thus as strong as acks=all: a Raft leader does not answer before commit); a
//! non-leader answers NOT_LEADER_OR_FOLLOWER, and no majority within the request's
//! timeout REQUEST_TIMED_OUT.
//! Batches from an idempotent producer are checked against its sequence by the partition
//! (a retry is answered with the stored offsets); transactional ones also against the
//! coordinator (the partition must be in the producer's open transaction).

use super::str_bytes;
use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::producer::batch_header::ProducerBatch;
use crate::producer::partition_state::batches;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use std::sync::Arc;
use std::time::Duration;

/// The longest a replicated produce waits for a majority, whatever the client asks.
const MAX_REPLICATION_WAIT: Duration = Duration::from_secs(30);

pub async fn handle(
    broker: &Arc<Broker>,
    mut request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0))
        .clamp(Duration::from_millis(100), MAX_REPLICATION_WAIT);
    let acks = request.acks;
    let acks_valid = matches!(acks, -1..=1);
    let mut response = ProduceResponse::default();
    for topic_data in &mut request.topic_data {
        let topic = if topic_data.name.0.is_empty() {
            broker.topic_by_id(topic_data.topic_id)
        } else {
            broker.topic(topic_data.name.0.as_str())
        };
        let mut topic_response = TopicProduceResponse::default()
            .with_name(topic_data.name.clone())
            .with_topic_id(topic_data.topic_id);
        for partition_data in &mut topic_data.partition_data {
            let result = if acks_valid {
                append(
                    broker,
                    topic.as_deref(),
                    partition_data.index,
                    partition_data.records.take(),
                    timeout,
                )
                .await
            } else {
                Err(BrokerError::InvalidRequiredAcks(acks))
            };
            let partition_response = match result {
                Ok((base_offset, log_start_offset)) => PartitionProduceResponse::default()
                    .with_index(partition_data.index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(log_start_offset),
                Err(error) => {
                    tracing::debug!(index = partition_data.index, %error, "produce refused");
                    PartitionProduceResponse::default()
                        .with_index(partition_data.index)
                        .with_error_code(error.kafka_code())
                        .with_error_message(Some(str_bytes(error.to_string())))
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                }
            };
            topic_response.partition_responses.push(partition_response);
        }
        response.responses.push(topic_response);
    }
    (acks != 0).then_some(response)
}

/// Appends one partition's batches; returns (base offset, log start offset).
async fn append(
    broker: &Broker,
    topic: Option<&Topic>,
    index: i32,
    records: Option<Bytes>,
    timeout: Duration,
) -> Result<(i64, i64), BrokerError> {
    let topic =
        topic.ok_or_else(|| BrokerError::UnknownTopicOrPartition(format!("partition {index}")))?;
    if topic.name.is_internal() {
        // The broker's own state (offsets, groups) is written by its coordinators only.
        return Err(BrokerError::InvalidTopic {
            name: topic.name.to_string(),
            reason: "clients may not write to an internal topic",
        });
    }
    let partition = topic.partition(index).ok_or_else(|| {
        if broker.replication().is_some() {
            // A cluster node may hold no replica of this partition: the client asked the
            // wrong broker, and finds the leader in fresh metadata.
            BrokerError::NotLeaderOrFollower(format!("{}-{index}", topic.name))
        } else {
            BrokerError::UnknownTopicOrPartition(format!("{}-{index}", topic.name))
        }
    })?;
    if !partition.is_leader() {
        return Err(BrokerError::NotLeaderOrFollower(format!(
            "{}-{index}",
            topic.name
        )));
    }
    let records = records.unwrap_or_default();
    let limit = topic.config().max_message_bytes();
    if let Some(size) = batch_sizes(&records).find(|size| *size > limit) {
        return Err(BrokerError::MessageTooLarge { size, limit });
    }
    // Control batches (transaction markers, the Raft group's own entries) are written by
    // the broker only; a client's would end other producers' transactions or move the log
    // start in a cluster. Kafka refuses them the same way.
    if batches(&records)
        .filter_map(ProducerBatch::parse)
        .any(|header| header.control)
    {
        return Err(BrokerError::InvalidRecord(
            "clients may not write control batches",
        ));
    }
    // A transactional batch may only go to a partition its transaction added. In a cluster
    // the coordinator is generally another node, and the leader takes the batch unchecked,
    // as Kafka's leaders do without KIP-890's verification.
    if let Some(header) = ProducerBatch::parse(&records)
        && header.has_producer()
        && header.transactional
        && broker.replication().is_none()
    {
        broker.transactions.check_produce(
            header.producer_id,
            header.producer_epoch,
            topic.name.as_str(),
            index,
        )?;
    }
    // The log rewrites offsets in place; avoid a copy when this request owns the bytes.
    let mut batches = records
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(shared.as_ref()));
    let info = if partition.replica().is_some() {
        partition.append_records(&mut batches, timeout).await?
    } else if super::fsyncs_on_append(broker) {
        // An fsync per append would stall every connection on this worker thread.
        tokio::task::block_in_place(|| partition.append(&mut batches))?
    } else {
        partition.append(&mut batches)?
    };
    Ok((info.base_offset, info.log_start_offset))
}

/// The size of each batch in a records buffer, from the v2 framing (offset i64, length i32).
/// A buffer that does not frame cleanly yields its remainder as one size; the log then
/// refuses it as corrupt.
fn batch_sizes(records: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let declared = rest
            .get(8..12)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map(i32::from_be_bytes)
            .and_then(|length| usize::try_from(length).ok())
            .map(|length| length + 12);
        let size = declared.unwrap_or(rest.len()).min(rest.len());
        rest = rest.get(size..).unwrap_or_default();
        Some(declared.unwrap_or(size))
    })
}

#[cfg(test)]
mod tests {
    use super::batch_sizes;

    #[test]
    fn batch_sizes_follow_the_length_field() {
        let mut records = vec![0u8; 8];
        records.extend_from_slice(&20i32.to_be_bytes());
        records.extend_from_slice(&[0u8; 20]);
        records.extend_from_slice(&[0u8; 8]);
        records.extend_from_slice(&4i32.to_be_bytes());
        records.extend_from_slice(&[0u8; 4]);
        assert_eq!(batch_sizes(&records).collect::<Vec<_>>(), vec![32, 16]);
    }
}
