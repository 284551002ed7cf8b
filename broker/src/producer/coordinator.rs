//! The transaction coordinator: transactional id -> (producer id, epoch, state, partitions),
//! persisted in the producer store on every change. It fences older producers by bumping the
//! epoch, writes the commit/abort markers to every partition of a transaction when it ends,
//! keeps a transaction's consumer offsets until commit, and aborts transactions whose
//! producer went quiet for longer than its transaction timeout.
//!
//! Ending a transaction (decided, then completed) is in [`super::txn_end`].
//!
//! In a cluster the records live in `__transaction_state` ([`super::txn_log`]): each
//! transactional id is coordinated by the leader of its partition, which holds in memory
//! only the partitions it leads and has loaded ([`super::txn_cluster`]), and the markers
//! are proposed to the partitions' Raft groups wherever they are led. A new coordinator
//! finishes what its predecessor decided: a Prepare record it loads is completed by its
//! first tick.

use super::error::ProducerError;
use super::id_allocator::IdAllocator;
use super::sink::{TxnOffset, TxnOffsetSink};
use super::store::ProducerStore;
use super::txn_log;
pub use super::txn_metadata::{TxnMetadata, TxnState};
use crate::broker::Broker;
use crate::error::Result;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Kafka's transaction.max.timeout.ms default: 15 minutes.
const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;
/// Past this the epoch cannot be bumped again; the transactional id gets a new producer id.
pub(super) const MAX_EPOCH: i16 = i16::MAX - 1;

pub(super) struct Inner {
    pub(super) ids: IdAllocator,
    pub(super) txns: HashMap<String, TxnMetadata>,
    /// producer id -> transactional id, for checking transactional produce requests.
    pub(super) by_producer: HashMap<i64, String>,
    /// In a cluster: the `__transaction_state` partitions this node leads and has loaded;
    /// `txns` holds only their ids.
    pub(super) loaded: BTreeSet<i32>,
}

pub struct TransactionCoordinator {
    pub(super) store: ProducerStore,
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

    pub(super) fn offset_sink(&self) -> Option<Arc<dyn TxnOffsetSink>> {
        self.sink.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
        let in_cluster = broker.replication().is_some();
        if in_cluster {
            broker.groups().offsets_topic(broker)?;
        } else if self.offset_sink().is_none() {
            return Err(ProducerError::CoordinatorNotAvailable("no group coordinator").into());
        }
        let mut inner = self.lock();
        Self::owns(broker, &inner, transactional_id)?;
        let mut metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        metadata = self.settle(broker, &mut inner, metadata, now_ms)?;
        Self::begin(&mut metadata, now_ms)?;
        if in_cluster {
            // The group's coordinator is generally another node: its offsets partition
            // joins the transaction, and the marker there makes the offsets the group
            // coordinator staged the group's (`group::txn_offsets`).
            let offsets_partition = GroupCoordinator::partition_of(group);
            metadata
                .partitions
                .insert((OFFSETS_TOPIC.to_string(), offsets_partition));
        } else {
            metadata.offsets.entry(group.to_string()).or_default();
        }
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
        // Refused on the produce path as the partition refuses it (`sequence`): a stale
        // epoch is INVALID_PRODUCER_EPOCH there, which clients take for fencing.
        if epoch < metadata.epoch {
            return Err(ProducerError::InvalidProducerEpoch);
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
    pub(super) fn save(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        metadata: TxnMetadata,
    ) -> Result<()> {
        if broker.replication().is_some() {
            txn_log::append(broker, &metadata)?;
        } else {
            self.store.put_transaction(&metadata)?;
        }
        inner.publish(metadata);
        Ok(())
    }
}

impl Inner {
    /// Makes `metadata` the record of its transactional id in memory.
    pub(super) fn publish(&mut self, metadata: TxnMetadata) {
        self.by_producer
            .insert(metadata.producer_id, metadata.transactional_id.clone());
        self.txns
            .insert(metadata.transactional_id.clone(), metadata);
    }
}
