//! Topic creation and deletion in a cluster: a controller command, then a wait until this
//! node's reconciler has opened (or closed) the topic, so the caller can use it at once.
//!
//! Everything non-deterministic is fixed here, before the proposal: the topic id and the
//! replica placement (the controller assigns group ids as it applies the command).

use super::{DEFAULT_REPLICATION_FACTOR, Replication, wait_blocking};
use crate::broker::{Broker, MAX_PARTITIONS, Topic};
use crate::controller::{
    ControllerAnswer, ControllerCommand, decode_answer, encode, place_replicas,
};
use crate::error::{BrokerError, Result};
use crate::topic_config::TopicConfig;
use crate::topic_name::TopicName;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long a metadata change may take: the controller's commit plus this node opening or
/// closing the partition groups.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

impl Broker {
    pub(crate) fn create_through_controller(
        &self,
        replication: &Replication,
        name: &str,
        partitions: i32,
        config: TopicConfig,
        replication_factor: Option<usize>,
    ) -> Result<Arc<Topic>> {
        let name = TopicName::parse(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(partitions));
        }
        let metadata = replication.metadata.current();
        if metadata.topics.contains_key(name.as_str()) {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        let nodes: BTreeSet<u64> = metadata.placeable_nodes();
        // The default is the cluster's size (up to 3), not the count registered so far: a
        // topic created while the cluster forms must not keep one or two replicas for good.
        let voters = replication.controller_voters().max(nodes.len()).max(1);
        let factor = replication_factor.unwrap_or_else(|| DEFAULT_REPLICATION_FACTOR.min(voters));
        if nodes.len() < factor {
            // Retriable (NOT_CONTROLLER): the other nodes register within moments.
            return Err(BrokerError::Replication(format!(
                "only {} of the cluster's nodes have registered and topic {name} needs {factor} replicas; retry shortly",
                nodes.len()
            )));
        }
        let count =
            usize::try_from(partitions).map_err(|_| BrokerError::InvalidPartitions(partitions))?;
        let replicas = place_replicas(&nodes, &metadata.preferred_leader_counts(), count, factor)?;
        let id = Uuid::new_v4();
        let command = ControllerCommand::CreateTopic {
            name: name.to_string(),
            id,
            config,
            replicas,
        };
        submit(replication, &command)?;
        tracing::info!(topic = %name, partitions, replication_factor = factor, "created topic through the controller");
        let topic = wait_until(|| self.topic(name.as_str()).filter(|topic| topic.id == id))
            .ok_or_else(|| {
                BrokerError::RequestTimedOut(format!(
                    "topic {name} was created but this node has not opened it yet"
                ))
            })?;
        // Answer once every partition has a leader this node knows, so that Metadata asked
        // of this node right after names them and produce goes straight there. Past the
        // wait the topic exists all the same: clients retry LEADER_NOT_AVAILABLE, as they
        // do in the same window on Kafka.
        if wait_until(|| every_partition_led(&topic).then_some(())).is_none() {
            tracing::warn!(topic = %name, "created, but not every partition has a leader yet");
        }
        Ok(topic)
    }

    pub(crate) fn delete_through_controller(
        &self,
        replication: &Replication,
        name: &str,
    ) -> Result<Arc<Topic>> {
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        if topic.name.is_internal() {
            return Err(BrokerError::InvalidTopic {
                name: name.to_string(),
                reason: "internal topics cannot be deleted",
            });
        }
        submit(
            replication,
            &ControllerCommand::DeleteTopic {
                name: name.to_string(),
            },
        )?;
        wait_until(|| {
            self.topic(name)
                .filter(|t| t.id == topic.id)
                .is_none()
                .then_some(())
        })
        .ok_or_else(|| {
            BrokerError::RequestTimedOut(format!(
                "topic {name} was deleted but this node still has it open"
            ))
        })?;
        Ok(topic)
    }
}

/// Proposes `command` to the controller (forwarded to its leader) and maps a refusal to
/// its Kafka error.
pub(super) fn submit(replication: &Replication, command: &ControllerCommand) -> Result<()> {
    let bytes = encode(command).map_err(|error| BrokerError::Replication(error.to_string()))?;
    let proposal = replication
        .raft
        .submit(Replication::controller_group(), bytes);
    let answer = wait_blocking(tokio::time::timeout(CONTROLLER_TIMEOUT, proposal))?
        .map_err(|_| BrokerError::RequestTimedOut("the controller did not answer".to_string()))?
        .map_err(|error| BrokerError::Replication(format!("controller: {error}")))?;
    match decode_answer(&answer) {
        Ok(ControllerAnswer::Applied) => Ok(()),
        Ok(ControllerAnswer::Refused {
            error_code,
            message,
        }) => Err(BrokerError::Controller {
            error_code,
            message,
        }),
        Err(error) => Err(BrokerError::Replication(format!(
            "unreadable controller answer: {error}"
        ))),
    }
}

/// Polls `check` until it yields, for at most [`CONTROLLER_TIMEOUT`].
/// Whether this node knows a leader for every partition of `topic`.
fn every_partition_led(topic: &Topic) -> bool {
    topic.partitions.iter().all(|partition| {
        partition
            .replica()
            .and_then(|replica| replica.status())
            .is_some_and(|status| status.leader.is_some())
    })
}

pub(super) fn wait_until<T>(check: impl Fn() -> Option<T>) -> Option<T> {
    let wait = async {
        let deadline = tokio::time::Instant::now() + CONTROLLER_TIMEOUT;
        loop {
            if let Some(found) = check() {
                return Some(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    wait_blocking(wait).ok().flatten()
}
