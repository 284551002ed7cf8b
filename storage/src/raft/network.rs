//! The client side of node-to-node traffic: one multiplexed connection per peer.
//!
//! A node keeps ONE outgoing TCP connection to each peer, shared by every group: each
//! group's openraft replication and election tasks call [`PeerClient::call`], which tags the
//! request with the group and a fresh request id, queues it to the connection's writer and
//! waits for the answer with that id. The writer drains everything queued before each
//! write, so heartbeats and appends of many groups leave in the same write (and usually
//! the same TCP segment) instead of one syscall each. A broken connection fails every call
//! in flight and is re-dialled by the next call; openraft retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::types::{GroupId, NodeId, TypeConfig};
use super::wire::{self, Reply, RequestFrame, ResponseFrame, Rpc};

/// How long dialling a peer may take before the call counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames waiting for the writer. A peer that stops reading (paused, or its link stalled)
/// must not make this node queue without bound: past this, calls fail at once and openraft
/// retries later, by which time a stale heartbeat would be useless anyway.
const MAX_QUEUED_FRAMES: usize = 4096;
/// Upper bound on what the writer coalesces into one write.
const MAX_COALESCED_BYTES: usize = 1024 * 1024;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {0} closed before the answer came")]
    Closed(String),
    #[error("too many requests already queued for {0}")]
    Backlogged(String),
    #[error("no answer from {0} in time")]
    Timeout(String),
    #[error("cannot encode the request: {0}")]
    Encode(std::io::Error),
    #[error("peer hosts no group {0}")]
    UnknownGroup(GroupId),
    #[error("peer answered with the wrong kind of reply")]
    WrongReply,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Reply>>>;

/// What the connection's tasks share with callers.
struct Shared {
    pending: Pending,
    closed: AtomicBool,
}

impl Shared {
    /// Marks the link dead and fails every call in flight (dropping a sender wakes its
    /// receiver with an error).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// One live connection; its two tasks die with it.
struct Link {
    tx: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Link {
    async fn connect(addr: &str) -> Result<Self, CallError> {
        let connect_err = |source| CallError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect_err)?;
        // Raft RPCs are small and latency-bound.
        stream.set_nodelay(true).map_err(connect_err)?;
        let (mut read_half, mut write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_QUEUED_FRAMES);

        let writer_shared = shared.clone();
        let writer = tokio::spawn(async move {
            while let Some(mut buf) = rx.recv().await {
                while buf.len() < MAX_COALESCED_BYTES {
                    match rx.try_recv() {
                        Ok(more) => buf.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if write_half.write_all(&buf).await.is_err() {
                    break;
                }
            }
            writer_shared.close();
        });

        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(body)) = wire::read_frame(&mut read_half).await {
                let Ok(frame) = wire::decode::<ResponseFrame>(&body) else {
                    tracing::warn!("undecodable answer from a raft peer; dropping the connection");
                    break;
                };
                let waiter = reader_shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&frame.id);
                if let Some(waiter) = waiter {
                    // The caller may have timed out and gone; nothing to do then.
                    let _ = waiter.send(frame.reply);
                }
            }
            reader_shared.close();
        });

        Ok(Self {
            tx,
            shared,
            reader,
            writer,
        })
    }
}

/// The connection to one peer, dialled on first use and re-dialled after a failure.
pub struct PeerClient {
    addr: String,
    /// Whether the last dial succeeded: a peer going away is logged once, not at every
    /// heartbeat of every group (openraft's own per-RPC logs are filtered by default).
    reachable: AtomicBool,
    /// Connections this node has dialled, over all peers (shared with [`Peers`]).
    dialled: Arc<AtomicU64>,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    next_id: AtomicU64,
}

impl PeerClient {
    fn new(addr: String, dialled: Arc<AtomicU64>) -> Self {
        Self {
            addr,
            reachable: AtomicBool::new(true),
            dialled,
            link: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    async fn link(&self) -> Result<Arc<Link>, CallError> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_ref()
            && !link.shared.closed.load(Ordering::SeqCst)
        {
            return Ok(link.clone());
        }
        *slot = None;
        let link = match Link::connect(&self.addr).await {
            Ok(link) => Arc::new(link),
            Err(error) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::warn!(peer = %self.addr, %error, "raft peer unreachable; retrying until it answers");
                }
                return Err(error);
            }
        };
        if !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!(peer = %self.addr, "raft peer reachable again");
        }
        self.dialled.fetch_add(1, Ordering::Relaxed);
        *slot = Some(link.clone());
        Ok(link)
    }

    /// Sends `rpc` for `group` and waits up to `ttl` for its answer.
    pub async fn call(&self, group: GroupId, rpc: Rpc, ttl: Duration) -> Result<Reply, CallError> {
        let link = self.link().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode(&RequestFrame { id, group, rpc }).map_err(CallError::Encode)?;
        let (tx, rx) = oneshot::channel();
        link.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        match link.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                link.shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                return Err(CallError::Backlogged(self.addr.clone()));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                link.shared.close();
                return Err(CallError::Closed(self.addr.clone()));
            }
        }
        match tokio::time::timeout(ttl, rx).await {
            Ok(Ok(Reply::UnknownGroup)) => Err(CallError::UnknownGroup(group)),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CallError::Closed(self.addr.clone())),
            Err(_) => {
                link.shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                Err(CallError::Timeout(self.addr.clone()))
            }
        }
    }
}

/// Every peer connection of a node, shared by all its groups.
#[derive(Default)]
pub struct Peers {
    clients: Mutex<HashMap<NodeId, Arc<PeerClient>>>,
    dialled: Arc<AtomicU64>,
    /// Addresses this node dials instead of a peer's membership address.
    dial: BTreeMap<NodeId, String>,
}

impl Peers {
    /// Peers reached at their membership addresses except those in `dial`: a peer seen
    /// through NAT or a proxy (the fault tests cut links with proxies this way).
    pub fn with_dial(dial: BTreeMap<NodeId, String>) -> Peers {
        Peers {
            dial,
            ..Peers::default()
        }
    }

    /// The client for `node` at `addr` (or its dial override); a changed address replaces
    /// the old connection.
    pub fn client(&self, node: NodeId, addr: &str) -> Arc<PeerClient> {
        let addr = self.dial.get(&node).map_or(addr, String::as_str);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        match clients.get(&node) {
            Some(client) if client.addr == addr => client.clone(),
            _ => {
                let client = Arc::new(PeerClient::new(addr.to_string(), self.dialled.clone()));
                clients.insert(node, client.clone());
                client
            }
        }
    }

    /// How many connections this node has dialled since it started (a re-dial after a
    /// failure counts again).
    pub fn dialled(&self) -> u64 {
        self.dialled.load(Ordering::Relaxed)
    }

    /// Drops every connection (their tasks end with them).
    pub fn clear(&self) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// openraft's network factory for one group: clients share the node's peer connections.
pub struct GroupNetworkFactory {
    pub group: GroupId,
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GroupNetwork {
            group: self.group,
            target,
            peer: self.peers.client(target, &node.addr),
        }
    }
}

/// One group's channel to one peer.
pub struct GroupNetwork {
    group: GroupId,
    target: NodeId,
    peer: Arc<PeerClient>,
}

impl GroupNetwork {
    async fn call<E: std::error::Error>(
        &self,
        rpc: Rpc,
        option: &RPCOption,
    ) -> Result<Reply, RPCError<NodeId, BasicNode, E>> {
        self.peer
            .call(self.group, rpc, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<NodeId, E>,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

fn wrong_reply<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&CallError::WrongReply))
}

/// What one AppendEntries may carry, in entry payload bytes. openraft sends up to
/// `max_payload_entries` (300) entries at once, and a partition's entry is a whole producer
/// batch (up to 1 MiB): to a follower that fell behind under load that was hundreds of MiB,
/// past the frame limit, and the request could never be sent, so the follower never
/// caught up. The partition log store reads no more than this per request
/// (`limited_get_log_entries`); a bigger request still (another store) is refused with
/// openraft's PayloadTooLarge, whose hint makes it send fewer entries at a time.
pub(super) const MAX_APPEND_BYTES: usize = 8 * 1024 * 1024;

/// How many of `entries` fit [`MAX_APPEND_BYTES`] (at least one), when not all do.
fn entries_that_fit(entries: &[super::types::Entry]) -> Option<u64> {
    let mut total = 0usize;
    for (count, entry) in entries.iter().enumerate() {
        total += match &entry.payload {
            openraft::EntryPayload::Normal(command) => command.0.len(),
            _ => 0,
        };
        if total > MAX_APPEND_BYTES {
            return Some(u64::try_from(count.max(1)).unwrap_or(1));
        }
    }
    None
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if rpc.entries.len() > 1
            && let Some(fit) = entries_that_fit(&rpc.entries)
        {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
        match self.call(Rpc::AppendEntries(rpc), &option).await? {
            Reply::AppendEntries(result) => result.map_err(|e| self.remote(e)),
            _ => Err(wrong_reply()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(Rpc::InstallSnapshot(rpc), &option).await? {
            Reply::InstallSnapshot(result) => result.map_err(|e| self.remote(e)),
            _ => Err(wrong_reply()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Rpc::Vote(rpc), &option).await? {
            Reply::Vote(result) => result.map_err(|e| self.remote(e)),
            _ => Err(wrong_reply()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Command, Entry};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command(vec![0; bytes])),
        }
    }

    #[test]
    fn appends_past_the_byte_budget_ask_openraft_for_fewer_entries() {
        let mib = 1024 * 1024;
        let small: Vec<Entry> = (0..300).map(|i| entry(i, 1024)).collect();
        assert_eq!(entries_that_fit(&small), None, "300 KiB goes as it is");
        let big: Vec<Entry> = (0..100).map(|i| entry(i, mib)).collect();
        assert_eq!(entries_that_fit(&big), Some(8), "8 MiB per request");
        let huge = vec![entry(0, 20 * mib), entry(1, 1)];
        assert_eq!(
            entries_that_fit(&huge),
            Some(1),
            "an entry bigger than the budget still goes, alone"
        );
    }
}
