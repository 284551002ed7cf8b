//! How a node brings its services up: where their Raft groups run (the cluster's voters, or
//! this node alone), and what must be in place before it serves HTTP (the shared signing
//! key and carrier token, the configured admin), retried while the groups have no leader.

use crate::config::NodeSettings;
use anyhow::Context;
use commerce_storage::raft::{GroupStart, RaftNode, RaftNodeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How a cluster node opens the services' groups: with the cluster's first voters, or (a
/// node added later) joining, to be brought in by the leader.
pub fn cluster_service_start(cluster: &crate::cluster::peers::ClusterSettings) -> GroupStart {
    if cluster.join {
        GroupStart::Join
    } else {
        GroupStart::Bootstrap(
            cluster
                .peers
                .iter()
                .map(|(id, addr)| (*id, addr.to_string()))
                .collect(),
        )
    }
}

/// A node alone still runs its services' command logs as Raft groups (of one voter): their
/// Raft listener only ever hears from itself, so it takes any free loopback port.
pub async fn start_local_raft(settings: &NodeSettings) -> anyhow::Result<Arc<RaftNode>> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open the local Raft listener")?;
    let node_id = u64::try_from(settings.node_id)
        .with_context(|| format!("the node id {} is negative", settings.node_id))?;
    let mut config = RaftNodeConfig::new(node_id, settings.data_dir.join("raft"));
    settings.raft.apply(&mut config);
    let raft = RaftNode::start(config, listener)
        .await
        .context("cannot start the services' Raft groups")?;
    Ok(Arc::new(raft))
}

/// How long a node waits for its shared secrets and admin account before serving HTTP
/// anyway.
pub const PREPARE_WAIT: Duration = Duration::from_secs(20);
/// How often the admin creation is retried while the services have no leader.
const ADMIN_RETRY: Duration = Duration::from_millis(300);

/// Installs what every node shares (the signing key, the carrier token), then creates the
/// configured admin unless it exists, retrying while the services have no leader with a
/// majority (a cluster forming, a node back before its peers). `done` turns true after.
pub async fn prepare_when_possible(
    services: Arc<crate::services::NodeServices>,
    admin: Option<(String, String)>,
    done: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut reported = false;
    loop {
        let prepared = async {
            services.install_shared_secrets().await?;
            if let Some((email, password)) = &admin {
                crate::services::ensure_admin(&services.identity, email, password).await?;
            }
            anyhow::Ok(())
        };
        match prepared.await {
            Ok(()) => {
                done.store(true, Ordering::Release);
                return;
            }
            Err(error) if !reported => {
                tracing::info!(%error, "the services cannot be prepared yet; retrying");
                reported = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(ADMIN_RETRY) => {}
            _ = stopped.changed() => return,
        }
    }
}

pub async fn wait_for(flag: &AtomicBool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !flag.load(Ordering::Acquire) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
