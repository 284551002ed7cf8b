//! ConsumerGroupDescribe (KIP-848): a consumer-protocol group's epoch, state and members with
//! their current and target assignments. Classic groups and unknown ids answer
//! GROUP_ID_NOT_FOUND, as Kafka does.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::consumer::Assignment;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// ConsumerGroupDescribe v1's member type for a member on the consumer protocol.
const CONSUMER_MEMBER: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            let Some(group) = broker.groups().describe_consumer_group(group_id.as_str()) else {
                return DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes("no consumer-protocol group of that id")));
            };
            let members = group
                .members
                .values()
                .map(|member| {
                    let mut described = Member::default()
                        .with_member_id(str_bytes(member.id.clone()))
                        .with_instance_id(member.instance_id.clone().map(str_bytes))
                        .with_member_epoch(member.current_epoch)
                        .with_client_id(str_bytes(member.client_id.clone()))
                        .with_subscribed_topic_names(
                            member
                                .subscribed
                                .iter()
                                .map(|name| TopicName(str_bytes(name.clone())))
                                .collect(),
                        )
                        .with_assignment(describe(broker, member.returned.as_ref()))
                        .with_target_assignment(describe(broker, Some(&member.target)));
                    if version >= 1 {
                        described.member_type = CONSUMER_MEMBER;
                    }
                    described
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(str_bytes(group.state_name()))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.epoch)
                .with_assignor_name(str_bytes("range"))
                .with_members(members)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn describe(broker: &Broker, assignment: Option<&Assignment>) -> DescribedAssignment {
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in assignment.into_iter().flatten() {
        by_topic.entry(*topic).or_default().push(*partition);
    }
    DescribedAssignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .map(|(topic_id, partitions)| {
                let name = broker
                    .topic_by_id(topic_id)
                    .map(|topic| topic.name.to_string())
                    .unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}
