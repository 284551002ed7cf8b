//! The controller: the cluster's metadata as a replicated state machine (KRaft's role).
//!
//! One Raft group, hosted by every node, holds what the whole cluster must agree on: the
//! nodes and their addresses, every topic with its id, config overrides and the replicas of
//! each partition. A change is a [`ControllerCommand`] fixed entirely by the proposer (topic
//! ids, replica placement), so applying it is deterministic on every replica; an invalid
//! command is answered with a Kafka error code the same way everywhere and changes nothing.
//!
//! - `command.rs`: the commands and the answers.
//! - `metadata.rs`: [`ClusterMetadata`], the state, and its apply.
//! - `placement.rs`: where a new partition's replicas go, and which partitions a returning
//!   node should lead again (preferred leaders).
//! - `rebalance.rs`: taking a leaving node out of the placement with the preferred leaders
//!   kept spread over the nodes that stay.
//! - `machine.rs`: the adapter to the storage crate's Raft `StateMachine` trait.

mod command;
mod machine;
mod metadata;
mod placement;
mod rebalance;

pub use command::{ControllerAnswer, ControllerCommand, NodeRecord};
pub use machine::{ControllerMachine, MetadataView, decode_answer, encode};
pub use metadata::{ClusterMetadata, PartitionReplicas, TopicMetadata};
pub use placement::{PlacementError, moves_off_node, place_replicas, preferred_leader_moves};
pub use rebalance::{Reassignment, balance_preferred_leaders, drain_plan};

/// The controller's Raft group id; partition groups are numbered from 1.
pub const CONTROLLER_GROUP: u64 = 0;
