//! The cluster's membership operations over the HTTP gateway, for admins (as Redpanda's
//! admin API does it): `POST /api/cluster/nodes` adds a node started with `--join`,
//! `POST /api/cluster/nodes/{id}/drain` starts moving a node's replicas to the others, and
//! `DELETE /api/cluster/nodes/{id}` removes it once they moved (409 `still_replicating`
//! before). They run on the controller leader; another node answers 409
//! `not_controller_leader` naming the leader's HTTP address.

use super::runtime::{ClusterRuntime, MembershipError};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use commerce_gateway::ServiceMount;
use commerce_services::platform::Rejection;
use commerce_services::platform::http::{Admin, ApiError, Body};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub node_id: u64,
    pub raft_addr: String,
}

pub fn mount(runtime: Arc<ClusterRuntime>) -> ServiceMount {
    let router = Router::new()
        .route("/nodes", post(add_node))
        .route("/nodes/{id}", delete(remove_node))
        .route("/nodes/{id}/drain", post(drain_node))
        .with_state(runtime);
    ServiceMount {
        path: "/api/cluster",
        router,
        openapi: utoipa::openapi::OpenApi::default(),
        healthy: Arc::new(|| true),
    }
}

async fn add_node(
    Admin(_): Admin,
    State(runtime): State<Arc<ClusterRuntime>>,
    Body(request): Body<AddNode>,
) -> Result<StatusCode, ApiError> {
    if request.node_id == 0 {
        return Err(Rejection::invalid("node_id", "node ids start at 1").into());
    }
    if request.raft_addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(Rejection::invalid("raft_addr", "not a host:port address").into());
    }
    runtime
        .add_node(request.node_id, request.raft_addr)
        .await
        .map_err(rejection)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_node(
    Admin(_): Admin,
    State(runtime): State<Arc<ClusterRuntime>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    runtime.remove_node(id).await.map_err(rejection)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers at once: the moves go on in the background (`commerce cluster status` shows
/// them), since waiting here for a large partition to copy would outlast any HTTP timeout.
async fn drain_node(
    Admin(_): Admin,
    State(runtime): State<Arc<ClusterRuntime>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    runtime.drain_node(id).await.map_err(rejection)?;
    Ok(StatusCode::ACCEPTED)
}

fn rejection(error: MembershipError) -> ApiError {
    let code = match &error {
        MembershipError::NotLeader { .. } => "not_controller_leader",
        MembershipError::Refused(_) => "refused",
        MembershipError::StillReplicating(_) => "still_replicating",
        MembershipError::Raft(_) => "controller_unavailable",
    };
    Rejection::conflict(code, None, error.to_string()).into()
}
