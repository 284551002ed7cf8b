//! DescribeCluster: the cluster id, the controller and the brokers — on a single node, this
//! node in every role. Only the brokers' endpoints are served (endpoint type 1).

use super::str_bytes;
use crate::broker::Broker;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use std::sync::Arc;

const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(broker: &Arc<Broker>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let config = broker.config();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(config.node_id));
    if request.endpoint_type != ENDPOINT_BROKERS {
        // The request's type is echoed only where the version has the field (v1+), which is
        // also the only place a client can ask for another type.
        response.endpoint_type = request.endpoint_type;
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(str_bytes("only broker endpoints are served"));
        return response;
    }
    response.brokers.push(
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(config.node_id))
            .with_host(str_bytes(config.advertised_host.clone()))
            .with_port(i32::from(config.advertised_port)),
    );
    response
}
