//! The transaction coordinator: transactional id -> (producer id, epoch, state, partitions),
//! persisted in the producer store on every change. It fences older producers by bumping the
//! epoch, writes the commit/abort markers to every partition of a transaction when it ends,
//! keeps a transaction's consumer offsets until commit, and aborts transactions whose
//! producer went quiet for longer than its transaction timeout.
//!
//! Ending a transaction is Kafka's two steps: the decision (PrepareCommit / PrepareAbort) is
//! made durable first, then the markers are written, then the record becomes Complete. A
//! crash or a failed write in between leaves a Prepare record, which the maintenance tick
//! finishes by writing the markers again (a second marker for a transaction a partition
//! already closed changes nothing), so a commit is never half applied.
//!
//! In a cluster the records live in `__transaction_state` ([`super::txn_log`]): each
//! transactional id is coordinated by the leader of its partition, which holds in memory
//! only the partitions it leads and has loaded (`replication::ownership` follows that), and
//! the markers are proposed to the partitions' Raft groups wherever they are led. A new
//! coordinator finishes what its predecessor decided: a Prepare record it loads is
//! completed by its first tick.

use super::batch_header::Marker;
use super::error::ProducerError;
use super::id_allocator::IdAllocator;
use super::marker::marker_batch;
use super::sink::{TxnOffset, TxnOffsetSink};
use super::store::ProducerStore;
use super::txn_log::{self, TXN_STATE_TOPIC};
pub use super::txn_metadata::{TxnMetadata, TxnState};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::replication::ownership::PartitionCoordinator;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Kafka's transaction.max.timeout.ms default: 15 minutes.
const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;
/// Past this the epoch cannot be bumped again; the transactional id gets a new producer id.
const MAX_EPOCH: i16 = i16::MAX - 1;

struct Inner {
    ids: IdAllocator,
    txns: HashMap<String, TxnMetadata>,
    /// producer id -> transactional id, for checking transactional produce requests.
    by_producer: HashMap<i64, String>,
    /// In a cluster: the `__transaction_state` partitions this node leads and has loaded;
    /// `txns` holds only their ids.
    loaded: BTreeSet<i32>,
}

pub struct TransactionCoordinator {
    store: ProducerStore,
    inner: Mutex<Inner>,
    sink: RwLock<Option<Arc<dyn TxnOffsetSink>>>,
}

impl TransactionCoordinator {
    pub fn open(path: &Path) -> Result<TransactionCoordinator> {
        Self::open_for(path, None)
    }

    /// Like [`TransactionCoordinator::open`]; `cluster_node` is this node's id in a cluster,
    /// whose producer ids then come from that node's own range.
    pub fn open_for(path: &Path, cluster_node: Option<u64>) -> Result<TransactionCoordinator> {
        let store = ProducerStore::open(path)?;
        let ids = IdAllocator::open_in_range(&store, cluster_node)?;
        let mut txns = HashMap::new();
        let mut by_producer = HashMap::new();
        // A cluster node's transactions are loaded from `__transaction_state` as it comes to
        // lead its partitions, never from the local store.
        let local = if cluster_node.is_some() {
            Vec::new()
        } else {
            store.transactions()?
        };
        for metadata in local {
            by_producer.insert(metadata.producer_id, metadata.transactional_id.clone());
            txns.insert(metadata.transactional_id.clone(), metadata);
        }
        Ok(TransactionCoordinator {
            store,
            inner: Mutex::new(Inner {
                ids,
                txns,
                by_producer,
                loaded: BTreeSet::new(),
            }),
            sink: RwLock::new(None),
        })
    }

    /// Plugs in where committed transactional offsets go (the group coordinator).
    pub fn set_offset_sink(&self, sink: Arc<dyn TxnOffsetSink>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    fn offset_sink(&self) -> Option<Arc<dyn TxnOffsetSink>> {
        self.sink.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ok when this node coordinates `transactional_id`: always on one node; in a cluster
    /// when it leads the id's `__transaction_state` partition and has loaded it.
    fn owns(broker: &Broker, inner: &Inner, transactional_id: &str) -> Result<(), ProducerError> {
        if broker.replication().is_none() {
            return Ok(());
        }
        let leading =
            txn_log::local_partition(broker, transactional_id).is_some_and(|p| p.is_leader());
        if !leading {
            return Err(ProducerError::NotCoordinator);
        }
        if !inner
            .loaded
            .contains(&txn_log::partition_of(transactional_id))
        {
            return Err(ProducerError::CoordinatorLoadInProgress);
        }
        Ok(())
    }

    /// InitProducerId without a transactional id: a fresh id at epoch 0, or (KIP-360, the
    /// client naming its current id) the same id with the next epoch.
    pub fn init_idempotent(&self, producer_id: i64, epoch: i16) -> Result<(i64, i16)> {
        let mut inner = self.lock();
        if producer_id >= 0 && (0..MAX_EPOCH).contains(&epoch) {
            return Ok((producer_id, epoch + 1));
        }
        Ok((inner.ids.allocate(&self.store)?, 0))
    }

    /// InitProducerId with a transactional id: fences every earlier producer of that id by
    /// bumping the epoch, aborting the transaction it left open.
    pub fn init_transactional(
        &self,
        broker: &Broker,
        transactional_id: &str,
        timeout_ms: i32,
        producer_id: i64,
        epoch: i16,
        now_ms: i64,
    ) -> Result<(i64, i16)> {
        if transactional_id.is_empty() {
            return Err(ProducerError::InvalidTransactionalId.into());
        }
        if !(1..=MAX_TRANSACTION_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(ProducerError::InvalidTransactionTimeout(timeout_ms).into());
        }
        if broker.replication().is_some() {
            // Created on first need, so that this id's partition gets a leader.
            txn_log::topic(broker)?;
        }
        let mut inner = self.lock();
        Self::owns(broker, &inner, transactional_id)?;
        let Some(mut metadata) = inner.txns.get(transactional_id).cloned() else {
            let producer_id = inner.ids.allocate(&self.store)?;
            let metadata = TxnMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id,
                epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                started_ms: now_ms,
                partitions: BTreeSet::new(),
                offsets: BTreeMap::new(),
            };
            self.save(broker, &mut inner, metadata)?;
            return Ok((producer_id, 0));
        };
        // A client naming its (id, epoch) asks to bump its own epoch (KIP-360); one naming
        // something else is stale.
        if producer_id >= 0 && (producer_id != metadata.producer_id || epoch != metadata.epoch) {
            return Err(ProducerError::ProducerFenced.into());
        }
        self.fence(broker, &mut inner, &mut metadata, now_ms)?;
        metadata.timeout_ms = timeout_ms;
        metadata.state = TxnState::Empty;
        self.save(broker, &mut inner, metadata.clone())?;
        Ok((metadata.producer_id, metadata.epoch))
    }

    /// Bumps the epoch (or moves to a new producer id when it is exhausted) and aborts the
    /// open transaction with the new epoch, so its markers fence the old producer on every
    /// partition it touched. A transaction already decided is completed first, with the
    /// epoch it was decided under: bumping past it would leave its partitions open, and the
    /// next marker of this producer id would close them the way *that* transaction ends.
    fn fence(
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
    fn decide(
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
    fn complete(
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
    fn settle(
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

    /// The transaction of `transactional_id`, checked against the caller's id and epoch.
    fn checked(
        inner: &Inner,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<TxnMetadata, ProducerError> {
        let metadata = inner
            .txns
            .get(transactional_id)
            .ok_or(ProducerError::InvalidProducerIdMapping)?;
        if metadata.producer_id != producer_id {
            return Err(ProducerError::InvalidProducerIdMapping);
        }
        if epoch != metadata.epoch {
            return Err(ProducerError::ProducerFenced);
        }
        Ok(metadata.clone())
    }

    /// A partition a transaction may add: one this node hosts, or in a cluster one the
    /// controller's metadata names (its leader may be any node).
    fn check_partition(broker: &Broker, topic: &str, index: i32) -> Result<()> {
        let Some(replication) = broker.replication() else {
            return broker.partition(topic, index).map(drop);
        };
        let count = replication
            .metadata
            .current()
            .topics
            .get(topic)
            .map_or(0, |topic| topic.partitions.len());
        if usize::try_from(index).is_ok_and(|index| index < count) {
            Ok(())
        } else {
            Err(BrokerError::UnknownTopicOrPartition(format!(
                "{topic}-{index}"
            )))
        }
    }

    /// Opens the transaction unless it is open; refused while the last one is completing.
    fn begin(metadata: &mut TxnMetadata, now_ms: i64) -> Result<(), ProducerError> {
        if metadata.is_completing() {
            return Err(ProducerError::ConcurrentTransactions);
        }
        if metadata.state != TxnState::Ongoing {
            metadata.state = TxnState::Ongoing;
            metadata.started_ms = now_ms;
        }
        Ok(())
    }

    /// AddPartitionsToTxn: the partitions must exist; the transaction becomes Ongoing.
    pub fn add_partitions(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<()> {
        let mut inner = self.lock();
        Self::owns(broker, &inner, transactional_id)?;
        let mut metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        for (topic, index) in partitions {
            Self::check_partition(broker, topic, *index)?;
        }
        metadata = self.settle(broker, &mut inner, metadata, now_ms)?;
        Self::begin(&mut metadata, now_ms)?;
        metadata.partitions.extend(partitions.iter().cloned());
        self.save(broker, &mut inner, metadata)
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub fn add_offsets(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now_ms: i64,
    ) -> Result<()> {
        if broker.replication().is_some() {
            // The group's coordinator is generally another node, and the hand-over of the
            // offsets at commit is local (the sink). Refused rather than half done: a
            // committed transaction whose offsets were lost would be consumed again.
            return Err(BrokerError::NotInClusterMode(
                "sending consumer offsets to a transaction",
            ));
        }
        if self.offset_sink().is_none() {
            return Err(ProducerError::CoordinatorNotAvailable("no group coordinator").into());
        }
        let mut inner = self.lock();
        Self::owns(broker, &inner, transactional_id)?;
        let mut metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        metadata = self.settle(broker, &mut inner, metadata, now_ms)?;
        Self::begin(&mut metadata, now_ms)?;
        metadata.offsets.entry(group.to_string()).or_default();
        self.save(broker, &mut inner, metadata)
    }

    /// TxnOffsetCommit: stages offsets for a group added with AddOffsetsToTxn.
    pub fn stage_offsets(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<TxnOffset>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let mut metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        let staged = match metadata.offsets.get_mut(group) {
            Some(staged) if metadata.state == TxnState::Ongoing => staged,
            _ => {
                return Err(
                    ProducerError::InvalidTxnState("group not added to the transaction").into(),
                );
            }
        };
        for offset in offsets {
            staged.retain(|(topic, partition, _, _)| (topic, partition) != (&offset.0, &offset.1));
            staged.push(offset);
        }
        self.save(broker, &mut inner, metadata)
    }

    /// EndTxn: writes the markers, hands committed offsets to the group coordinator.
    pub fn end(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<()> {
        let mut inner = self.lock();
        Self::owns(broker, &inner, transactional_id)?;
        let metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        match (metadata.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of an EndTxn that already completed, or an empty transaction.
            (TxnState::CompleteCommit, true)
            | (TxnState::CompleteAbort, false)
            | (TxnState::Empty, _) => return Ok(()),
            // A retry of an EndTxn whose markers are still being written.
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return self.settle(broker, &mut inner, metadata, now_ms).map(drop);
            }
            _ => return Err(ProducerError::InvalidTxnState("ended the other way").into()),
        }
        let decided = self.decide(broker, &mut inner, metadata, commit)?;
        // As in Kafka, EndTxn is answered once the decision is durable. Markers that could
        // not all be written now are written by the tick (or by the producer's next step),
        // and read_committed consumers wait for them.
        if let Err(error) = self.complete(broker, &mut inner, decided, now_ms) {
            tracing::warn!(%transactional_id, %error, "transaction decided; its markers are not all written yet");
        }
        Ok(())
    }

    /// Checks a transactional produce: the producer is current and the partition was added.
    pub fn check_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ProducerError> {
        let inner = self.lock();
        let metadata = inner
            .by_producer
            .get(&producer_id)
            .and_then(|id| inner.txns.get(id))
            .ok_or(ProducerError::InvalidProducerIdMapping)?;
        if epoch < metadata.epoch {
            return Err(ProducerError::ProducerFenced);
        }
        let added = metadata
            .partitions
            .contains(&(topic.to_string(), partition));
        if metadata.state != TxnState::Ongoing || epoch != metadata.epoch || !added {
            return Err(ProducerError::InvalidTxnState(
                "partition not added to the transaction",
            ));
        }
        Ok(())
    }

    /// The coordinator's periodic work: finishes transactions whose markers were not all
    /// written (a crash or a failed write), and aborts transactions open longer than their
    /// timeout, fencing their producer (as Kafka does: a producer that went quiet that long
    /// must not carry on).
    pub fn tick(&self, broker: &Broker, now_ms: i64) {
        let mut inner = self.lock();
        let due: Vec<TxnMetadata> = inner
            .txns
            .values()
            .filter(|m| {
                m.is_completing()
                    || (m.state == TxnState::Ongoing
                        && now_ms.saturating_sub(m.started_ms) > i64::from(m.timeout_ms))
            })
            .cloned()
            .collect();
        for mut metadata in due {
            let id = metadata.transactional_id.clone();
            let result = match metadata.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    tracing::info!(transactional_id = %id, state = ?metadata.state, "completing a transaction");
                    self.complete(broker, &mut inner, metadata, now_ms)
                        .map(drop)
                }
                _ => {
                    tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                    self.fence(broker, &mut inner, &mut metadata, now_ms)
                        .and_then(|()| self.save(broker, &mut inner, metadata))
                }
            };
            if let Err(error) = result {
                tracing::error!(transactional_id = %id, %error, "finishing a transaction failed; will retry");
            }
        }
    }

    /// Persists (in a cluster: replicated in `__transaction_state`), then publishes in
    /// memory.
    fn save(&self, broker: &Broker, inner: &mut Inner, metadata: TxnMetadata) -> Result<()> {
        if broker.replication().is_some() {
            txn_log::append(broker, &metadata)?;
        } else {
            self.store.put_transaction(&metadata)?;
        }
        inner
            .by_producer
            .insert(metadata.producer_id, metadata.transactional_id.clone());
        inner
            .txns
            .insert(metadata.transactional_id.clone(), metadata);
        Ok(())
    }
}

/// Appends the marker to every partition of the transaction. A partition deleted since it
/// was added is skipped: nobody can read it any more. In a cluster the marker is proposed
/// to each partition's Raft group, wherever it is led.
fn write_markers(
    broker: &Broker,
    metadata: &TxnMetadata,
    marker: Marker,
    now_ms: i64,
) -> Result<()> {
    for (topic, index) in &metadata.partitions {
        let written = match broker.replication() {
            Some(replication) => {
                let batch = marker_batch(metadata.producer_id, metadata.epoch, marker, now_ms)
                    .map_err(|error| BrokerError::Metadata(error.to_string()))?;
                replication.write_marker(broker, topic, *index, batch.to_vec())
            }
            None => broker.partition(topic, *index).and_then(|partition| {
                partition
                    .append_marker(metadata.producer_id, metadata.epoch, marker, now_ms)
                    .map(drop)
            }),
        };
        match written {
            Ok(()) | Err(BrokerError::UnknownTopicOrPartition(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

impl PartitionCoordinator for TransactionCoordinator {
    fn topic(&self) -> &'static str {
        TXN_STATE_TOPIC
    }

    fn loaded(&self) -> BTreeSet<i32> {
        self.lock().loaded.clone()
    }

    fn forget(&self, index: i32) {
        let mut inner = self.lock();
        inner.loaded.remove(&index);
        inner
            .txns
            .retain(|id, _| txn_log::partition_of(id) != index);
        let Inner {
            txns, by_producer, ..
        } = &mut *inner;
        by_producer.retain(|_, id| txns.contains_key(id));
    }

    /// Replays `__transaction_state` partition `index`, replacing what was known of its
    /// transactional ids. Transactions a Prepare record left half done are finished by the
    /// next tick.
    fn load(&self, broker: &Broker, index: i32) -> Result<()> {
        let Some(partition) = broker
            .topic(TXN_STATE_TOPIC)
            .and_then(|topic| topic.partition(index).cloned())
        else {
            return Ok(());
        };
        let loaded = txn_log::replay(&partition)?;
        let mut inner = self.lock();
        inner
            .txns
            .retain(|id, _| txn_log::partition_of(id) != index);
        for metadata in loaded {
            inner
                .by_producer
                .insert(metadata.producer_id, metadata.transactional_id.clone());
            inner
                .txns
                .insert(metadata.transactional_id.clone(), metadata);
        }
        let Inner {
            txns, by_producer, ..
        } = &mut *inner;
        by_producer.retain(|_, id| txns.contains_key(id));
        inner.loaded.insert(index);
        Ok(())
    }
}
