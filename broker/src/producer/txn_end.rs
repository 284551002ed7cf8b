//! Ending a transaction, in Kafka's two steps: the decision (PrepareCommit / PrepareAbort)
//! is made durable first, then the markers are written and the record becomes Complete. A
//! crash, a failover or a failed write in between leaves a Prepare record, which whoever
//! coordinates the id next finishes (the tick, or the producer's next request), writing the
//! markers again where needed: a second marker for a transaction a partition already
//! closed changes nothing, so a commit is never half applied.

use super::batch_header::Marker;
use super::coordinator::{Inner, MAX_EPOCH, TransactionCoordinator, TxnMetadata, TxnState};
use super::error::ProducerError;
use super::marker::marker_batch;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};

impl TransactionCoordinator {
    /// Bumps the epoch (or moves to a new producer id when it is exhausted) and aborts the
    /// open transaction with the new epoch, so its markers fence the old producer on every
    /// partition it touched. A transaction already decided is completed first, with the
    /// epoch it was decided under: bumping past it would leave its partitions open, and the
    /// next marker of this producer id would close them the way *that* transaction ends.
    pub(super) fn fence(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        metadata: &mut TxnMetadata,
        now_ms: i64,
    ) -> Result<()> {
        *metadata = self.settle(broker, inner, metadata.clone(), now_ms)?;
        metadata.epoch = metadata.epoch.saturating_add(1);
        if metadata.state == TxnState::Ongoing {
            let decided = self.decide(broker, inner, metadata.clone(), false)?;
            *metadata = self.complete(broker, inner, decided, now_ms)?;
        }
        if metadata.epoch >= MAX_EPOCH {
            inner.by_producer.remove(&metadata.producer_id);
            metadata.producer_id = inner.ids.allocate(&self.store)?;
            metadata.epoch = 0;
        }
        Ok(())
    }

    /// The first step of ending a transaction: the decision, durable. From here on the
    /// transaction ends this way whatever fails: whoever coordinates it completes it.
    pub(super) fn decide(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        mut metadata: TxnMetadata,
        commit: bool,
    ) -> Result<TxnMetadata> {
        metadata.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.save(broker, inner, metadata.clone())?;
        Ok(metadata)
    }

    /// The second step: markers written, committed offsets handed over, record completed.
    /// Returns the completed record (already saved). Safe to repeat after a failure.
    pub(super) fn complete(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        mut metadata: TxnMetadata,
        now_ms: i64,
    ) -> Result<TxnMetadata> {
        let commit = metadata.state == TxnState::PrepareCommit;
        let marker = if commit {
            Marker::Commit
        } else {
            Marker::Abort
        };
        write_markers(broker, &metadata, marker, now_ms)?;
        if commit && let Some(sink) = self.offset_sink() {
            for (group, offsets) in std::mem::take(&mut metadata.offsets) {
                if let Err(error) = sink.commit_offsets(&group, offsets) {
                    tracing::error!(%group, %error, "committing transactional offsets failed");
                }
            }
        }
        metadata.partitions.clear();
        metadata.offsets.clear();
        metadata.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        self.save(broker, inner, metadata.clone())?;
        Ok(metadata)
    }

    /// A transaction decided but not completed is completed now (its markers were not all
    /// written: a partition without a leader, a coordinator that failed over). Until that
    /// succeeds the producer's next step is refused with CONCURRENT_TRANSACTIONS, which
    /// clients retry.
    pub(super) fn settle(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        metadata: TxnMetadata,
        now_ms: i64,
    ) -> Result<TxnMetadata> {
        if !metadata.is_completing() {
            return Ok(metadata);
        }
        let id = metadata.transactional_id.clone();
        self.complete(broker, inner, metadata, now_ms)
            .map_err(|error| {
                tracing::info!(transactional_id = %id, %error, "a decided transaction is not complete yet");
                ProducerError::ConcurrentTransactions.into()
            })
    }
}

/// Appends the marker to every partition of the transaction. A partition deleted since it
/// was added is skipped: nobody can read it any more. In a cluster the marker is proposed
/// to each partition's Raft group, wherever it is led, all partitions at once.
fn write_markers(
    broker: &Broker,
    metadata: &TxnMetadata,
    marker: Marker,
    now_ms: i64,
) -> Result<()> {
    let written: Vec<Result<()>> = match broker.replication() {
        Some(replication) => {
            let batch = marker_batch(metadata.producer_id, metadata.epoch, marker, now_ms)
                .map_err(|error| BrokerError::Metadata(error.to_string()))?;
            let batches = metadata
                .partitions
                .iter()
                .map(|(topic, index)| (topic.as_str(), *index, batch.to_vec()))
                .collect();
            replication
                .propose_to_partitions(broker, batches)?
                .into_iter()
                .map(|written| written.map(drop))
                .collect()
        }
        None => metadata
            .partitions
            .iter()
            .map(|(topic, index)| {
                broker.partition(topic, *index).and_then(|partition| {
                    partition
                        .append_marker(metadata.producer_id, metadata.epoch, marker, now_ms)
                        .map(drop)
                })
            })
            .collect(),
    };
    for written in written {
        match written {
            Ok(()) | Err(BrokerError::UnknownTopicOrPartition(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
