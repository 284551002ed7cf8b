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

/// Node `http_addr`'s `/cluster/status`, or why it did not answer.
pub(super) async fn fetch(client: &reqwest::Client, http_addr: &str) -> Result<NodeStatus, String> {
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
        "  {:<26} {:<22} {:<6} {:<11} {:<8} lag (node:entries)",
        "group", "leader", "term", "last index", "voters"
    );
    let unreachable: Vec<u64> = seen
        .iter()
        .filter(|(_, status)| status.is_err())
        .map(|(node, _)| node.id)
        .collect();
    for group in &first.groups {
        let reported = leader_view(group, seen).unwrap_or(group);
        let lag = if reported.follower_lag.is_empty() {
            "-".to_string()
        } else {
            reported
                .follower_lag
                .iter()
                .map(|(node, lag)| match unreachable.contains(node) {
                    true => format!("{node}:unreachable"),
                    false => format!("{node}:{lag}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let name = group_name(reported);
        let leader = shown_leader(reported, &unreachable);
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
            "  {name:<26} {leader:<22} {:<6} {last:<11} {voters:<8} {lag}",
            reported.term
        );
    }
    out
}

/// How operators know a group: `orders-0 (group 5)`, `service order`, `controller`.
pub(super) fn group_name(view: &GroupView) -> String {
    match (&view.partition, view.group) {
        (_, 0) => "controller".to_string(),
        (Some(partition), group) => format!("{partition} (group {group})"),
        (None, group) => match crate::services::group_service(group) {
            Some(service) => format!("service {service}"),
            None => format!("group-{group}"),
        },
    }
}

/// The leader column: never a node that does not answer, nor one that calls itself leader
/// without a majority behind it (cut off, it has not heard of a newer term yet).
fn shown_leader(reported: &GroupView, unreachable: &[u64]) -> String {
    match reported.leader {
        None => "none".to_string(),
        Some(id) if unreachable.contains(&id) => format!("none ({id} unreachable)"),
        Some(id) if reported.has_majority == Some(false) => format!("none ({id} no majority)"),
        Some(id) => id.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_broker::controller::NodeRecord;

    fn node(id: u64) -> NodeRecord {
        NodeRecord {
            id,
            kafka_addr: format!("127.0.0.1:{}", 9090 + id),
            raft_addr: format!("127.0.0.1:{}", 7070 + id),
            http_addr: format!("127.0.0.1:{}", 8080 + id),
        }
    }

    fn controller(node: u64, leader: u64, has_majority: Option<bool>) -> GroupView {
        GroupView {
            group: 0,
            role: if node == leader { "leader" } else { "follower" }.to_string(),
            term: 4,
            leader: Some(leader),
            voters: vec![1, 2, 3],
            last_log_index: Some(40),
            last_applied_index: Some(40),
            follower_lag: if node == leader {
                [(1, 0), (2, 0), (3, 0)]
                    .into_iter()
                    .filter(|(id, _)| *id != node)
                    .collect()
            } else {
                Default::default()
            },
            stopped: None,
            partition: None,
            has_majority,
        }
    }

    fn status(node_id: u64, group: GroupView) -> NodeStatus {
        NodeStatus {
            node_id,
            raft_addr: String::new(),
            groups: vec![group],
            nodes: vec![node(1), node(2), node(3)],
            topics: 0,
        }
    }

    fn controller_line(text: &str) -> &str {
        text.lines()
            .find(|line| line.trim_start().starts_with("controller"))
            .unwrap_or_default()
    }

    /// A lone survivor still calls itself leader (it heard of no newer term): status shows
    /// no leader, and the peers that do not answer as unreachable, not as lag 0.
    #[test]
    fn a_leader_without_a_majority_and_dead_peers_are_shown_as_such() {
        let first = status(1, controller(1, 1, Some(false)));
        let seen: Vec<Seen> = vec![
            (node(1), Ok(status(1, controller(1, 1, Some(false))))),
            (node(2), Err("connection refused".to_string())),
            (node(3), Err("connection refused".to_string())),
        ];
        let text = render(&first, &seen);
        let line = controller_line(&text);
        assert!(line.contains("none (1 no majority)"), "{text}");
        assert!(line.contains("2:unreachable 3:unreachable"), "{text}");
        assert_eq!(text.matches("unreachable (connection refused)").count(), 2);
    }

    /// A node whose view names a killed node as leader: not shown as the leader.
    #[test]
    fn a_leader_that_does_not_answer_is_not_shown_as_leader() {
        let first = status(2, controller(2, 3, None));
        let seen: Vec<Seen> = vec![
            (node(1), Ok(status(1, controller(1, 3, None)))),
            (node(2), Ok(status(2, controller(2, 3, None)))),
            (node(3), Err("timed out".to_string())),
        ];
        let text = render(&first, &seen);
        assert!(
            controller_line(&text).contains("none (3 unreachable)"),
            "{text}"
        );
    }

    #[test]
    fn a_leader_with_its_majority_is_shown() {
        let first = status(1, controller(1, 2, None));
        let seen: Vec<Seen> = vec![
            (node(1), Ok(status(1, controller(1, 2, None)))),
            (node(2), Ok(status(2, controller(2, 2, Some(true))))),
            (node(3), Ok(status(3, controller(3, 2, None)))),
        ];
        let text = render(&first, &seen);
        let line = controller_line(&text);
        assert!(line.contains(" 2 ") && line.contains("1:0 3:0"), "{text}");
        assert!(!text.contains("none"), "{text}");
    }
}
