//! Fetch: stored batches from each requested partition, bounded by the request's byte limits,
//! long-polling up to `max_wait_ms` until `min_bytes` are available. Records are returned as
//! stored (no re-encoding). Fetch sessions (KIP-227) are refused cleanly: a request that asks
//! for a new session gets session id 0, which tells the client to keep sending full
//! requests; a request naming a session we never created gets FETCH_SESSION_ID_NOT_FOUND.
//!
//! isolation_level=1 (read_committed) reads only below the last stable offset and lists the
//! aborted transactions in the returned range, so the client can drop their records.

use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use bytes::Bytes;
use commerce_storage::LogError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const READ_COMMITTED: i8 = 1;

/// Longest long-poll honoured, whatever the client asks, so a connection is never parked
/// indefinitely.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    if request.session_id != 0 {
        let mut response = FetchResponse::default();
        response.error_code = ResponseError::FetchSessionIdNotFound.code();
        return response;
    }
    let by_id = version >= 13;
    let wanted: Vec<(
        Option<Arc<Topic>>,
        &kafka_protocol::messages::fetch_request::FetchTopic,
    )> = request
        .topics
        .iter()
        .map(|topic| {
            let found = if by_id {
                broker.topic_by_id(topic.topic_id)
            } else {
                broker.topic(topic.topic.0.as_str())
            };
            (found, topic)
        })
        .collect();

    let mut waiters: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .flat_map(|(topic, fetch_topic)| {
            fetch_topic.partitions.iter().filter_map(move |p| {
                topic
                    .as_ref()
                    .and_then(|topic| topic.partition(p.partition))
                    .map(|p| p.subscribe())
            })
        })
        .collect();
    let wait =
        Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0);
    let read_committed = request.isolation_level == READ_COMMITTED;
    let replicated = broker.replication().is_some();

    loop {
        for waiter in &mut waiters {
            waiter.borrow_and_update();
        }
        let (response, bytes, had_error) =
            gather(&wanted, max_bytes, by_id, read_committed, replicated);
        if bytes >= min_bytes || had_error || waiters.is_empty() || Instant::now() >= deadline {
            return response;
        }
        let any_append = futures_any_changed(&mut waiters);
        if tokio::time::timeout_at(deadline, any_append).await.is_err() {
            let (response, _, _) = gather(&wanted, max_bytes, by_id, read_committed, replicated);
            return response;
        }
    }
}

/// Resolves when any of the partitions' log ends moves.
async fn futures_any_changed(waiters: &mut [watch::Receiver<i64>]) {
    let changes = waiters.iter_mut().map(|waiter| Box::pin(waiter.changed()));
    let (_result, _index, _rest) = select_all(changes).await;
}

/// A minimal `select_all` over boxed futures, to avoid a dependency for one call.
async fn select_all<F: std::future::Future + Unpin>(
    futures: impl IntoIterator<Item = F>,
) -> (F::Output, usize, Vec<F>) {
    let mut futures: Vec<F> = futures.into_iter().collect();
    std::future::poll_fn(move |cx| {
        for (index, future) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(output) = std::pin::Pin::new(future).poll(cx) {
                let rest = std::mem::take(&mut futures);
                return std::task::Poll::Ready((output, index, rest));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

fn gather(
    wanted: &[(
        Option<Arc<Topic>>,
        &kafka_protocol::messages::fetch_request::FetchTopic,
    )],
    max_bytes: usize,
    by_id: bool,
    read_committed: bool,
    replicated: bool,
) -> (FetchResponse, usize, bool) {
    let mut response = FetchResponse::default();
    let mut total = 0usize;
    let mut had_error = false;
    for (topic, fetch_topic) in wanted {
        let mut topic_response = FetchableTopicResponse::default()
            .with_topic(fetch_topic.topic.clone())
            .with_topic_id(fetch_topic.topic_id);
        for wanted_partition in &fetch_topic.partitions {
            let index = wanted_partition.partition;
            let partition = topic.as_ref().and_then(|topic| topic.partition(index));
            let mut data = PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::new()));
            let Some(partition) = partition.filter(|partition| partition.is_leader()) else {
                let error = if partition.is_some() || (topic.is_some() && replicated) {
                    // A follower (or a node without a replica): the client fetches from
                    // the leader it finds in fresh metadata.
                    ResponseError::NotLeaderOrFollower
                } else if by_id && topic.is_none() {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                data.error_code = error.code();
                had_error = true;
                topic_response.partitions.push(data);
                continue;
            };
            let high_watermark = partition.high_watermark();
            let last_stable_offset = partition.last_stable_offset();
            data.high_watermark = high_watermark;
            data.last_stable_offset = last_stable_offset;
            let upper_bound = if read_committed {
                last_stable_offset
            } else {
                high_watermark
            };
            data.log_start_offset = partition.log_start_offset();
            let partition_max = usize::try_from(wanted_partition.partition_max_bytes).unwrap_or(0);
            let budget = partition_max.min(max_bytes.saturating_sub(total));
            // KIP-74: the first batch of the first non-empty partition is returned whole even
            // when larger than the limits, so a consumer can always make progress.
            let fetch_offset = wanted_partition.fetch_offset;
            match partition.read_below(fetch_offset, budget, total == 0, upper_bound) {
                Ok(read) => {
                    total += read.bytes.len();
                    if read_committed {
                        let aborted = partition
                            .aborted_between(fetch_offset, upper_bound)
                            .into_iter()
                            .map(|txn| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(txn.producer_id))
                                    .with_first_offset(txn.first_offset)
                            })
                            .collect();
                        data.aborted_transactions = Some(aborted);
                    }
                    data.records = Some(read.bytes);
                }
                Err(BrokerError::Log(LogError::OffsetOutOfRange { .. })) => {
                    data.error_code = ResponseError::OffsetOutOfRange.code();
                    had_error = true;
                }
                Err(error) => {
                    tracing::error!(topic = %partition.topic, partition = index, %error, "fetch read failed");
                    data.error_code = error.kafka_code();
                    had_error = true;
                }
            }
            topic_response.partitions.push(data);
        }
        response.responses.push(topic_response);
    }
    (response, total, had_error)
}
