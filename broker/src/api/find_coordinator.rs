//! FindCoordinator: on one node, this node coordinates every group and every transactional
//! id. In a cluster a group's coordinator is the leader of its `__consumer_offsets`
//! partition, a transactional id's the leader of its `__transaction_state` partition
//! (COORDINATOR_NOT_AVAILABLE while it has none). Asking creates the topic, as Kafka does,
//! so that the first JoinGroup or InitProducerId finds it. v4+ asks for several keys at
//! once.

use super::str_bytes;
use crate::broker::Broker;
use crate::broker::Topic;
use crate::group::GroupCoordinator;
use crate::producer::txn_log;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use std::sync::Arc;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// (node id, host, port) of a coordinator, or the error that there is none.
type Found = Result<(i32, String, i32), ResponseError>;

pub fn handle(
    broker: &Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if broker.replication().is_some() {
        return cluster(broker, request, version);
    }
    let error = match request.key_type {
        GROUP => broker.groups().offsets_topic(broker).err().map(|error| {
            tracing::error!(%error, "cannot create the offsets topic");
            ResponseError::CoordinatorNotAvailable
        }),
        TRANSACTION => None,
        _ => Some(ResponseError::InvalidRequest),
    };
    let config = broker.config();
    let (node, host, port) = match error {
        None => (
            config.node_id,
            config.advertised_host.clone(),
            i32::from(config.advertised_port),
        ),
        Some(_) => (-1, String::new(), -1),
    };
    let code = error.map_or(0, |error| error.code());
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host.clone()))
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
    } else {
        response.error_code = code;
        response.node_id = BrokerId(node);
        response.host = str_bytes(host);
        response.port = port;
    }
    response
}

fn cluster(
    broker: &Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let find = |key: &str| -> Found {
        match request.key_type {
            GROUP => {
                let topic = broker.groups().offsets_topic(broker);
                partition_leader(broker, topic, GroupCoordinator::partition_of(key))
            }
            TRANSACTION => {
                let topic = txn_log::topic(broker);
                partition_leader(broker, topic, txn_log::partition_of(key))
            }
            _ => Err(ResponseError::InvalidRequest),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    let answer = |found: Found| match found {
        Ok((node, host, port)) => (node, host, port, 0),
        Err(error) => (-1, String::new(), -1, error.code()),
    };
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (node, host, port, code) = answer(find(key.as_str()));
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
    } else {
        let (node, host, port, code) = answer(find(request.key.as_str()));
        response.error_code = code;
        response.node_id = BrokerId(node);
        response.host = str_bytes(host);
        response.port = port;
    }
    response
}

/// The leader of partition `index` of a coordinator's topic, with its Kafka address.
fn partition_leader(
    broker: &Arc<Broker>,
    topic: crate::error::Result<Arc<Topic>>,
    index: i32,
) -> Found {
    let replication = broker
        .replication()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let topic = topic.map_err(|error| {
        tracing::warn!(%error, "cannot create a coordinator topic");
        ResponseError::CoordinatorNotAvailable
    })?;
    let partition = topic
        .partition(index)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let leader = if partition.is_leader() {
        Some(replication.node_id)
    } else {
        partition
            .replica()
            .and_then(|replica| replica.status())
            .and_then(|status| status.leader)
            .filter(|leader| *leader != replication.node_id)
    }
    .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let metadata = replication.metadata.current();
    let node = metadata
        .nodes
        .get(&leader)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let (host, port) = node
        .kafka_addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_string(), port.parse::<i32>().ok()?)))
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let id = i32::try_from(leader).map_err(|_| ResponseError::CoordinatorNotAvailable)?;
    Ok((id, host, port))
}
