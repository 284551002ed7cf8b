//! A standalone ("simple") consumer's group offsets: the group's coordinator found with
//! FindCoordinator, then OffsetFetch and OffsetCommit sent to it with generation -1 and no
//! member id, which Kafka accepts for a group that has no members. A coordinator that moved
//! (NOT_COORDINATOR), is being elected (COORDINATOR_NOT_AVAILABLE), is still loading its
//! partition (COORDINATOR_LOAD_IN_PROGRESS) or went away is looked up again, within the
//! retry deadline.

use super::error::ClientError;
use super::{KafkaClient, topic_name};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

const FIND_COORDINATOR_VERSION: i16 = 4;
const OFFSET_FETCH_VERSION: i16 = 8;
const OFFSET_COMMIT_VERSION: i16 = 8;
/// FindCoordinator's key type of a consumer group.
const GROUP_KEY: i8 = 0;

impl KafkaClient {
    /// The offset `group` committed for `topic`/`partition` (the next one to consume), if
    /// any.
    pub async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, ClientError> {
        let request = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_member_epoch(-1)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(vec![partition]),
                ])),
        ]);
        self.with_coordinator("fetch offsets", group, |coordinator| {
            let request = &request;
            async move {
                let response = self
                    .send_to(&coordinator, OFFSET_FETCH_VERSION, request)
                    .await?;
                let answer =
                    response
                        .groups
                        .first()
                        .ok_or_else(|| ClientError::UnexpectedResponse {
                            api: "OffsetFetch",
                            reason: format!("no answer for group {group}"),
                        })?;
                if answer.error_code != 0 {
                    return Err(ClientError::broker(
                        "fetch offsets",
                        group,
                        answer.error_code,
                        None,
                    ));
                }
                let Some(found) = answer
                    .topics
                    .iter()
                    .filter(|answer| answer.name.0.as_str() == topic)
                    .flat_map(|answer| &answer.partitions)
                    .find(|answer| answer.partition_index == partition)
                else {
                    return Ok(None);
                };
                if found.error_code != 0 {
                    return Err(ClientError::broker(
                        "fetch offsets",
                        format!("{group} {topic}-{partition}"),
                        found.error_code,
                        None,
                    ));
                }
                // -1: nothing committed.
                Ok((found.committed_offset >= 0).then_some(found.committed_offset))
            }
        })
        .await
    }

    /// Commits `offset` (the next one to consume) for `group` on `topic`/`partition`.
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), ClientError> {
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(partition)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(StrBytes::default())),
                    ]),
            ]);
        self.with_coordinator("commit offsets", group, |coordinator| {
            let request = &request;
            async move {
                let response = self
                    .send_to(&coordinator, OFFSET_COMMIT_VERSION, request)
                    .await?;
                let answer = response
                    .topics
                    .iter()
                    .flat_map(|answer| &answer.partitions)
                    .find(|answer| answer.partition_index == partition)
                    .ok_or_else(|| ClientError::UnexpectedResponse {
                        api: "OffsetCommit",
                        reason: format!("no answer for {topic}-{partition}"),
                    })?;
                if answer.error_code != 0 {
                    return Err(ClientError::broker(
                        "commit offsets",
                        format!("{group} {topic}-{partition}"),
                        answer.error_code,
                        None,
                    ));
                }
                Ok(())
            }
        })
        .await
    }

    /// The address of `group`'s coordinator, found afresh.
    pub async fn coordinator_address(&self, group: &str) -> Result<String, ClientError> {
        self.coordinators().remove(group);
        self.retry("find coordinator", group, || self.coordinator(group))
            .await
    }

    /// Runs `request` against `group`'s coordinator, finding it again and retrying when it
    /// moved or went away.
    async fn with_coordinator<T, F, Fut>(
        &self,
        operation: &'static str,
        group: &str,
        request: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.retry(operation, group, || async {
            let coordinator = self.coordinator(group).await?;
            let answer = request(coordinator).await;
            if let Err(error) = &answer
                && error.stale_coordinator()
            {
                self.coordinators().remove(group);
            }
            answer
        })
        .await
    }

    /// `group`'s coordinator, cached or found with FindCoordinator.
    async fn coordinator(&self, group: &str) -> Result<String, ClientError> {
        if let Some(addr) = self.coordinators().get(group) {
            return Ok(addr.clone());
        }
        let request = FindCoordinatorRequest::default()
            .with_key_type(GROUP_KEY)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let response = self.send_any(FIND_COORDINATOR_VERSION, &request).await?;
        let found =
            response
                .coordinators
                .first()
                .ok_or_else(|| ClientError::UnexpectedResponse {
                    api: "FindCoordinator",
                    reason: format!("no coordinator for group {group}"),
                })?;
        if found.error_code != 0 {
            return Err(ClientError::broker(
                "find coordinator",
                group,
                found.error_code,
                found.error_message.as_ref().map(ToString::to_string),
            ));
        }
        let addr = format!("{}:{}", found.host, found.port);
        self.coordinators().insert(group.to_string(), addr.clone());
        Ok(addr)
    }

    fn coordinators(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.inner
            .coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}
