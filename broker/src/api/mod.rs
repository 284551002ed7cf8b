//! One file per Kafka API. `SUPPORTED` is the single list of what this broker answers and in
//! which versions; ApiVersions, request decoding and the README's API table all read it.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;

use crate::broker::Broker;
use crate::protocol::codec::Request;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use std::sync::Arc;

/// (API, lowest version, highest version) this broker implements. The range is also clipped
/// to what the kafka-protocol crate can decode (`supported_versions`).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    // Consumer groups (classic protocol): group/.
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // KIP-848 consumer groups (group.protocol=consumer).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The version range served for `api_key`, or `None` if the API is not implemented.
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    let &(_, min, max) = SUPPORTED.iter().find(|(key, _, _)| *key == api_key)?;
    let decodable = api_key.valid_versions();
    let (min, max) = (min.max(decodable.min), max.min(decodable.max));
    (min <= max).then_some((min, max))
}

/// Dispatches a decoded request. `None` means no response is owed (produce with acks=0).
pub async fn handle(broker: &Arc<Broker>, request: Request) -> Option<ResponseKind> {
    if broker.replication().is_some() && waits_under_coordinator_lock(&request.body) {
        // In a cluster the group and transaction coordinators append their records (and
        // markers) through Raft while they hold their locks (so the log's order is the
        // order changes were accepted in): run these on a blocking thread, so a handler
        // waiting for such a lock never holds one of the runtime's workers, which the Raft
        // groups need to make progress.
        let broker = broker.clone();
        let runtime = tokio::runtime::Handle::current();
        return tokio::task::spawn_blocking(move || runtime.block_on(dispatch(&broker, request)))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "a group request's handler failed");
                None
            });
    }
    dispatch(broker, request).await
}

/// The requests that take the group or the transaction coordinator's lock.
fn waits_under_coordinator_lock(body: &RequestKind) -> bool {
    matches!(
        body,
        RequestKind::InitProducerId(_)
            | RequestKind::AddPartitionsToTxn(_)
            | RequestKind::AddOffsetsToTxn(_)
            | RequestKind::EndTxn(_)
            | RequestKind::JoinGroup(_)
            | RequestKind::SyncGroup(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::OffsetCommit(_)
            | RequestKind::OffsetFetch(_)
            | RequestKind::OffsetDelete(_)
            | RequestKind::DescribeGroups(_)
            | RequestKind::ListGroups(_)
            | RequestKind::DeleteGroups(_)
            | RequestKind::TxnOffsetCommit(_)
            | RequestKind::ConsumerGroupHeartbeat(_)
            | RequestKind::ConsumerGroupDescribe(_)
            | RequestKind::FindCoordinator(_)
    )
}

async fn dispatch(broker: &Arc<Broker>, request: Request) -> Option<ResponseKind> {
    let version = request.header.request_api_version;
    let response = match request.body {
        RequestKind::ApiVersions(body) => {
            ResponseKind::ApiVersions(api_versions::handle(&body, version))
        }
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(broker, body, version))
        }
        RequestKind::Produce(body) => {
            return produce::handle(broker, body, version)
                .await
                .map(ResponseKind::Produce);
        }
        RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::handle(broker, body, version).await),
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, body, version))
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, body, version))
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, body))
        }
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, body, version))
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, body))
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, body))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::handle(broker, body))
        }
        RequestKind::IncrementalAlterConfigs(body) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(broker, body))
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, body))
        }
        RequestKind::DescribeLogDirs(body) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, body))
        }
        RequestKind::OffsetForLeaderEpoch(body) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, body))
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, body))
        }
        RequestKind::AddPartitionsToTxn(body) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(broker, body, version))
        }
        RequestKind::AddOffsetsToTxn(body) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(broker, body))
        }
        RequestKind::EndTxn(body) => ResponseKind::EndTxn(end_txn::handle(broker, body)),
        RequestKind::TxnOffsetCommit(body) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(broker, body))
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, body, version))
        }
        RequestKind::JoinGroup(body) => ResponseKind::JoinGroup(
            join_group::handle(broker, &request.header, body, version).await,
        ),
        RequestKind::SyncGroup(body) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, body, version).await)
        }
        RequestKind::Heartbeat(body) => ResponseKind::Heartbeat(heartbeat::handle(broker, body)),
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, body, version))
        }
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, body))
        }
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, body, version))
        }
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, body, version))
        }
        RequestKind::ListGroups(body) => {
            ResponseKind::ListGroups(list_groups::handle(broker, body, version))
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, body))
        }
        RequestKind::OffsetDelete(body) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, body))
        }
        RequestKind::ConsumerGroupHeartbeat(body) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(broker, &request.header, body),
        ),
        RequestKind::ConsumerGroupDescribe(body) => ResponseKind::ConsumerGroupDescribe(
            consumer_group_describe::handle(broker, body, version),
        ),
        other => {
            // decode_request only lets through what SUPPORTED lists, so this is a bug.
            tracing::error!(api = ?request.api_key, "no handler for a supported API: {other:?}");
            return None;
        }
    };
    Some(response)
}

/// Whether appends wait for fsync, and the runtime can move other tasks off this thread.
pub(crate) fn fsyncs_on_append(broker: &Broker) -> bool {
    broker.config().log_flush == commerce_storage::FlushPolicy::EveryAppend
        && tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        })
}

/// `StrBytes` from an owned string (the generated messages' string type).
pub(crate) fn str_bytes(value: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(value.into())
}

/// Wall-clock milliseconds since the Unix epoch (transaction start times and timeouts).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
