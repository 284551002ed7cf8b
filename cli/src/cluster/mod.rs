//! `commerce cluster …` and a node's cluster side.
//!
//! - `peers.rs`: the cluster settings of `commerce start` (`--peers`, `--raft-addr`, `--join`).
//! - `runtime.rs`: a node's Raft node, controller group and registration.
//! - `status.rs`: `/cluster/status` on each node, and `commerce cluster status` reading it.
//! - `admin.rs`: the admin routes that add, drain and remove nodes; `nodes.rs`: the
//!   commands; `drain.rs`: how `remove-node` knows a node's replicas have moved.
//! - `up.rs`: `commerce cluster up`, a local cluster of child processes for development.

pub mod admin;
pub mod drain;
pub mod nodes;
pub mod peers;
pub mod runtime;
pub mod status;
pub mod up;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Start a local cluster (one child process per node; ctrl-c stops them all).
    Up(up::UpArgs),
    /// Show the nodes, their health, and every Raft group's leader, term and lag.
    Status(status::StatusArgs),
    /// Add a node started with `--join` to the cluster.
    AddNode(nodes::AddNodeArgs),
    /// Remove a node from the cluster: its replicas move to the other nodes first, and the
    /// command returns once they did (the node can then be stopped).
    RemoveNode(nodes::RemoveNodeArgs),
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Up(args) => up::run(args).await,
        ClusterCommand::Status(args) => status::run(args).await,
        ClusterCommand::AddNode(args) => nodes::add(args).await,
        ClusterCommand::RemoveNode(args) => nodes::remove(args).await,
    }
}
