//! What the client knows of the cluster: broker addresses, and each topic's partitions with
//! their leaders, from the last Metadata response. It is a cache: entries are dropped when a
//! broker says they are wrong (not the leader, unknown partition, a connection failure) and
//! the next request reads fresh metadata.

use super::error::ClientError;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::MetadataResponse;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    /// Broker id -> "host:port".
    brokers: HashMap<i32, String>,
    /// The controller's id (-1: unknown), where CreateTopics goes.
    controller: i32,
    topics: HashMap<String, TopicView>,
}

/// One topic's partitions, indexed by partition id: the leader's broker id, if it has one.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicView {
    pub(crate) leaders: Vec<Option<i32>>,
}

impl TopicView {
    pub(crate) fn partition_count(&self) -> i32 {
        i32::try_from(self.leaders.len()).unwrap_or(i32::MAX)
    }

    pub(crate) fn all_led(&self) -> bool {
        !self.leaders.is_empty() && self.leaders.iter().all(Option::is_some)
    }
}

/// What one Metadata response said about one asked-for topic.
#[derive(Debug)]
pub(crate) enum TopicState {
    Missing,
    Present(TopicView),
}

impl ClusterView {
    /// Takes in a Metadata response; returns what it said of each topic in it.
    pub(crate) fn update(
        &mut self,
        response: &MetadataResponse,
    ) -> Result<HashMap<String, TopicState>, ClientError> {
        if !response.brokers.is_empty() {
            self.brokers = response
                .brokers
                .iter()
                .map(|broker| (broker.node_id.0, format!("{}:{}", broker.host, broker.port)))
                .collect();
        }
        self.controller = response.controller_id.0;
        let mut states = HashMap::new();
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|name| name.0.to_string()) else {
                continue;
            };
            let state = match topic.error_code.err() {
                Some(ResponseError::UnknownTopicOrPartition) => {
                    self.topics.remove(&name);
                    TopicState::Missing
                }
                // The topic exists; its leaders are being elected.
                None | Some(ResponseError::LeaderNotAvailable) => {
                    let mut leaders = vec![None; topic.partitions.len()];
                    for partition in &topic.partitions {
                        let leader = (partition.leader_id.0 >= 0
                            && self.brokers.contains_key(&partition.leader_id.0))
                        .then_some(partition.leader_id.0);
                        let slot = usize::try_from(partition.partition_index)
                            .ok()
                            .and_then(|index| leaders.get_mut(index));
                        if let Some(slot) = slot {
                            *slot = leader;
                        }
                    }
                    let view = TopicView { leaders };
                    self.topics.insert(name.clone(), view.clone());
                    TopicState::Present(view)
                }
                Some(_) => {
                    return Err(ClientError::broker(
                        "Metadata",
                        name,
                        topic.error_code,
                        None,
                    ));
                }
            };
            states.insert(name, state);
        }
        Ok(states)
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&TopicView> {
        self.topics.get(name)
    }

    /// Forgets a topic's leaders: the next request for it reads fresh metadata.
    pub(crate) fn forget(&mut self, name: &str) {
        self.topics.remove(name);
    }

    /// The address of `topic`/`partition`'s leader, if known.
    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<String> {
        let index = usize::try_from(partition).ok()?;
        let leader = (*self.topics.get(topic)?.leaders.get(index)?)?;
        self.brokers.get(&leader).cloned()
    }

    pub(crate) fn controller(&self) -> Option<String> {
        self.brokers.get(&self.controller).cloned()
    }

    /// Every known broker address, sorted (the candidates for a Metadata request).
    pub(crate) fn addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self.brokers.values().cloned().collect();
        addresses.sort();
        addresses
    }
}
