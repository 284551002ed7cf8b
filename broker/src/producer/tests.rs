//! The producer layer driven through a real `Broker` on a temporary directory: duplicates
//! recognised after a reopen, transactional produce checks, offsets reaching the sink only
//! on commit, and the last stable offset moving with markers.

#![allow(clippy::unwrap_used)]

use super::batch_header::Marker;
use super::coordinator::TxnState;
use super::store::ProducerStore;
use super::{ProducerError, TxnOffset, TxnOffsetSink};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::record_batch;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Record;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn open(dir: &Path) -> Arc<Broker> {
    let config = BrokerConfig::single_node(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    Broker::open(config).unwrap()
}

/// One batch of `count` records from a producer.
fn batch(producer_id: i64, epoch: i16, sequence: i32, count: i32, transactional: bool) -> BytesMut {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            producer_id,
            producer_epoch: epoch,
            sequence: sequence + i,
            ..record_batch::plain_record(
                i64::from(i),
                1_700_000_000_000,
                None,
                Some(Bytes::from(format!("v{}", sequence + i))),
            )
        })
        .collect();
    record_batch::encode_uncompressed(&records).unwrap()
}

fn producer_error(result: Result<impl std::fmt::Debug, BrokerError>) -> ProducerError {
    match result {
        Err(BrokerError::Producer(error)) => error,
        other => panic!("expected a producer error, got {other:?}"),
    }
}

#[test]
fn a_retry_is_answered_with_the_stored_offsets_even_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.ensure_topic("events").unwrap();
    let (producer_id, epoch) = broker.transactions.init_idempotent(-1, -1).unwrap();
    let partition = broker.partition("events", 0).unwrap();
    let first = partition
        .append(&mut batch(producer_id, epoch, 0, 3, false))
        .unwrap();
    let second = partition
        .append(&mut batch(producer_id, epoch, 3, 2, false))
        .unwrap();
    let retry = partition
        .append(&mut batch(producer_id, epoch, 0, 3, false))
        .unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(partition.high_watermark(), 5);
    drop(partition);
    broker.close();
    drop(broker);

    let broker = open(dir.path());
    let partition = broker.partition("events", 0).unwrap();
    let retry = partition
        .append(&mut batch(producer_id, epoch, 3, 2, false))
        .unwrap();
    assert_eq!(retry.base_offset, second.base_offset);
    assert!(matches!(
        producer_error(partition.append(&mut batch(producer_id, epoch, 9, 1, false))),
        ProducerError::OutOfOrderSequence {
            expected: 5,
            got: 9
        }
    ));
    partition
        .append(&mut batch(producer_id, epoch, 5, 1, false))
        .unwrap();
    assert_eq!(partition.high_watermark(), 6);
    // A fresh id after the reopen is one never handed out before.
    let (next_id, _) = broker.transactions.init_idempotent(-1, -1).unwrap();
    assert!(next_id > producer_id);
}

#[derive(Default)]
struct RecordingSink {
    commits: Mutex<Vec<(String, Vec<TxnOffset>)>>,
}

impl TxnOffsetSink for RecordingSink {
    fn commit_offsets(&self, group: &str, offsets: Vec<TxnOffset>) -> Result<(), String> {
        self.commits
            .lock()
            .unwrap()
            .push((group.to_string(), offsets));
        Ok(())
    }
}

#[test]
fn transactional_offsets_reach_the_sink_only_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.ensure_topic("events").unwrap();
    let coordinator = &broker.transactions;
    let (id, epoch) = coordinator
        .init_transactional(&broker, "relay", 60_000, -1, -1, 0)
        .unwrap();
    // Broker::open plugs in the group coordinator; a recording sink replaces it here.
    let sink = Arc::new(RecordingSink::default());
    coordinator.set_offset_sink(sink.clone());

    let offset: TxnOffset = ("events".to_string(), 0, 42, None);
    coordinator
        .add_offsets(&broker, "relay", id, epoch, "billing", 0)
        .unwrap();
    coordinator
        .stage_offsets(&broker, "relay", id, epoch, "billing", vec![offset.clone()])
        .unwrap();
    coordinator
        .end(&broker, "relay", id, epoch, false, 0)
        .unwrap();
    assert!(
        sink.commits.lock().unwrap().is_empty(),
        "an abort commits nothing"
    );

    coordinator
        .add_offsets(&broker, "relay", id, epoch, "billing", 0)
        .unwrap();
    coordinator
        .stage_offsets(&broker, "relay", id, epoch, "billing", vec![offset.clone()])
        .unwrap();
    coordinator
        .end(&broker, "relay", id, epoch, true, 0)
        .unwrap();
    assert_eq!(
        *sink.commits.lock().unwrap(),
        vec![("billing".to_string(), vec![offset])]
    );
    // Staging for a group not added to a transaction is refused.
    assert!(matches!(
        producer_error(coordinator.stage_offsets(&broker, "relay", id, epoch, "other", vec![])),
        ProducerError::InvalidTxnState(_)
    ));
}

#[test]
fn transactional_batches_need_their_partition_in_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.ensure_topic("events").unwrap();
    let coordinator = &broker.transactions;
    let (id, epoch) = coordinator
        .init_transactional(&broker, "relay", 60_000, -1, -1, 0)
        .unwrap();
    assert!(matches!(
        coordinator.check_produce(id, epoch, "events", 0),
        Err(ProducerError::InvalidTxnState(_))
    ));
    let partitions = [("events".to_string(), 0)];
    coordinator
        .add_partitions(&broker, "relay", id, epoch, &partitions, 0)
        .unwrap();
    coordinator.check_produce(id, epoch, "events", 0).unwrap();
    assert!(coordinator.check_produce(id, epoch, "events", 1).is_err());

    // Data at 0..2 holds the LSO at 0 until the commit marker (offset 2).
    let partition = broker.partition("events", 0).unwrap();
    partition.append(&mut batch(id, epoch, 0, 2, true)).unwrap();
    assert_eq!(partition.last_stable_offset(), 0);
    coordinator
        .end(&broker, "relay", id, epoch, true, 0)
        .unwrap();
    assert_eq!(partition.last_stable_offset(), 3);

    // A newer instance fences this one: its transactional calls and produce are refused.
    let (new_id, new_epoch) = coordinator
        .init_transactional(&broker, "relay", 60_000, -1, -1, 0)
        .unwrap();
    assert_eq!((new_id, new_epoch), (id, epoch + 1));
    assert!(matches!(
        producer_error(coordinator.add_partitions(&broker, "relay", id, epoch, &partitions, 0)),
        ProducerError::ProducerFenced
    ));
    assert_eq!(
        coordinator.check_produce(id, epoch, "events", 0),
        Err(ProducerError::InvalidProducerEpoch)
    );
}

#[test]
fn an_expired_transaction_is_aborted_and_listed_for_read_committed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.ensure_topic("events").unwrap();
    let coordinator = &broker.transactions;
    let (id, epoch) = coordinator
        .init_transactional(&broker, "relay", 1_000, -1, -1, 0)
        .unwrap();
    let partitions = [("events".to_string(), 0)];
    coordinator
        .add_partitions(&broker, "relay", id, epoch, &partitions, 10_000)
        .unwrap();
    let partition = broker.partition("events", 0).unwrap();
    partition.append(&mut batch(id, epoch, 0, 2, true)).unwrap();
    coordinator.tick(&broker, 10_500);
    assert_eq!(partition.last_stable_offset(), 0, "not expired yet");
    coordinator.tick(&broker, 11_001);
    assert_eq!(partition.last_stable_offset(), 3);
    let aborted: Vec<(i64, i64)> = partition
        .aborted_between(0, 3)
        .iter()
        .map(|txn| (txn.producer_id, txn.first_offset))
        .collect();
    assert_eq!(aborted, vec![(id, 0)]);
    // The marker was written with a bumped epoch: the abandoned producer is fenced.
    assert!(partition.append(&mut batch(id, epoch, 2, 1, true)).is_err());
}

#[test]
fn a_commit_decided_before_a_crash_is_completed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The crash came after PrepareCommit was stored and before any marker was written.
    let (id, epoch) = decided_but_not_completed(dir.path(), TxnState::PrepareCommit);
    let broker = open(dir.path());
    let partition = broker.partition("events", 0).unwrap();
    assert_eq!(partition.last_stable_offset(), 0);
    broker.transactions.tick(&broker, 0);
    assert_eq!(partition.last_stable_offset(), 3);
    assert!(
        partition.aborted_between(0, 3).is_empty(),
        "committed, not aborted"
    );
    // The client's retried EndTxn finds it done.
    broker
        .transactions
        .end(&broker, "relay", id, epoch, true, 0)
        .unwrap();
}

/// Writes a Prepare record for `relay` as a crash (or a failed marker) would leave it,
/// after the producer wrote two records in the transaction. Returns the producer.
fn decided_but_not_completed(dir: &std::path::Path, state: TxnState) -> (i64, i16) {
    let (id, epoch) = {
        let broker = open(dir);
        broker.ensure_topic("events").unwrap();
        let coordinator = &broker.transactions;
        let (id, epoch) = coordinator
            .init_transactional(&broker, "relay", 60_000, -1, -1, 0)
            .unwrap();
        let partitions = [("events".to_string(), 0)];
        coordinator
            .add_partitions(&broker, "relay", id, epoch, &partitions, 0)
            .unwrap();
        let partition = broker.partition("events", 0).unwrap();
        partition.append(&mut batch(id, epoch, 0, 2, true)).unwrap();
        broker.close();
        (id, epoch)
    };
    let store = ProducerStore::open(&dir.join("producers.redb")).unwrap();
    let mut record = store.transactions().unwrap().pop().unwrap();
    record.state = state;
    store.put_transaction(&record).unwrap();
    (id, epoch)
}

#[test]
fn a_retried_end_txn_completes_a_decided_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (id, epoch) = decided_but_not_completed(dir.path(), TxnState::PrepareCommit);
    let broker = open(dir.path());
    let partition = broker.partition("events", 0).unwrap();
    assert_eq!(partition.last_stable_offset(), 0);
    broker
        .transactions
        .end(&broker, "relay", id, epoch, true, 0)
        .unwrap();
    assert_eq!(partition.last_stable_offset(), 3);
    assert!(partition.aborted_between(0, 3).is_empty());
}

#[test]
fn a_new_instance_completes_a_decided_abort_before_fencing() {
    // The old instance's EndTxn(abort) was decided but its markers not written. A new
    // instance must not bump the epoch past it: the transaction would stay open, and the
    // new instance's next commit marker would commit the aborted records.
    let dir = tempfile::tempdir().unwrap();
    let (id, epoch) = decided_but_not_completed(dir.path(), TxnState::PrepareAbort);
    let broker = open(dir.path());
    let partition = broker.partition("events", 0).unwrap();
    let (new_id, new_epoch) = broker
        .transactions
        .init_transactional(&broker, "relay", 60_000, -1, -1, 0)
        .unwrap();
    assert_eq!((new_id, new_epoch), (id, epoch + 1));
    assert_eq!(
        partition.last_stable_offset(),
        3,
        "the abort marker is written"
    );
    assert_eq!(partition.aborted_between(0, 3).len(), 1, "as an abort");
}

#[test]
fn state_is_recovered_from_a_snapshot_plus_the_batches_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let idempotent = {
        let broker = open(dir.path());
        broker.ensure_topic("events").unwrap();
        let (idempotent, _) = broker.transactions.init_idempotent(-1, -1).unwrap();
        let (transactional, epoch) = broker
            .transactions
            .init_transactional(&broker, "relay", 60_000, -1, -1, 0)
            .unwrap();
        let partition = broker.partition("events", 0).unwrap();
        partition
            .append(&mut batch(idempotent, 0, 0, 2, false))
            .unwrap();
        partition.write_producer_snapshot().unwrap();
        // After the snapshot: more data, and a transaction opened at offset 4.
        partition
            .append(&mut batch(idempotent, 0, 2, 2, false))
            .unwrap();
        partition
            .append(&mut batch(transactional, epoch, 0, 1, true))
            .unwrap();
        // No close: the snapshot stays behind the log end.
        idempotent
    };
    let snapshot = dir
        .path()
        .join("topics/events-0")
        .join("producer-state.json");
    assert!(snapshot.exists());

    let broker = open(dir.path());
    assert!(!snapshot.exists(), "a loaded snapshot is removed");
    let partition = broker.partition("events", 0).unwrap();
    let before = partition
        .append(&mut batch(idempotent, 0, 0, 2, false))
        .unwrap();
    let after = partition
        .append(&mut batch(idempotent, 0, 2, 2, false))
        .unwrap();
    assert_eq!((before.base_offset, after.base_offset), (0, 2));
    assert_eq!(partition.last_stable_offset(), 4);
    assert_eq!(partition.high_watermark(), 5);
}

#[test]
fn client_markers_and_multi_batch_idempotent_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.ensure_topic("events").unwrap();
    let (id, epoch) = broker.transactions.init_idempotent(-1, -1).unwrap();
    let partition = broker.partition("events", 0).unwrap();

    let mut two = batch(id, epoch, 0, 1, false);
    two.extend_from_slice(&batch(id, epoch, 1, 1, false));
    assert_eq!(
        producer_error(partition.append(&mut two)),
        ProducerError::InvalidRecord
    );
    let mut marker = super::marker::marker_batch(id, epoch, Marker::Commit, 0).unwrap();
    assert_eq!(
        producer_error(partition.append(&mut marker)),
        ProducerError::InvalidRecord
    );
    assert_eq!(partition.high_watermark(), 0);
    // The refused requests left no trace: the producer still starts at sequence 0.
    partition
        .append(&mut batch(id, epoch, 0, 1, false))
        .unwrap();
    assert_eq!(partition.high_watermark(), 1);
}
