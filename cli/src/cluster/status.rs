//! `/cluster/status` (each node's view: its groups and the registered nodes) and
//! `commerce cluster status`, which asks one node, then every node it lists, and prints them.

use super::runtime::{ClusterRuntime, GroupView, NodeStatus};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long `cluster status` waits for a node before calling it unreachable.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// The route every cluster node serves next to `/health`: read-only operational state, like
/// `/metrics`, so it needs no token.
pub fn router(runtime: Arc<ClusterRuntime>) -> Router {
    Router::new()
        .route("/cluster/status", get(status_handler))
        .with_state(runtime)
}

async fn status_handler(State(runtime): State<Arc<ClusterRuntime>>) -> axum::Json<NodeStatus> {
    axum::Json(runtime.status())
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// HTTP address of any node of the cluster
    #[arg(long, env = "COMMERCE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(NODE_TIMEOUT).build()?;
    let first = fetch(&client, &args.http_addr.to_string())
        .await
        .map_err(|error| {
            anyhow::anyhow!("cannot read the status of {}: {error}", args.http_addr)
        })?;
    let mut seen = Vec::new();
    for node in &first.nodes {
        let status = fetch(&client, &node.http_addr).await;
        seen.push((node.clone(), status));
    }
    print!("{}", render(&first, &seen));
    Ok(())
}

async fn fetch(client: &reqwest::Client, http_addr: &str) -> Result<NodeStatus, String> {
    let response = client
        .get(format!("http://{http_addr}/cluster/status"))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err("not a cluster node (started without --peers)".to_string());
    }
    response
        .error_for_status()
        .map_err(|error| error.to_string())?
        .json()
        .await
        .map_err(|error| error.to_string())
}

type Seen = (
    commerce_broker::controller::NodeRecord,
    Result<NodeStatus, String>,
);

/// The text `cluster status` prints: the nodes with their health, then each group as its
/// leader reports it (the leader knows the followers' lag), else as the first node reports it.
pub fn render(first: &NodeStatus, seen: &[Seen]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "nodes ({} registered)", seen.len());
    let _ = writeln!(
        out,
        "  {:<4} {:<22} {:<22} {:<22} health",
        "id", "kafka", "http", "raft"
    );
    for (node, status) in seen {
        let health = match status {
            Ok(_) => "up".to_string(),
            Err(error) => format!("unreachable ({error})"),
        };
        let _ = writeln!(
            out,
            "  {:<4} {:<22} {:<22} {:<22} {health}",
            node.id, node.kafka_addr, node.http_addr, node.raft_addr
        );
    }
    let _ = writeln!(out, "groups");
    let _ = writeln!(
        out,
        "  {:<26} {:<7} {:<6} {:<11} {:<8} lag (node:entries)",
        "group", "leader", "term", "last index", "voters"
    );
    for group in &first.groups {
        let reported = leader_view(group, seen).unwrap_or(group);
        let lag = if reported.follower_lag.is_empty() {
            "-".to_string()
        } else {
            reported
                .follower_lag
                .iter()
                .map(|(node, lag)| format!("{node}:{lag}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let name = match (&reported.partition, reported.group) {
            (_, 0) => "controller".to_string(),
            (Some(partition), group) => format!("{partition} (group {group})"),
            (None, group) => match crate::services::group_service(group) {
                Some(service) => format!("service {service}"),
                None => format!("group-{group}"),
            },
        };
        let leader = reported
            .leader
            .map_or_else(|| "none".to_string(), |id| id.to_string());
        let last = reported
            .last_log_index
            .map_or_else(|| "-".to_string(), |index| index.to_string());
        let voters = reported
            .voters
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            out,
            "  {name:<26} {leader:<7} {:<6} {last:<11} {voters:<8} {lag}",
            reported.term
        );
    }
    out
}

/// The group as its leader reported it, if the leader answered.
fn leader_view<'a>(group: &GroupView, seen: &'a [Seen]) -> Option<&'a GroupView> {
    let leader = group.leader?;
    seen.iter()
        .filter(|(node, _)| node.id == leader)
        .filter_map(|(_, status)| status.as_ref().ok())
        .flat_map(|status| &status.groups)
        .find(|view| view.group == group.group && view.role == "leader")
}
