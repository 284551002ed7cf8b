//! DescribeCluster: the cluster id, the controller and the brokers. On a single node, this
//! node in every role; on a cluster node, as Metadata answers it: every registered broker,
//! the controller group's leader, and the cluster id the controller decided. Only the
//! brokers' endpoints are served (endpoint type 1).

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use std::sync::Arc;

const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(broker: &Arc<Broker>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    if request.endpoint_type != ENDPOINT_BROKERS {
        // The request's type is echoed only where the version has the field (v1+), which is
        // also the only place a client can ask for another type.
        response.endpoint_type = request.endpoint_type;
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(str_bytes("only broker endpoints are served"));
        return response;
    }
    let Some(cluster_id) = broker.cluster_id() else {
        // The field cannot be null; a retriable error until the node knows the id.
        response.error_code = ResponseError::LeaderNotAvailable.code();
        response.error_message = Some(str_bytes(
            "this node has not learned the cluster id from the controller yet",
        ));
        return response;
    };
    response.cluster_id = str_bytes(cluster_id);
    let config = broker.config();
    match broker.replication() {
        Some(replication) => {
            response.controller_id = BrokerId(
                replication
                    .controller_leader()
                    .and_then(|id| i32::try_from(id).ok())
                    .unwrap_or(-1),
            );
            response.brokers = replication
                .metadata
                .current()
                .nodes
                .values()
                .filter_map(|node| {
                    let (host, port) = node.kafka_addr.rsplit_once(':')?;
                    Some(
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(i32::try_from(node.id).ok()?))
                            .with_host(str_bytes(host))
                            .with_port(port.parse().ok()?),
                    )
                })
                .collect();
        }
        None => {
            response.controller_id = BrokerId(config.node_id);
            response.brokers.push(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(config.node_id))
                    .with_host(str_bytes(config.advertised_host.clone()))
                    .with_port(i32::from(config.advertised_port)),
            );
        }
    }
    response
}
