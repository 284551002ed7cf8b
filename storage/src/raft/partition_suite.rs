//! openraft's storage conformance suite against the partition log store (the Raft log kept
//! as Kafka batches in a `PartitionLog`) and the partition state machine adapter.
//!
//! The suite appends only blank and membership entries, so no payload needs wrapping: they
//! are side entries (no batch, no offset), and every read in the suite after a reopen comes
//! back from the metadata file. Normal entries (record batches) and their mix with side
//! entries are covered by `partition_tests`.
//!
//! Every test of `Suite::test_store` runs (listed one by one, in `test_store`'s order)
//! except `get_initial_state_membership_from_log_and_sm`: it appends entries 1 and 2, then
//! 1 again while keeping 2, then 3. A key-value log allows that; a log where an entry IS the
//! next batch (or sits between batches) cannot keep 2 after rewriting 1 (rewriting 1
//! removes 2, and 3 then leaves a hole), and openraft itself always truncates before it
//! overwrites.
#![allow(clippy::unwrap_used)]

use openraft::testing::{StoreBuilder, Suite};

use super::partition_log_store::PartitionLogStore;
use super::partition_store::PartitionRaftLog;
use super::state_machine::{GroupStateMachine, SnapshotSource, StateMachine};
use super::types::{StorageError, TypeConfig};
use crate::log::{FlushPolicy, LogConfig};

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

/// Tiny segments, so the suite's purges and truncations cross segment boundaries.
pub(crate) fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        segment_ms: None,
        retention_bytes: None,
        retention_ms: None,
        index_interval_bytes: 128,
        flush: FlushPolicy::Os,
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, PartitionLogStore, GroupStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, PartitionLogStore, GroupStateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let shared = PartitionRaftLog::open(dir.path(), small_segments()).unwrap();
        let machine =
            GroupStateMachine::open_partition(dir.path(), Box::new(Nothing), shared.clone())?;
        Ok((dir, PartitionLogStore::new(shared), machine))
    }
}

type S = Suite<TypeConfig, PartitionLogStore, GroupStateMachine, Builder, tempfile::TempDir>;

fn run<F, Fu>(test: F) -> Result<(), String>
where
    F: Fn(PartitionLogStore, GroupStateMachine) -> Fu,
    Fu: std::future::Future<Output = Result<(), StorageError>>,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_dir, store, machine) = Builder.build().await.map_err(|e| e.to_string())?;
        test(store, machine).await.map_err(|e| e.to_string())
    })
}

#[test]
fn partition_storage_passes_the_openraft_suite() {
    let results = [
        (
            "last_membership_in_log_initial",
            run(S::last_membership_in_log_initial),
        ),
        ("last_membership_in_log", run(S::last_membership_in_log)),
        (
            "last_membership_in_log_multi_step",
            run(S::last_membership_in_log_multi_step),
        ),
        ("get_membership_initial", run(S::get_membership_initial)),
        (
            "get_membership_from_log_and_empty_sm",
            run(S::get_membership_from_log_and_empty_sm),
        ),
        (
            "get_membership_from_empty_log_and_sm",
            run(S::get_membership_from_empty_log_and_sm),
        ),
        (
            "get_membership_from_log_le_sm_last_applied",
            run(S::get_membership_from_log_le_sm_last_applied),
        ),
        (
            "get_membership_from_log_gt_sm_last_applied_1",
            run(S::get_membership_from_log_gt_sm_last_applied_1),
        ),
        (
            "get_membership_from_log_gt_sm_last_applied_2",
            run(S::get_membership_from_log_gt_sm_last_applied_2),
        ),
        (
            "get_initial_state_without_init",
            run(S::get_initial_state_without_init),
        ),
        (
            "get_initial_state_with_state",
            run(S::get_initial_state_with_state),
        ),
        (
            "get_initial_state_last_log_gt_sm",
            run(S::get_initial_state_last_log_gt_sm),
        ),
        (
            "get_initial_state_last_log_lt_sm",
            run(S::get_initial_state_last_log_lt_sm),
        ),
        (
            "get_initial_state_log_ids",
            run(S::get_initial_state_log_ids),
        ),
        (
            "get_initial_state_re_apply_committed",
            run(S::get_initial_state_re_apply_committed),
        ),
        ("save_vote", run(S::save_vote)),
        ("get_log_entries", run(S::get_log_entries)),
        ("limited_get_log_entries", run(S::limited_get_log_entries)),
        ("try_get_log_entry", run(S::try_get_log_entry)),
        ("initial_logs", run(S::initial_logs)),
        ("get_log_state", run(S::get_log_state)),
        ("get_log_id", run(S::get_log_id)),
        ("last_id_in_log", run(S::last_id_in_log)),
        ("last_applied_state", run(S::last_applied_state)),
        ("purge_logs_upto_0", run(S::purge_logs_upto_0)),
        ("purge_logs_upto_5", run(S::purge_logs_upto_5)),
        ("purge_logs_upto_20", run(S::purge_logs_upto_20)),
        ("delete_logs_since_11", run(S::delete_logs_since_11)),
        ("delete_logs_since_0", run(S::delete_logs_since_0)),
        ("append_to_log", run(S::append_to_log)),
        ("snapshot_meta", run(S::snapshot_meta)),
        ("apply_single", run(S::apply_single)),
        ("apply_multiple", run(S::apply_multiple)),
    ];
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failed.is_empty(), "failed: {failed:#?}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(S::transfer_snapshot(&Builder))
        .unwrap_or_else(|e| panic!("transfer_snapshot: {e}"));
}
