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

use super::batch_header::Marker;
use super::error::ProducerError;
use super::id_allocator::IdAllocator;
use super::sink::{TxnOffset, TxnOffsetSink};
use super::store::ProducerStore;
pub use super::txn_metadata::{TxnMetadata, TxnState};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
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
        for metadata in store.transactions()? {
            by_producer.insert(metadata.producer_id, metadata.transactional_id.clone());
            txns.insert(metadata.transactional_id.clone(), metadata);
        }
        Ok(TransactionCoordinator {
            store,
            inner: Mutex::new(Inner {
                ids,
                txns,
                by_producer,
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
        let mut inner = self.lock();
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
            self.save(&mut inner, metadata)?;
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
        self.save(&mut inner, metadata.clone())?;
        Ok((metadata.producer_id, metadata.epoch))
    }

    /// Bumps the epoch (or moves to a new producer id when it is exhausted) and aborts the
    /// open transaction with the new epoch, so its markers fence the old producer on every
    /// partition it touched.
    fn fence(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        metadata: &mut TxnMetadata,
        now_ms: i64,
    ) -> Result<()> {
        metadata.epoch = metadata.epoch.saturating_add(1);
        if metadata.state == TxnState::Ongoing {
            *metadata = self.finish(broker, inner, metadata.clone(), false, now_ms)?;
        }
        if metadata.epoch >= MAX_EPOCH {
            inner.by_producer.remove(&metadata.producer_id);
            metadata.producer_id = inner.ids.allocate(&self.store)?;
            metadata.epoch = 0;
        }
        Ok(())
    }

    /// Ends a transaction: decision made durable, markers written, record completed.
    /// Returns the completed record (already saved).
    fn finish(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        mut metadata: TxnMetadata,
        commit: bool,
        now_ms: i64,
    ) -> Result<TxnMetadata> {
        metadata.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.save(inner, metadata.clone())?;
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
        self.save(inner, metadata.clone())?;
        Ok(metadata)
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
        let mut metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        for (topic, index) in partitions {
            broker.partition(topic, *index)?;
        }
        Self::begin(&mut metadata, now_ms)?;
        metadata.partitions.extend(partitions.iter().cloned());
        self.save(&mut inner, metadata)
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now_ms: i64,
    ) -> Result<()> {
        if self.offset_sink().is_none() {
            return Err(ProducerError::CoordinatorNotAvailable("no group coordinator").into());
        }
        let mut inner = self.lock();
        let mut metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        Self::begin(&mut metadata, now_ms)?;
        metadata.offsets.entry(group.to_string()).or_default();
        self.save(&mut inner, metadata)
    }

    /// TxnOffsetCommit: stages offsets for a group added with AddOffsetsToTxn.
    pub fn stage_offsets(
        &self,
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
        self.save(&mut inner, metadata)
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
        let metadata = Self::checked(&inner, transactional_id, producer_id, epoch)?;
        match (metadata.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of an EndTxn that already completed, or an empty transaction.
            (TxnState::CompleteCommit, true)
            | (TxnState::CompleteAbort, false)
            | (TxnState::Empty, _) => return Ok(()),
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                return Err(ProducerError::ConcurrentTransactions.into());
            }
            _ => return Err(ProducerError::InvalidTxnState("ended the other way").into()),
        }
        self.finish(broker, &mut inner, metadata, commit, now_ms)?;
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
                    let commit = metadata.state == TxnState::PrepareCommit;
                    self.finish(broker, &mut inner, metadata, commit, now_ms)
                        .map(drop)
                }
                _ => {
                    tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                    self.fence(broker, &mut inner, &mut metadata, now_ms)
                        .and_then(|()| self.save(&mut inner, metadata))
                }
            };
            if let Err(error) = result {
                tracing::error!(transactional_id = %id, %error, "finishing a transaction failed; will retry");
            }
        }
    }

    /// Persists, then publishes in memory.
    fn save(&self, inner: &mut Inner, metadata: TxnMetadata) -> Result<()> {
        self.store.put_transaction(&metadata)?;
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
/// was added is skipped: nobody can read it any more.
fn write_markers(
    broker: &Broker,
    metadata: &TxnMetadata,
    marker: Marker,
    now_ms: i64,
) -> Result<()> {
    for (topic, index) in &metadata.partitions {
        let partition = match broker.partition(topic, *index) {
            Ok(partition) => partition,
            Err(BrokerError::UnknownTopicOrPartition(_)) => continue,
            Err(error) => return Err(error),
        };
        partition.append_marker(metadata.producer_id, metadata.epoch, marker, now_ms)?;
    }
    Ok(())
}
