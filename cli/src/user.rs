//! `commerce user create --admin --email E --password P`: creates an account directly in the
//! identity store of a node's data directory. The node must be stopped (its store is locked
//! while it runs); the account's UserRegistered event is published by the node's outbox relay
//! when it next starts.
//!
//! The identity service's command log is a Raft group; on a node that ran alone it has one
//! voter, this node, so the command opens it here and proposes the registration. On a
//! cluster node's data directory the group needs a majority of running nodes: create
//! accounts through the running cluster instead (`COMMERCE_ADMIN_EMAIL` at start, or the
//! API).

use anyhow::Context;
use commerce_services::identity::IdentityService;
use commerce_services::platform::http::{RequestContext, Role};
use commerce_storage::raft::{GroupStart, RaftNode, RaftNodeConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How long a node's one-voter group may take to elect itself.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create an account (stop the node first).
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The node's data directory.
    #[arg(long, env = "COMMERCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The node's id (as it was started with).
    #[arg(long, env = "COMMERCE_NODE_ID", default_value_t = 1)]
    pub node_id: u64,
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub password: String,
    #[arg(long, default_value = "Administrator")]
    pub name: String,
    /// Give the account the admin role (else customer).
    #[arg(long)]
    pub admin: bool,
}

pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    let UserCommand::Create(args) = args.command;
    let dir = args.data_dir.join("services");
    let identity = IdentityService::open(&dir).with_context(|| {
        format!(
            "cannot open the identity store in {} (is the node still running? stop it first)",
            dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a local Raft listener")?;
    let raft = std::sync::Arc::new(
        RaftNode::start(
            RaftNodeConfig::new(args.node_id, args.data_dir.join("raft")),
            listener,
        )
        .await
        .context("cannot open the node's Raft groups")?,
    );
    let group = crate::services::service_group("identity")
        .context("the identity service has no Raft group id")?;
    let me = BTreeMap::from([(args.node_id, raft.addr().to_string())]);
    identity
        .engine
        .replicate(raft.clone(), group, GroupStart::Bootstrap(me))
        .await
        .context("cannot open the identity service's command log")?;
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    while raft.leader(group)? != Some(args.node_id) {
        if tokio::time::Instant::now() >= deadline {
            raft.shutdown().await;
            anyhow::bail!(
                "the identity service in {} is replicated across a cluster: create the account through the running cluster (COMMERCE_ADMIN_EMAIL at start, or the API)",
                args.data_dir.display()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let roles = if args.admin {
        vec![Role::Admin]
    } else {
        vec![Role::Customer]
    };
    let context = RequestContext {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        traceparent: None,
    };
    let user = identity
        .register(&args.email, &args.password, &args.name, roles, &context)
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the account: {error}"));
    raft.shutdown().await;
    let user = user?;
    identity.engine.store().sync()?;
    println!("created user {} ({})", user.email, user.id);
    Ok(())
}
