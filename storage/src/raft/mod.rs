//! The Raft group facility: many independent Raft groups hosted by one node.
//!
//! What it is: a thin layer over openraft 0.9 that lets one process host one Raft group per
//! partition plus a controller group (Redpanda / KRaft style). Each group replicates opaque
//! commands (`&[u8]`) to a [`StateMachine`] the caller supplies; storage never looks inside a
//! command. Groups are tied together by a [`RaftNode`], which owns the node's data directory,
//! its Raft listener and ONE outgoing TCP connection per peer that every group's RPCs share
//! (frames are tagged with the group id and correlated by request id).
//!
//! What it is not: Kafka-aware. The broker and the services implement [`StateMachine`] and
//! decide what a command means.
//!
//! Pieces, one concept per file:
//! - `types.rs`: the openraft type configuration ([`TypeConfig`]), [`GroupId`], [`Command`].
//! - `entry_codec.rs`: the on-disk form of one log entry (header + raw command bytes).
//! - `log_store.rs`: the durable log, vote and committed index of one group (redb).
//! - `partition_store.rs`: the other log store kind, for partition groups: the Raft log IS
//!   the partition's Kafka log (one entry = one v2 batch, term = partitionLeaderEpoch),
//!   except Raft's own entries, kept aside so that offsets count records only
//!   (`partition_side.rs`); `partition_index.rs`: its Raft index <-> offset mapping and
//!   epoch cache;
//!   `partition_snapshot.rs` / `partition_retained.rs` / `partition_install.rs`: a
//!   partition snapshot's bytes, the retained batches it carries to a replica, and
//!   installing it into the log;
//!   `control_batch.rs`: the control batches a command may be (markers, log-start moves).
//! - `state_machine.rs`: the [`StateMachine`] trait (apply, and snapshots streamed out and
//!   back in) and its openraft adapter; `snapshot_install.rs`: the adapter's snapshot work
//!   (build, install, restore on open, crash-safe); `snapshot_files.rs` /
//!   `partition_snapshot_files.rs`: the files snapshots are kept, sent and received in.
//! - `wire.rs`: node-to-node frames (length-prefixed, group-tagged, correlated): Raft RPCs
//!   and proposals forwarded to a group's leader.
//! - `network.rs`: the multiplexed peer connection (client side) and openraft's network.
//! - `server.rs`: the listener that dispatches incoming frames to the right group.
//! - `node.rs`: [`RaftNode`]: open/close groups, propose, membership changes, leader,
//!   metrics, shutdown; `members.rs`: voter changes on the leader, each step bounded in
//!   time; `forward.rs`: reaching a group's leader from any member (forwarded
//!   proposals, read index, membership changes).
//! - `status.rs`: [`GroupStatus`]: a group's role, term, leader and follower lag on a node.
//! - `error.rs`: [`RaftGroupError`].

mod control_batch;
mod entry_codec;
mod error;
mod forward;
mod log_store;
mod members;
mod network;
mod node;
mod partition_entries;
mod partition_index;
mod partition_install;
#[cfg(test)]
mod partition_install_tests;
mod partition_log_store;
#[cfg(test)]
mod partition_offsets_tests;
mod partition_read;
mod partition_retained;
mod partition_side;
mod partition_snapshot;
mod partition_snapshot_files;
mod partition_store;
#[cfg(test)]
mod partition_suite;
#[cfg(test)]
mod partition_tests;
mod preferred;
mod server;
mod snapshot_files;
mod snapshot_install;
#[cfg(test)]
mod snapshot_tests;
mod state_machine;
mod status;
#[cfg(test)]
mod storage_suite;
mod types;
mod wire;

pub use control_batch::{EntryBatchError, LOG_START_TYPE, log_start_command, log_start_of};
pub use error::RaftGroupError;
pub use node::{GroupStart, RaftNode, RaftNodeConfig, TransportStats};
pub use partition_store::{PartitionRaftLog, PartitionStoreError};
pub use preferred::{CHECK_EVERY as PREFERRED_CHECK_EVERY, PreferredLeadership};
pub use state_machine::{SnapshotSource, StateMachine};
pub use status::{GroupStatus, Role};
pub use types::{Command, GroupId, NodeId, TypeConfig};
pub use wire::MemberChange;
