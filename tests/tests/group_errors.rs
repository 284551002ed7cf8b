//! The group coordinator's error answers to requests librdkafka never sends on its own — a
//! commit from an unknown member or a stale generation, DeleteGroups of a live group — sent
//! raw with the kafka-protocol codec. Each refused request must change nothing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use commerce_tests::kafka;
use commerce_tests::{Node, TimeLimit};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// One connection speaking raw Kafka requests.
struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    fn connect(node: &Node) -> Raw {
        let stream = TcpStream::connect(node.kafka_addr()).expect("cannot connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, key: ApiKey, version: i16, body: &Q) -> R {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, key.request_header_version(version))
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        let mut out = BytesMut::new();
        out.put_i32(i32::try_from(frame.len()).unwrap());
        out.extend_from_slice(&frame);
        self.stream.write_all(&out).unwrap();

        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap()];
        self.stream.read_exact(&mut response).unwrap();
        let mut response = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        let body = R::decode(&mut response, version).unwrap();
        assert!(!response.has_remaining(), "trailing bytes in the response");
        body
    }
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// A consumer-protocol subscription (v0) to `topic`, as a real consumer's member metadata.
fn subscription(topic: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s(topic)])
        .encode(&mut out, 0)
        .unwrap();
    out.freeze()
}

fn join(
    raw: &mut Raw,
    group: &str,
    member: &str,
    session_ms: i32,
    topic: &str,
) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(topic)),
        ]);
    raw.call(ApiKey::JoinGroup, 5, &request)
}

fn commit(
    raw: &mut Raw,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset),
                ]),
        ]);
    let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &request);
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch v8 for several groups at once: (group, committed offset of topic/0).
fn fetch(raw: &mut Raw, groups: &[&str], topic: &str) -> Vec<(String, i64)> {
    let request = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|group| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(group)))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s(topic)))
                            .with_partition_indexes(vec![0]),
                    ]))
            })
            .collect(),
    );
    let response: OffsetFetchResponse = raw.call(ApiKey::OffsetFetch, 8, &request);
    response
        .groups
        .iter()
        .map(|group| {
            assert_eq!(group.error_code, 0);
            (
                group.group_id.to_string(),
                group.topics[0].partitions[0].committed_offset,
            )
        })
        .collect()
}

fn delete_group(raw: &mut Raw, group: &str) -> i16 {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let response: DeleteGroupsResponse = raw.call(ApiKey::DeleteGroups, 2, &request);
    response.results[0].error_code
}

#[test]
fn bad_group_requests_get_kafka_errors_and_change_nothing() {
    let _limit = TimeLimit::new(
        "bad_group_requests_get_kafka_errors_and_change_nothing",
        Duration::from_secs(60),
    );
    let node = Node::start();
    kafka::create_topic(&node.bootstrap(), "orders-raw", 1, &[]);
    let mut raw = Raw::connect(&node);

    let found: FindCoordinatorResponse = raw.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default().with_key(s("raw")),
    );
    assert_eq!((found.error_code, found.node_id.0), (0, 1));
    let found: FindCoordinatorResponse = raw.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("raw"), s("other")]),
    );
    assert_eq!(found.coordinators.len(), 2);

    // Join: the first answer hands out the member id, the second completes generation 1.
    let first = join(&mut raw, "raw", "", 10_000, "orders-raw");
    assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
    let member = first.member_id.to_string();
    let joined = join(&mut raw, "raw", &member, 10_000, "orders-raw");
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member);
    let synced: SyncGroupResponse = raw.call(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(s("raw")))
            .with_generation_id(1)
            .with_member_id(s(&member))
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(Bytes::from_static(b"all")),
            ]),
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));

    // Refused joins.
    let short = join(&mut raw, "raw-short", "", 100, "orders-raw");
    assert_eq!(short.error_code, code(ResponseError::InvalidSessionTimeout));
    let unknown = join(&mut raw, "raw", "not-a-member", 10_000, "orders-raw");
    assert_eq!(unknown.error_code, code(ResponseError::UnknownMemberId));

    // Refused commits, then one good one.
    assert_eq!(
        commit(&mut raw, "raw", "not-a-member", 1, "orders-raw", 0, 5),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        commit(&mut raw, "raw", &member, 0, "orders-raw", 0, 5),
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        commit(&mut raw, "raw", &member, 1, "no-such-topic", 0, 5),
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        commit(&mut raw, "raw", &member, 1, "orders-raw", 9, 5),
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        fetch(&mut raw, &["raw"], "orders-raw"),
        vec![("raw".to_string(), -1)],
        "refused commits stored nothing"
    );
    assert_eq!(commit(&mut raw, "raw", &member, 1, "orders-raw", 0, 3), 0);
    assert_eq!(
        fetch(&mut raw, &["raw", "nobody"], "orders-raw"),
        vec![("raw".to_string(), 3), ("nobody".to_string(), -1)]
    );

    // Heartbeats and group administration.
    let beat: HeartbeatResponse = raw.call(
        ApiKey::Heartbeat,
        3,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(s("raw")))
            .with_generation_id(7)
            .with_member_id(s(&member)),
    );
    assert_eq!(beat.error_code, code(ResponseError::IllegalGeneration));
    assert_eq!(
        delete_group(&mut raw, "raw"),
        code(ResponseError::NonEmptyGroup)
    );
    assert_eq!(
        delete_group(&mut raw, "ghost"),
        code(ResponseError::GroupIdNotFound)
    );
    let kept: OffsetDeleteResponse = raw.call(
        ApiKey::OffsetDelete,
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("raw")))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("orders-raw")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ]),
    );
    assert_eq!(
        kept.topics[0].partitions[0].error_code,
        code(ResponseError::GroupSubscribedToTopic)
    );
    let described: DescribeGroupsResponse = raw.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("raw"))]),
    );
    let group = &described.groups[0];
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.protocol_data.as_str(), "range");
    assert_eq!(group.members.len(), 1);
    assert_eq!(
        group.members[0].member_assignment,
        Bytes::from_static(b"all")
    );
    assert_eq!(
        fetch(&mut raw, &["raw"], "orders-raw"),
        vec![("raw".to_string(), 3)]
    );

    // Once the member left, the group can go, and its offsets with it.
    let left: LeaveGroupResponse = raw.call(
        ApiKey::LeaveGroup,
        3,
        &LeaveGroupRequest::default()
            .with_group_id(GroupId(s("raw")))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]),
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(delete_group(&mut raw, "raw"), 0);
    assert_eq!(
        fetch(&mut raw, &["raw"], "orders-raw"),
        vec![("raw".to_string(), -1)]
    );
    let listed: ListGroupsResponse = raw.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert!(
        listed
            .groups
            .iter()
            .all(|group| group.group_id.as_str() != "raw")
    );
}

/// A member that neither heartbeats nor rejoins is expired after its session timeout and its
/// partitions go to the member that is still there.
#[test]
fn a_member_that_stops_heartbeating_loses_its_partitions() {
    let _limit = TimeLimit::new(
        "a_member_that_stops_heartbeating_loses_its_partitions",
        Duration::from_secs(90),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-silent", 2, &[]);
    let mut raw = Raw::connect(&node);
    let first = join(&mut raw, "silent", "", 6_000, "orders-silent");
    let silent = first.member_id.to_string();
    let joined = join(&mut raw, "silent", &silent, 6_000, "orders-silent");
    assert_eq!(joined.generation_id, 1);
    let synced: SyncGroupResponse = raw.call(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(s("silent")))
            .with_generation_id(1)
            .with_member_id(s(&silent)),
    );
    assert_eq!(synced.error_code, 0);

    // From now on the raw member says nothing.
    let mut alive = commerce_tests::group::Member::join(&bootstrap, "silent", "orders-silent", &[]);
    commerce_tests::group::drive(
        &mut [&mut alive],
        "both partitions on the live member",
        Duration::from_secs(60),
        |m| m[0].assigned().len() == 2,
    );
    let described: DescribeGroupsResponse = raw.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("silent"))]),
    );
    let members: Vec<String> = described.groups[0]
        .members
        .iter()
        .map(|member| member.member_id.to_string())
        .collect();
    assert_eq!(members.len(), 1);
    assert_ne!(members[0], silent);
}

/// KIP-848 by hand: a member joins with ConsumerGroupHeartbeat and gets the whole topic,
/// ConsumerGroupDescribe shows it, a wrong epoch is fenced, commits are checked against the
/// member epoch, and leaving empties the group.
#[test]
fn consumer_protocol_heartbeats_describe_fence_and_check_commits() {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;

    let _limit = TimeLimit::new(
        "consumer_protocol_heartbeats_describe_fence_and_check_commits",
        Duration::from_secs(60),
    );
    let node = Node::start();
    kafka::create_topic(&node.bootstrap(), "orders-848raw", 2, &[]);
    let mut raw = Raw::connect(&node);
    let beat = |raw: &mut Raw, epoch: i32, subscribe: bool, owned: Option<Vec<TopicPartitions>>| {
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("raw848")))
            .with_member_id(s("member-1"))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(10_000)
            .with_topic_partitions(owned);
        if subscribe {
            request.subscribed_topic_names = Some(vec![TopicName(s("orders-848raw"))]);
        }
        let response: ConsumerGroupHeartbeatResponse =
            raw.call(ApiKey::ConsumerGroupHeartbeat, 1, &request);
        response
    };

    let joined = beat(&mut raw, 0, true, Some(vec![]));
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_id.as_deref(), Some("member-1"));
    let epoch = joined.member_epoch;
    assert!(epoch > 0);
    let assignment = joined
        .assignment
        .expect("the first answer carries the assignment");
    assert_eq!(assignment.topic_partitions.len(), 1);
    let topic_id = assignment.topic_partitions[0].topic_id;
    assert_eq!(assignment.topic_partitions[0].partitions, vec![0, 1]);

    // Steady state: the same epoch, no assignment repeated.
    let owned = vec![
        TopicPartitions::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![0, 1]),
    ];
    let steady = beat(&mut raw, epoch, false, Some(owned));
    assert_eq!((steady.error_code, steady.member_epoch), (0, epoch));
    assert!(steady.assignment.is_none());
    let fenced = beat(&mut raw, epoch + 3, false, None);
    assert_eq!(fenced.error_code, code(ResponseError::FencedMemberEpoch));

    let described: ConsumerGroupDescribeResponse = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("raw848")), GroupId(s("nope"))]),
    );
    let group = &described.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].member_epoch, epoch);
    let current = &group.members[0].assignment.topic_partitions[0];
    assert_eq!(current.topic_name.as_str(), "orders-848raw");
    assert_eq!(current.partitions, vec![0, 1]);
    assert_eq!(
        described.groups[1].error_code,
        code(ResponseError::GroupIdNotFound)
    );

    // OffsetCommit v9 carries the member epoch.
    assert_eq!(
        commit_v9(&mut raw, "member-1", epoch - 1),
        code(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        commit_v9(&mut raw, "someone-else", epoch),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(commit_v9(&mut raw, "member-1", epoch), 0);
    assert_eq!(
        fetch(&mut raw, &["raw848"], "orders-848raw"),
        vec![("raw848".to_string(), 4)]
    );

    let left = beat(&mut raw, -1, false, None);
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let described: ConsumerGroupDescribeResponse = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("raw848"))]),
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
    assert!(described.groups[0].members.is_empty());
}

fn commit_v9(raw: &mut Raw, member: &str, epoch: i32) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("raw848")))
        .with_generation_id_or_member_epoch(epoch)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders-848raw")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(4),
                ]),
        ]);
    let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 9, &request);
    response.topics[0].partitions[0].error_code
}
