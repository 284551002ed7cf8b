//! The group coordinator as the transaction coordinator's offset sink: when a transaction
//! that carried TxnOffsetCommit commits, its offsets become the group's committed offsets.

use super::commit::PartitionCommit;
use crate::broker::Broker;
use crate::producer::{TxnOffset, TxnOffsetSink};
use std::sync::Weak;

/// Weak, because the broker owns the transaction coordinator that holds this sink.
pub struct GroupOffsetSink {
    pub broker: Weak<Broker>,
}

impl TxnOffsetSink for GroupOffsetSink {
    fn commit_offsets(&self, group: &str, offsets: Vec<TxnOffset>) -> Result<(), String> {
        let broker = self
            .broker
            .upgrade()
            .ok_or_else(|| "the broker is shutting down".to_string())?;
        let offsets: Vec<PartitionCommit> = offsets
            .into_iter()
            .map(|(topic, partition, offset, metadata)| PartitionCommit {
                topic,
                partition,
                offset,
                leader_epoch: -1,
                metadata: metadata.unwrap_or_default(),
            })
            .collect();
        let results = broker
            .groups()
            .commit_transactional(&broker, group, &offsets);
        match results.into_iter().flatten().next() {
            None => Ok(()),
            Some(error) => Err(format!("committing offsets of group {group}: {error:?}")),
        }
    }
}
