//! Reading the consumer protocol's subscription out of member metadata (the bytes a
//! `consumer`-type member sends in JoinGroup), for OffsetDelete's "is this topic in use" check.

use super::state::Group;
use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use std::collections::HashSet;

/// Topics any current member of a `consumer` group subscribes to.
pub fn subscribed_topics(group: &Group) -> HashSet<String> {
    if group.protocol_type.as_deref() != Some("consumer") {
        return HashSet::new();
    }
    let protocol = group.protocol.clone().unwrap_or_default();
    group
        .members
        .values()
        .filter_map(|member| decode(member.metadata_for(&protocol)))
        .flat_map(|subscription| subscription.topics)
        .map(|topic| topic.to_string())
        .collect()
}

/// The metadata is a version (i16) followed by that version's body; garbage decodes to
/// nothing rather than an error, since it only narrows what OffsetDelete may remove.
fn decode(mut bytes: Bytes) -> Option<ConsumerProtocolSubscription> {
    if bytes.remaining() < 2 {
        return None;
    }
    let version = bytes.get_i16();
    ConsumerProtocolSubscription::decode(&mut bytes, version.clamp(0, 3)).ok()
}
