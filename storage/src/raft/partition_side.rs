//! Side entries: the Raft entries of a partition group that are not Kafka batches.
//!
//! Kafka numbers a partition's records from 0 with no gap (a transaction marker, a real
//! Kafka control batch, takes one offset too). Raft adds entries of its own: the blank entry
//! each new leader appends, membership changes, and the broker's log-start entries
//! (DeleteRecords, which Kafka does not write to the log at all). Stored as batches they
//! would take offsets, and every leader change would open a gap clients can see. So they
//! are kept here instead, beside the segments, in the partition's redb metadata file (one
//! row per entry, keyed by Raft index), and the segment log holds only Kafka's batches:
//! one offset space, and nothing at the Kafka boundary has to translate offsets.
//!
//! A side entry remembers its *position*: the log end offset when it was appended, which
//! is where the next batch starts. That is what lets open merge the two stores back into
//! one sequence of entries and check them (see `partition_index`). The rows are few (one
//! per leader change or membership change) and small.
//!
//! Writes go with the metadata writes they belong to, in one redb transaction: an append's
//! side entries with its epoch rows, a purge's removal of side entries below the new first
//! index with the new anchor. So a side entry and the anchor or epochs never disagree.

use std::collections::BTreeMap;

use openraft::EntryPayload;
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::control_batch;
use super::partition_store::{META, PartitionRaftLog, PartitionStoreError, meta_err};
use super::types::TypeConfig;

/// Side entries by Raft index, each JSON-encoded [`SideEntry`].
pub(super) const SIDE: TableDefinition<u64, &[u8]> = TableDefinition::new("side_entries");

/// A Raft entry kept beside the segments, taking no Kafka offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideEntry {
    /// The log end offset when the entry was appended: the next batch's base offset.
    pub position: i64,
    pub payload: EntryPayload<TypeConfig>,
}

impl SideEntry {
    pub fn encode(&self) -> Result<Vec<u8>, PartitionStoreError> {
        Ok(serde_json::to_vec(self)?)
    }
}

/// Whether an entry with this payload is a side entry rather than a batch: Raft's own
/// entries, and the broker's log-start entries (a partition's log start is not a record).
pub fn is_side_payload(payload: &EntryPayload<TypeConfig>) -> bool {
    match payload {
        EntryPayload::Blank | EntryPayload::Membership(_) => true,
        EntryPayload::Normal(command) => control_batch::log_start_of(&command.0).is_some(),
    }
}

/// Changes to the side entries, made in the same transaction as metadata values.
#[derive(Debug, Default)]
pub(super) struct SideChange {
    /// Side entries below this index go (a purge: they are out of the log).
    pub drop_below: Option<u64>,
    /// Side entries at or after this index go (a truncation, or indexes being rewritten).
    pub drop_from: Option<u64>,
    /// Entries written, after the drops.
    pub put: Vec<(u64, Vec<u8>)>,
}

impl PartitionRaftLog {
    /// Writes metadata `values` and the `side` changes in one transaction.
    pub(super) fn commit_meta(
        &self,
        values: &[(&str, Vec<u8>)],
        side: &SideChange,
        durability: Durability,
    ) -> Result<(), PartitionStoreError> {
        let mut txn = self.meta.begin_write().map_err(meta_err)?;
        txn.set_durability(durability).map_err(meta_err)?;
        {
            let mut table = txn.open_table(META).map_err(meta_err)?;
            for (key, value) in values {
                table.insert(*key, value.as_slice()).map_err(meta_err)?;
            }
            let mut rows = txn.open_table(SIDE).map_err(meta_err)?;
            if let Some(below) = side.drop_below {
                rows.retain_in(..below, |_, _| false).map_err(meta_err)?;
            }
            if let Some(from) = side.drop_from {
                rows.retain_in(from.., |_, _| false).map_err(meta_err)?;
            }
            for (index, row) in &side.put {
                rows.insert(*index, row.as_slice()).map_err(meta_err)?;
            }
        }
        txn.commit().map_err(meta_err)
    }

    /// Every stored side entry, by index.
    pub(super) fn load_side(&self) -> Result<BTreeMap<u64, SideEntry>, PartitionStoreError> {
        let txn = self.meta.begin_read().map_err(meta_err)?;
        let rows = txn.open_table(SIDE).map_err(meta_err)?;
        let mut side = BTreeMap::new();
        for row in rows.iter().map_err(meta_err)? {
            let (index, value) = row.map_err(meta_err)?;
            side.insert(index.value(), serde_json::from_slice(value.value())?);
        }
        Ok(side)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use openraft::Membership;

    use super::*;
    use crate::raft::types::Command;

    #[test]
    fn raft_entries_and_log_start_moves_are_side_entries_records_and_markers_are_not() {
        assert!(is_side_payload(&EntryPayload::Blank));
        assert!(is_side_payload(&EntryPayload::Membership(Membership::new(
            vec![[1, 2, 3].into()],
            None
        ))));
        assert!(is_side_payload(&EntryPayload::Normal(Command(
            control_batch::log_start_command(7)
        ))));
        let records = crate::log::tests::support::batch(3, 10, 0);
        assert!(!is_side_payload(&EntryPayload::Normal(Command(records))));
    }

    #[test]
    fn a_side_entry_roundtrips_through_its_row() {
        let entry = SideEntry {
            position: 42,
            payload: EntryPayload::Normal(Command(control_batch::log_start_command(40))),
        };
        let row = entry.encode().unwrap();
        assert_eq!(serde_json::from_slice::<SideEntry>(&row).unwrap(), entry);
    }
}
