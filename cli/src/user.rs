//! `commerce user create --admin --email E --password P`: creates an account directly in the
//! identity store of a node's data directory. The node must be stopped (its store is locked
//! while it runs); the account's UserRegistered event is published by the node's outbox relay
//! when it next starts.

use anyhow::Context;
use commerce_services::identity::IdentityService;
use commerce_services::platform::http::{RequestContext, Role};
use std::path::PathBuf;

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
        .map_err(|error| anyhow::anyhow!("cannot create the account: {error}"))?;
    identity.engine.store().sync()?;
    println!("created user {} ({})", user.email, user.id);
    Ok(())
}
