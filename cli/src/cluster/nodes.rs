//! `commerce cluster add-node` and `remove-node`: find the controller leader from any
//! node's status, sign in there as an admin, and ask it to change the membership.

use super::runtime::NodeStatus;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;

/// Adding a node waits for it to catch up, which takes a while after a long absence.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

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
}

pub async fn add(args: AddNodeArgs) -> anyhow::Result<()> {
    let (client, base, token) = leader_session(&args.access).await?;
    let response = client
        .post(format!("{base}/api/cluster/nodes"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "node_id": args.node_id,
            "raft_addr": args.raft_addr.to_string(),
        }))
        .send()
        .await?;
    check(response).await?;
    println!("node {} added to the cluster", args.node_id);
    Ok(())
}

pub async fn remove(args: RemoveNodeArgs) -> anyhow::Result<()> {
    let (client, base, token) = leader_session(&args.access).await?;
    let response = client
        .delete(format!("{base}/api/cluster/nodes/{}", args.node_id))
        .bearer_auth(token)
        .send()
        .await?;
    check(response).await?;
    println!("node {} removed from the cluster", args.node_id);
    Ok(())
}

/// A client, the controller leader's base URL and an admin access token issued there.
async fn leader_session(access: &Access) -> anyhow::Result<(reqwest::Client, String, String)> {
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
    Ok((client, base, token))
}

async fn check(response: reqwest::Response) -> anyhow::Result<()> {
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body
        .pointer("/error/message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("no explanation given");
    anyhow::bail!("the cluster refused ({status}): {message}")
}
