//! The controller's state machine, as the storage crate's Raft facility drives it.
//!
//! Commands and snapshots are JSON: the metadata is small and changes rarely, and JSON keeps
//! a snapshot readable when an operator needs to look at one. Readers (the broker answering
//! Metadata, the placement of new topics) take a copy through the shared handle.

use super::command::{ControllerAnswer, ControllerCommand};
use super::metadata::ClusterMetadata;
use commerce_storage::raft::{SnapshotSource, StateMachine};
use kafka_protocol::error::ResponseError;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// The controller state machine; clone the [`ControllerMachine::handle`] to read the state.
pub struct ControllerMachine {
    state: Arc<RwLock<ClusterMetadata>>,
    /// Bumped with the applied index after every command, so readers can wait for a change.
    applied: watch::Sender<u64>,
}

/// A read handle on the metadata the controller has applied on this node.
#[derive(Clone)]
pub struct MetadataView {
    state: Arc<RwLock<ClusterMetadata>>,
    applied: watch::Receiver<u64>,
}

impl ControllerMachine {
    pub fn new() -> (ControllerMachine, MetadataView) {
        let state = Arc::new(RwLock::new(ClusterMetadata::default()));
        let (applied, receiver) = watch::channel(0);
        let view = MetadataView {
            state: state.clone(),
            applied: receiver,
        };
        (ControllerMachine { state, applied }, view)
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut ClusterMetadata) -> T) -> T {
        match self.state.write() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl StateMachine for ControllerMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let answer = match serde_json::from_slice::<ControllerCommand>(command) {
            Ok(command) => self.with_state(|state| state.apply(index, &command)),
            // Every replica fails to decode the same bytes the same way.
            Err(error) => self.with_state(|state| {
                state.applied_index = index;
                ControllerAnswer::Refused {
                    error_code: ResponseError::InvalidRequest.code(),
                    message: format!("not a controller command: {error}"),
                }
            }),
        };
        self.applied.send_replace(index);
        serde_json::to_vec(&answer).unwrap_or_default()
    }

    fn snapshot_to(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Cluster metadata is small: written as one value, under the read lock.
        match self.state.read() {
            Ok(state) => serde_json::to_writer(out, &*state)?,
            Err(poisoned) => serde_json::to_writer(out, &*poisoned.into_inner())?,
        }
        Ok(())
    }

    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let restored: ClusterMetadata = serde_json::from_reader(snapshot)?;
        let index = restored.applied_index;
        self.with_state(|state| *state = restored);
        self.applied.send_replace(index);
        Ok(())
    }
}

impl MetadataView {
    /// A copy of the metadata as applied on this node.
    pub fn current(&self) -> ClusterMetadata {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The cluster's id as decided in the controller, once this node has applied it.
    pub fn cluster_id(&self) -> Option<String> {
        match self.state.read() {
            Ok(state) => state.cluster_id.clone(),
            Err(poisoned) => poisoned.into_inner().cluster_id.clone(),
        }
    }

    /// A receiver of the applied index: it changes after every command applied here.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Waits until this node has applied at least `index`.
    pub async fn wait_applied(&mut self, index: u64) -> bool {
        self.applied
            .wait_for(|applied| *applied >= index)
            .await
            .is_ok()
    }
}

/// Encodes a command for proposal.
pub fn encode(command: &ControllerCommand) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(command)
}

/// Decodes the controller's answer to a proposal.
pub fn decode_answer(bytes: &[u8]) -> Result<ControllerAnswer, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::controller::command::NodeRecord;
    use uuid::Uuid;

    fn node(id: u64) -> ControllerCommand {
        ControllerCommand::RegisterNode(NodeRecord {
            id,
            kafka_addr: format!("127.0.0.1:{}", 9090 + id),
            raft_addr: format!("127.0.0.1:{}", 9700 + id),
            http_addr: format!("127.0.0.1:{}", 8080 + id),
        })
    }

    fn apply(
        machine: &mut ControllerMachine,
        index: u64,
        command: &ControllerCommand,
    ) -> ControllerAnswer {
        decode_answer(&machine.apply(index, &encode(command).unwrap())).unwrap()
    }

    #[test]
    fn a_leaving_node_gets_no_new_replicas_until_it_is_removed() {
        let (mut machine, view) = ControllerMachine::new();
        for id in 1..=4 {
            apply(&mut machine, id, &node(id));
        }
        let leave = ControllerCommand::MarkLeaving { id: 1 };
        assert_eq!(apply(&mut machine, 5, &leave), ControllerAnswer::Applied);
        assert_eq!(
            view.current().placeable_nodes(),
            std::collections::BTreeSet::from([2, 3, 4])
        );
        let unknown = ControllerCommand::MarkLeaving { id: 9 };
        assert!(matches!(
            apply(&mut machine, 6, &unknown),
            ControllerAnswer::Refused { .. }
        ));
        let remove = ControllerCommand::RemoveNode { id: 1 };
        assert_eq!(apply(&mut machine, 7, &remove), ControllerAnswer::Applied);
        assert!(view.current().leaving.is_empty());
    }

    #[test]
    fn topics_need_registered_nodes_and_unique_names() {
        let (mut machine, view) = ControllerMachine::new();
        for id in 1..=3 {
            assert_eq!(
                apply(&mut machine, id, &node(id)),
                ControllerAnswer::Applied
            );
        }
        let create = ControllerCommand::CreateTopic {
            name: "orders".into(),
            id: Uuid::new_v4(),
            config: Default::default(),
            replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
        };
        assert_eq!(apply(&mut machine, 4, &create), ControllerAnswer::Applied);
        let again = apply(&mut machine, 5, &create);
        assert!(
            matches!(again, ControllerAnswer::Refused { error_code, .. } if error_code == ResponseError::TopicAlreadyExists.code())
        );
        let unknown_node = ControllerCommand::CreateTopic {
            name: "payments".into(),
            id: Uuid::new_v4(),
            config: Default::default(),
            replicas: vec![vec![1, 4]],
        };
        assert!(matches!(
            apply(&mut machine, 6, &unknown_node),
            ControllerAnswer::Refused { .. }
        ));
        let state = view.current();
        assert_eq!(state.topics.len(), 1);
        assert_eq!(
            state.topics["orders"].partitions[1].preferred_leader(),
            Some(2)
        );
        assert_eq!(state.applied_index, 6);
    }

    #[test]
    fn a_node_holding_replicas_cannot_be_removed() {
        let (mut machine, view) = ControllerMachine::new();
        for id in 1..=4 {
            apply(&mut machine, id, &node(id));
        }
        apply(
            &mut machine,
            5,
            &ControllerCommand::CreateTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                config: Default::default(),
                replicas: vec![vec![1, 2, 3]],
            },
        );
        assert!(matches!(
            apply(&mut machine, 6, &ControllerCommand::RemoveNode { id: 3 }),
            ControllerAnswer::Refused { .. }
        ));
        assert_eq!(
            apply(&mut machine, 7, &ControllerCommand::RemoveNode { id: 4 }),
            ControllerAnswer::Applied
        );
        apply(
            &mut machine,
            8,
            &ControllerCommand::ReassignPartition {
                name: "t".into(),
                partition: 0,
                replicas: vec![1, 2],
            },
        );
        assert_eq!(
            apply(&mut machine, 9, &ControllerCommand::RemoveNode { id: 3 }),
            ControllerAnswer::Applied
        );
        assert_eq!(
            view.current().nodes.keys().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn the_first_cluster_id_claimed_is_the_clusters_for_good() {
        let (mut machine, view) = ControllerMachine::new();
        assert_eq!(view.cluster_id(), None);
        let claim = |id: &str| ControllerCommand::ClaimClusterId { id: id.to_string() };
        assert!(matches!(
            apply(&mut machine, 1, &claim("")),
            ControllerAnswer::Refused { .. }
        ));
        assert!(matches!(
            apply(&mut machine, 2, &claim("no spaces")),
            ControllerAnswer::Refused { .. }
        ));
        assert_eq!(view.cluster_id(), None, "a refused claim decides nothing");
        assert_eq!(
            apply(&mut machine, 3, &claim("first-node-3")),
            ControllerAnswer::Applied
        );
        assert_eq!(
            apply(&mut machine, 4, &claim("second-node-1")),
            ControllerAnswer::Applied,
            "a later claim is answered, and changes nothing"
        );
        assert_eq!(view.cluster_id().as_deref(), Some("first-node-3"));
        let (mut restored, restored_view) = ControllerMachine::new();
        let mut snapshot = Vec::new();
        machine.snapshot_to(&mut snapshot).unwrap();
        restored
            .restore_from(&mut std::io::Cursor::new(&snapshot))
            .unwrap();
        assert_eq!(restored_view.cluster_id().as_deref(), Some("first-node-3"));
        // Metadata kept before the id was: no id yet, and the next claim decides it.
        let old: ClusterMetadata =
            serde_json::from_str(r#"{"nodes":{},"topics":{},"applied_index":7,"next_group":3}"#)
                .unwrap();
        assert_eq!(old.cluster_id, None);
    }

    #[test]
    fn snapshot_restores_the_same_state_and_garbage_changes_nothing() {
        let (mut machine, view) = ControllerMachine::new();
        for id in 1..=3 {
            apply(&mut machine, id, &node(id));
        }
        let before = view.current();
        let answer: ControllerAnswer = decode_answer(&machine.apply(4, b"{not json")).unwrap();
        assert!(matches!(answer, ControllerAnswer::Refused { .. }));
        let mut snapshot = Vec::new();
        machine.snapshot_to(&mut snapshot).unwrap();
        let (mut restored, restored_view) = ControllerMachine::new();
        restored
            .restore_from(&mut std::io::Cursor::new(&snapshot))
            .unwrap();
        let after = restored_view.current();
        assert_eq!(after.nodes, before.nodes);
        assert_eq!(after.applied_index, 4);
    }
}
