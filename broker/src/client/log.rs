//! The log operations of [`KafkaClient`]: produce one raw batch to a partition's leader,
//! fetch raw batches from it, and list its earliest or latest offset. Each goes to the
//! partition's leader and, when the leader moved or went away, reads fresh metadata and
//! tries again within the retry deadline.

use super::error::ClientError;
use super::{KafkaClient, millis, topic_name};
use bytes::Bytes;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest};
use std::time::Duration;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;

/// Which records a fetch may return (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Up to the high watermark, open and aborted transactions included.
    ReadUncommitted,
    /// Up to the last stable offset; aborted transactions are listed for the caller to skip.
    ReadCommitted,
}

impl IsolationLevel {
    fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Which offset `list_offset` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next record will get, once committed).
    Latest,
}

/// A transaction the fetched range holds and that was aborted: `producer_id`'s transactional
/// records from `first_offset` up to its abort marker are not to be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// What one fetch returned.
#[derive(Debug, Clone, Default)]
pub struct FetchedBatches {
    /// Whole v2 record batches as stored, from the one holding the fetch offset (its first
    /// records may lie below it).
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub aborted: Vec<AbortedTransaction>,
}

impl KafkaClient {
    /// Appends `batch` (whole v2 record batches) to `topic`/`partition` with acks=all and
    /// returns its base offset. An idempotent batch the partition already holds (a re-send
    /// after a timeout or a leader change) is answered with the stored batch's offset by
    /// this broker; Kafka may answer DUPLICATE_SEQUENCE_NUMBER instead, which is success as
    /// well: the base offset is then -1.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<i64, ClientError> {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(millis(self.config().request_timeout))
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch)),
                    ]),
            ]);
        self.retry("produce", topic, || async {
            let answer = self.produce_once(topic, partition, &request).await;
            if let Err(error) = &answer {
                self.after_error(topic, error);
            }
            answer
        })
        .await
    }

    async fn produce_once(
        &self,
        topic: &str,
        partition: i32,
        request: &ProduceRequest,
    ) -> Result<i64, ClientError> {
        let leader = self.leader(topic, partition).await?;
        let response = self.send_to(&leader, PRODUCE_VERSION, request).await?;
        let answer = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partition_responses)
            .find(|answer| answer.index == partition)
            .ok_or_else(|| ClientError::UnexpectedResponse {
                api: "Produce",
                reason: format!("no answer for {topic}-{partition}"),
            })?;
        match answer.error_code.err() {
            None => Ok(answer.base_offset),
            Some(ResponseError::DuplicateSequenceNumber) => Ok(-1),
            Some(_) => Err(ClientError::broker(
                "produce",
                format!("{topic}-{partition}"),
                answer.error_code,
                answer.error_message.as_ref().map(ToString::to_string),
            )),
        }
    }

    /// Batches of `topic`/`partition` from `offset`, waiting up to `max_wait` for some,
    /// at most about `max_bytes` (but at least one whole batch). An offset outside the log
    /// is returned as OFFSET_OUT_OF_RANGE (see [`ClientError::kafka_error`]): the caller
    /// decides where to go on from, with [`KafkaClient::list_offset`].
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
        max_bytes: i32,
        isolation: IsolationLevel,
    ) -> Result<FetchedBatches, ClientError> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(millis(max_wait))
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(isolation.code())
            // A full fetch outside any fetch session.
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let timeout = max_wait + self.config().request_timeout;
        self.retry("fetch", topic, || async {
            let answer = self.fetch_once(topic, partition, &request, timeout).await;
            if let Err(error) = &answer {
                self.after_error(topic, error);
            }
            answer
        })
        .await
    }

    async fn fetch_once(
        &self,
        topic: &str,
        partition: i32,
        request: &FetchRequest,
        timeout: Duration,
    ) -> Result<FetchedBatches, ClientError> {
        let leader = self.leader(topic, partition).await?;
        let connection = self.inner.pool.exclusive(&leader).await?;
        let response = connection.send(FETCH_VERSION, request, timeout).await?;
        self.inner.pool.give_back(connection);
        let resource = || format!("{topic}-{partition}");
        if response.error_code != 0 {
            return Err(ClientError::broker(
                "fetch",
                resource(),
                response.error_code,
                None,
            ));
        }
        let data = response
            .responses
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .find(|data| data.partition_index == partition)
            .ok_or_else(|| ClientError::UnexpectedResponse {
                api: "Fetch",
                reason: format!("no data for {}", resource()),
            })?;
        if data.error_code != 0 {
            return Err(ClientError::broker(
                "fetch",
                resource(),
                data.error_code,
                None,
            ));
        }
        Ok(FetchedBatches {
            records: data.records.unwrap_or_default(),
            high_watermark: data.high_watermark,
            last_stable_offset: data.last_stable_offset,
            log_start_offset: data.log_start_offset,
            aborted: data
                .aborted_transactions
                .unwrap_or_default()
                .into_iter()
                .map(|txn| AbortedTransaction {
                    producer_id: txn.producer_id.0,
                    first_offset: txn.first_offset,
                })
                .collect(),
        })
    }

    /// The earliest or latest offset of `topic`/`partition`.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64, ClientError> {
        let timestamp = match spec {
            OffsetSpec::Latest => -1,
            OffsetSpec::Earliest => -2,
        };
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(IsolationLevel::ReadUncommitted.code())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        self.retry("list offsets", topic, || async {
            let answer = self.list_offset_once(topic, partition, &request).await;
            if let Err(error) = &answer {
                self.after_error(topic, error);
            }
            answer
        })
        .await
    }

    async fn list_offset_once(
        &self,
        topic: &str,
        partition: i32,
        request: &ListOffsetsRequest,
    ) -> Result<i64, ClientError> {
        let leader = self.leader(topic, partition).await?;
        let response = self.send_to(&leader, LIST_OFFSETS_VERSION, request).await?;
        let answer = response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .find(|answer| answer.partition_index == partition)
            .ok_or_else(|| ClientError::UnexpectedResponse {
                api: "ListOffsets",
                reason: format!("no answer for {topic}-{partition}"),
            })?;
        if answer.error_code != 0 {
            return Err(ClientError::broker(
                "list offsets",
                format!("{topic}-{partition}"),
                answer.error_code,
                None,
            ));
        }
        Ok(answer.offset)
    }
}
