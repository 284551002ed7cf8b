//! The server side of node-to-node traffic: the Raft listener.
//!
//! Each accepted connection is read frame by frame; every request is handed to the Raft of
//! the group it names and answered on the same connection with its request id. Requests run
//! concurrently (a snapshot chunk being installed for one group must not hold up another
//! group's heartbeat), so answers may leave out of order; the caller correlates by id.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::control_batch;
use super::error::RaftGroupError;
use super::types::{GroupId, Raft};
use super::wire::{self, ForwardRefused, Reply, RequestFrame, ResponseFrame, Rpc};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};

/// The groups this node hosts, by id.
#[derive(Default)]
pub struct Router {
    groups: RwLock<HashMap<GroupId, Raft>>,
    /// Partition groups: their proposals must be one record batch, checked before
    /// replicating (a bad entry would stop the group on every replica).
    partitions: RwLock<HashSet<GroupId>>,
    /// Connections accepted since the node started.
    accepted: AtomicU64,
}

impl Router {
    pub fn get(&self, group: GroupId) -> Option<Raft> {
        self.groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&group)
            .cloned()
    }

    /// Registers `raft` unless the group is already hosted; says whether it was added.
    pub fn insert(&self, group: GroupId, raft: Raft) -> bool {
        let mut groups = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        if groups.contains_key(&group) {
            return false;
        }
        groups.insert(group, raft);
        true
    }

    pub fn mark_partition(&self, group: GroupId) {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group);
    }

    pub fn is_partition(&self, group: GroupId) -> bool {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&group)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn remove(&self, group: GroupId) -> Option<Raft> {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group);
        self.groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group)
    }

    pub fn ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        ids.sort();
        ids
    }

    /// Removes and returns every group (for shutdown).
    pub fn drain(&self) -> Vec<(GroupId, Raft)> {
        self.groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect()
    }
}

/// Accepts connections until the task running it is aborted; aborting also ends every
/// connection (they live in this task's `JoinSet`).
pub async fn run(listener: TcpListener, router: Arc<Router>) {
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                router.accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(serve_connection(stream, router.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "raft listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_connection(stream: TcpStream, router: Arc<Router>) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let (mut read_half, mut write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(mut buf) = rx.recv().await {
            // Coalesce answers that are ready together into one write.
            while let Ok(more) = rx.try_recv() {
                buf.extend_from_slice(&more);
            }
            if write_half.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut requests = JoinSet::new();
    loop {
        let body = match wire::read_frame(&mut read_half).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "raft connection ended");
                break;
            }
        };
        let frame: RequestFrame = match wire::decode(&body) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable raft request; closing the connection");
                break;
            }
        };
        let router = router.clone();
        let tx = tx.clone();
        requests.spawn(async move {
            let reply = handle(&router, frame.group, frame.rpc).await;
            match wire::encode(&ResponseFrame {
                id: frame.id,
                reply,
            }) {
                Ok(bytes) => {
                    // The writer is gone only when the connection is; nothing to answer then.
                    let _ = tx.send(bytes);
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a raft answer"),
            }
        });
        while requests.try_join_next().is_some() {}
    }
    requests.abort_all();
    writer.abort();
}

async fn handle(router: &Router, group: GroupId, rpc: Rpc) -> Reply {
    let Some(raft) = router.get(group) else {
        return Reply::UnknownGroup;
    };
    match rpc {
        Rpc::AppendEntries(req) => Reply::AppendEntries(raft.append_entries(req).await),
        Rpc::Vote(req) => Reply::Vote(raft.vote(req).await),
        Rpc::InstallSnapshot(req) => Reply::InstallSnapshot(raft.install_snapshot(req).await),
        Rpc::Propose(command)
            if router.is_partition(group)
                && let Err(e) = control_batch::validate_command(&command.0) =>
        {
            Reply::Propose(Err(ForwardRefused::Failed(e.to_string())))
        }
        Rpc::Propose(command) => Reply::Propose(match raft.client_write(command).await {
            Ok(response) => Ok(response.data.0),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ForwardRefused::NotLeader(forward.leader_id))
            }
            Err(e) => Err(ForwardRefused::Failed(e.to_string())),
        }),
        Rpc::ChangeMembers(change) => Reply::ChangeMembers(
            match super::members::change_members(&raft, group, change).await {
                Ok(()) => Ok(()),
                Err(RaftGroupError::NotLeader { leader, .. }) => {
                    Err(ForwardRefused::NotLeader(leader))
                }
                Err(e) => Err(ForwardRefused::Failed(e.to_string())),
            },
        ),
        Rpc::ReadIndex => Reply::ReadIndex(match raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read.map_or(0, |id| id.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(ForwardRefused::NotLeader(forward.leader_id))
            }
            Err(e) => Err(ForwardRefused::Failed(e.to_string())),
        }),
    }
}
