//! One file per Kafka API. `SUPPORTED` is the single list of what this broker answers and in
//! which versions; ApiVersions, request decoding and the README's API table all read it.

pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

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
    let version = request.header.request_api_version;
    let response = match request.body {
        RequestKind::ApiVersions(body) => {
            ResponseKind::ApiVersions(api_versions::handle(&body, version))
        }
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(broker, body, version))
        }
        RequestKind::Produce(body) => {
            return produce::handle(broker, body, version).map(ResponseKind::Produce);
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

/// `StrBytes` from an owned string (the generated messages' string type).
pub(crate) fn str_bytes(value: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(value.into())
}
