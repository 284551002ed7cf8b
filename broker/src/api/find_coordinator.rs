//! FindCoordinator: on one node, this node coordinates every group and every transactional
//! id. In a cluster a group's coordinator is the leader of its `__consumer_offsets`
//! partition (COORDINATOR_NOT_AVAILABLE while it has none); transactions are not offered
//! there yet. Asking for a group coordinator creates `__consumer_offsets`, as Kafka does,
//! so that the first JoinGroup finds it. v4+ asks for several keys at once.

use super::str_bytes;
use crate::broker::Broker;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
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
            GROUP => group_coordinator(broker, key),
            // The transaction coordinator is not replicated yet: refuse rather than let a
            // transactional producer start on state a failover would lose.
            TRANSACTION => Err(ResponseError::CoordinatorNotAvailable),
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

/// The leader of the group's offsets partition, with its Kafka address.
fn group_coordinator(broker: &Arc<Broker>, group_id: &str) -> Found {
    let replication = broker
        .replication()
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let topic = broker.groups().offsets_topic(broker).map_err(|error| {
        tracing::warn!(%error, "cannot create {OFFSETS_TOPIC}");
        ResponseError::CoordinatorNotAvailable
    })?;
    let index = GroupCoordinator::partition_of(group_id);
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
