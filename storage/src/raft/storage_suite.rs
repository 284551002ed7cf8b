//! openraft's own storage conformance suite run against the group log store and state
//! machine adapter: membership recovery, initial state, vote, log reads, purge, truncate,
//! apply and snapshot transfer, each on a fresh on-disk store.
#![allow(clippy::unwrap_used)]

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::GroupLogStore;
use super::state_machine::{GroupStateMachine, SnapshotSource, StateMachine};
use super::types::{StorageError, TypeConfig};

/// A state machine that keeps nothing: the suite checks the adapter's bookkeeping.
struct Nothing;

impl StateMachine for Nothing {
    fn apply(&mut self, index: u64, _command: &[u8]) -> Vec<u8> {
        index.to_be_bytes().to_vec()
    }

    fn snapshot_to(
        &self,
        _out: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }

    fn restore_from(
        &mut self,
        _snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, GroupLogStore, GroupStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, GroupLogStore, GroupStateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let log = GroupLogStore::open(dir.path()).unwrap();
        let machine = GroupStateMachine::open(dir.path(), Box::new(Nothing))?;
        Ok((dir, log, machine))
    }
}

#[test]
fn group_storage_passes_the_openraft_suite() {
    Suite::test_all(Builder).unwrap();
}
