//! `commerce cluster add-node` and `remove-node`: find the controller leader from any
//! node's status, sign in there as an admin, and ask it to change the membership.
//!
//! `remove-node` returns only once the node holds no replica: it asks the controller to
//! move the node's replicas, watches every node's `/cluster/status` until each group the
//! node was a voter of has moved and caught up (`drain.rs`), printing what is still
//! moving, and only then removes the node. The waiting is here rather than in the HTTP
//! request, which a large partition's copy would outlast, and a controller leader change
//! meanwhile does not lose it. Past `--wait-secs` it says the move goes on, how to watch
//! it, and that running the command again finishes the removal.

use super::drain::{DrainWatch, Moving};
use super::runtime::NodeStatus;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Adding a node waits for it to catch up, which takes a while after a long absence.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a node may take to answer its status while replicas move.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `add-node` keeps trying through elections before it gives up.
const ADD_RETRY_FOR: Duration = Duration::from_secs(90);
/// How often `remove-node` looks at the moves, and prints at most once per
/// [`PROGRESS_EVERY`] while nothing changed.
const POLL: Duration = Duration::from_millis(500);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often `remove-node` asks the controller to drain again while replicas move.
const REDRAIN_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct Access {
    /// HTTP address of any node of the cluster
    #[arg(long, env = "COMMERCE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// An admin account's email
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL")]
    admin_email: String,
    /// Its password
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
}

#[derive(Debug, clap::Args)]
pub struct AddNodeArgs {
    #[command(flatten)]
    access: Access,
    /// The new node's id (it was started with `--join`)
    #[arg(long)]
    node_id: u64,
    /// The new node's Raft listener
    #[arg(long)]
    raft_addr: SocketAddr,
}

#[derive(Debug, clap::Args)]
pub struct RemoveNodeArgs {
    #[command(flatten)]
    access: Access,
    /// The node to remove
    #[arg(long)]
    node_id: u64,
    /// How long to wait for its replicas to move before giving up (they keep moving; run
    /// the command again to finish)
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
}

pub async fn add(args: AddNodeArgs) -> anyhow::Result<()> {
    // Adding is idempotent: tried again through an election (of the controller or of a
    // service group the node joins), within the same bound as a removal's first step.
    let deadline = Instant::now() + ADD_RETRY_FOR;
    let body = serde_json::json!({
        "node_id": args.node_id,
        "raft_addr": args.raft_addr.to_string(),
    });
    post_to_leader(&args.access, deadline, "/api/cluster/nodes", Some(&body)).await?;
    println!("node {} added to the cluster", args.node_id);
    Ok(())
}

pub async fn remove(args: RemoveNodeArgs) -> anyhow::Result<()> {
    let id = args.node_id;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let (_, _, _, status) = session_until(&args.access, deadline).await?;
    // Every registered node, the leaving one included: until its replicas moved, it may
    // lead some of them.
    let nodes: Vec<String> = status
        .nodes
        .iter()
        .map(|node| node.http_addr.clone())
        .collect();
    anyhow::ensure!(
        status.nodes.iter().any(|node| node.id == id),
        "node {id} is not a member of the cluster"
    );
    let mut watch = DrainWatch::new(id);
    // Seen before the moves start, so no group is missed however fast they go.
    poll(&nodes, &mut watch).await?;
    // An election in the controller or a service group is retried: draining again is
    // harmless (it proposes only what is not done yet).
    let drain = format!("/api/cluster/nodes/{id}/drain");
    let session = post_to_leader(&args.access, deadline, &drain, None).await?;
    println!("moving node {id}'s replicas to the other nodes");
    loop {
        wait_moved(&nodes, &mut watch, id, deadline, &args.access, &session).await?;
        // The controller leader may have changed while the replicas moved.
        let (client, base, token, _) = session_until(&args.access, deadline).await?;
        let response = client
            .delete(format!("{base}/api/cluster/nodes/{id}"))
            .bearer_auth(token)
            .send()
            .await?;
        match refusal(response).await? {
            None => break,
            // The leader saw a move this command's last look did not, or was being elected:
            // wait again.
            Some((code, message))
                if (code == "still_replicating" || transient(&code))
                    && Instant::now() < deadline =>
            {
                println!("{message}");
                tokio::time::sleep(POLL).await;
            }
            Some((_, message)) => anyhow::bail!("the cluster refused: {message}"),
        }
    }
    println!("node {id} removed from the cluster: it holds no replica and can be stopped");
    Ok(())
}

/// POSTs `body` (none: an empty request) to `path` on the controller leader, through a
/// fresh session each attempt, retrying refusals an election explains until `deadline`.
/// Returns the session that succeeded.
async fn post_to_leader(
    access: &Access,
    deadline: Instant,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(reqwest::Client, String, String)> {
    loop {
        let (client, base, token, _) = session_until(access, deadline).await?;
        let mut request = client.post(format!("{base}{path}")).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(body);
        }
        match refusal(request.send().await?).await? {
            None => return Ok((client, base, token)),
            Some((code, message)) if transient(&code) && Instant::now() < deadline => {
                println!("{message}; trying again");
                tokio::time::sleep(POLL).await;
            }
            Some((_, message)) => anyhow::bail!("the cluster refused: {message}"),
        }
    }
}

/// Polls every node's status until no group waits for node `id` any more, printing what
/// is still moving; past `deadline`, fails saying the moves go on and how to finish.
async fn wait_moved(
    nodes: &[String],
    watch: &mut DrainWatch,
    id: u64,
    deadline: Instant,
    access: &Access,
    session: &(reqwest::Client, String, String),
) -> anyhow::Result<()> {
    let mut shown = String::new();
    let mut shown_at = Instant::now();
    let mut drained_at = Instant::now();
    loop {
        let moving = poll(nodes, watch).await?;
        if moving.is_empty() {
            return Ok(());
        }
        // A topic created while the node drains (a service's topic made on first use, say)
        // may have been placed on it after the first drain was planned: drain again now and
        // then, which reassigns only what still holds the node. Best effort: the final
        // removal drains once more and refuses while anything still moves.
        if drained_at.elapsed() >= REDRAIN_EVERY {
            drained_at = Instant::now();
            let (client, base, token) = session;
            if let Err(error) = client
                .post(format!("{base}/api/cluster/nodes/{id}/drain"))
                .bearer_auth(token)
                .send()
                .await
            {
                tracing::debug!(%error, "draining again did not reach the controller");
            }
        }
        let text = progress(&moving);
        if text != shown || shown_at.elapsed() >= PROGRESS_EVERY {
            print!("{text}");
            shown = text;
            shown_at = Instant::now();
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "node {id} still holds replicas of {} group(s); the moves go on in the \
                 background. Node {id} is still a member of the cluster: do not stop it yet. \
                 Watch the moves with `commerce cluster status --http-addr {}`, and run \
                 `commerce cluster remove-node --node-id {id}` again to finish removing it.",
                moving.len(),
                access.http_addr
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One round: every node's status (those that answer), judged by `watch`.
async fn poll(nodes: &[String], watch: &mut DrainWatch) -> anyhow::Result<Vec<Moving>> {
    let client = reqwest::Client::builder().timeout(STATUS_TIMEOUT).build()?;
    let mut answered = Vec::new();
    for node in nodes {
        if let Ok(status) = super::status::fetch(&client, node).await {
            answered.push(status);
        }
    }
    Ok(watch.pending(&answered.iter().collect::<Vec<&NodeStatus>>()))
}

/// Refusals that an election explains, worth retrying.
fn transient(code: &str) -> bool {
    matches!(code, "controller_unavailable" | "not_controller_leader")
}

fn progress(moving: &[Moving]) -> String {
    let mut text = format!("{} group(s) still moving:\n", moving.len());
    for group in moving {
        text.push_str(&format!("  {group}\n"));
    }
    text
}

/// [`leader_session`], tried again until `deadline` while the groups it needs (the
/// controller, identity for the sign-in) elect leaders, as they do while replicas move.
async fn session_until(
    access: &Access,
    deadline: Instant,
) -> anyhow::Result<(reqwest::Client, String, String, NodeStatus)> {
    loop {
        match leader_session(access).await {
            Ok(session) => return Ok(session),
            // Wrong credentials stay wrong: said at once, not retried until the deadline.
            Err(error) if !refused_credentials(&error) && Instant::now() < deadline => {
                println!("{error:#}; trying again");
                tokio::time::sleep(POLL).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether `error` is the identity service refusing the admin's email and password (or
/// the account's role), as opposed to a node or a group that is not ready yet.
fn refused_credentials(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<reqwest::Error>())
        .filter_map(reqwest::Error::status)
        .any(|status| {
            status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN
        })
}

/// A client, the controller leader's base URL, an admin access token issued there, and
/// the status the leader was found in.
async fn leader_session(
    access: &Access,
) -> anyhow::Result<(reqwest::Client, String, String, NodeStatus)> {
    let client = reqwest::Client::builder().timeout(CHANGE_TIMEOUT).build()?;
    let status: NodeStatus = client
        .get(format!("http://{}/cluster/status", access.http_addr))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot read the cluster status at {}", access.http_addr))?
        .json()
        .await?;
    let leader = status
        .groups
        .iter()
        .find(|group| group.group == 0)
        .and_then(|group| group.leader)
        .ok_or_else(|| anyhow::anyhow!("the controller has no leader right now; try again"))?;
    let http = status
        .nodes
        .iter()
        .find(|node| node.id == leader)
        .map(|node| node.http_addr.clone())
        .ok_or_else(|| anyhow::anyhow!("the controller leader {leader} is not registered yet"))?;
    let base = format!("http://{http}");
    let login: serde_json::Value = client
        .post(format!("{base}/api/identity/login"))
        .json(&serde_json::json!({
            "email": access.admin_email,
            "password": access.admin_password,
        }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot sign in as {} at {base}", access.admin_email))?
        .json()
        .await?;
    let token = login
        .pointer("/access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the login answer has no access token"))?
        .to_string();
    Ok((client, base, token, status))
}

/// `None` on success, else the error's code and a message naming the HTTP status.
async fn refusal(response: reqwest::Response) -> anyhow::Result<Option<(String, String)>> {
    if response.status().is_success() {
        return Ok(None);
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let message = text("/error/message").unwrap_or_else(|| "no explanation given".to_string());
    let code = text("/error/code").unwrap_or_default();
    Ok(Some((code, format!("({status}) {message}"))))
}
