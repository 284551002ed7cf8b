//! Consumer offsets sent to a transaction, in a cluster, the way Kafka does it: the group's
//! coordinator and the transaction's are generally different nodes.
//!
//! - AddOffsetsToTxn (transaction coordinator) adds the group's `__consumer_offsets`
//!   partition to the transaction, so its marker is written there too.
//! - TxnOffsetCommit (group coordinator) writes the offsets into that partition as a
//!   transactional batch of the producer, replicated like any, and stages them.
//! - The marker, whoever proposed it, is applied by every replica of the partition; the
//!   state machine tells the coordinator ([`GroupCoordinator::marker_observer`]), and a
//!   commit makes the staged offsets the group's. A queue in between keeps Raft's apply
//!   path from waiting for the coordinator's lock: the queue is drained whenever the lock
//!   is taken, so nothing reads the offsets before the markers applied so far.
//! - A node taking over the partition replays it: transactional offsets are staged, and a
//!   marker after them commits or drops them, exactly as applied live. Markers the replay
//!   covered are skipped when drained from the queue.
//!
//! On one node the transaction coordinator keeps staged offsets itself and hands them to
//! the group coordinator on commit (`txn_sink`).

use super::commit::{self, Accepted, PartitionCommit};
use super::offsets::{CommittedOffset, Key};
use super::{GroupCoordinator, Inner, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::record_batch;
use crate::replication::MarkerObserver;
use kafka_protocol::ResponseError;
use kafka_protocol::records::Record;
use std::collections::HashMap;
use std::sync::Arc;

/// A transaction marker applied in offsets partition `partition`, queued for the
/// coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AppliedMarker {
    pub partition: i32,
    pub producer_id: i64,
    pub commit: bool,
    pub offset: i64,
}

/// One partition's offset, staged by a transaction until its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StagedOffset {
    /// The offsets partition it was written to, and where.
    pub partition: i32,
    pub log_offset: i64,
    pub group: String,
    pub offset: Accepted,
}

/// Staged offsets by producer id.
#[derive(Debug, Default)]
pub(super) struct PendingTxnOffsets {
    by_producer: HashMap<i64, Vec<StagedOffset>>,
}

impl PendingTxnOffsets {
    pub fn stage(&mut self, producer_id: i64, staged: StagedOffset) {
        self.by_producer
            .entry(producer_id)
            .or_default()
            .push(staged);
    }

    /// What the marker of `producer_id` at `marker_offset` in offsets partition
    /// `partition` ends: the offsets staged there before it, in the order staged.
    pub fn end(
        &mut self,
        partition: i32,
        producer_id: i64,
        marker_offset: i64,
    ) -> Vec<StagedOffset> {
        let Some(staged) = self.by_producer.get_mut(&producer_id) else {
            return Vec::new();
        };
        let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(staged)
            .into_iter()
            .partition(|s| s.partition == partition && s.log_offset < marker_offset);
        *staged = kept;
        if staged.is_empty() {
            self.by_producer.remove(&producer_id);
        }
        ended
    }

    /// Drops what was staged in `partition` (another node coordinates it now).
    pub fn forget(&mut self, partition: i32) {
        for staged in self.by_producer.values_mut() {
            staged.retain(|s| s.partition != partition);
        }
        self.by_producer.retain(|_, staged| !staged.is_empty());
    }
}

impl Inner {
    /// A marker applied in an offsets partition: a commit makes what it ends the groups'.
    /// Skipped unless this node coordinates the partition and its load did not cover the
    /// marker already.
    pub(super) fn on_marker(&mut self, marker: AppliedMarker) {
        match self.loaded.get(&marker.partition) {
            Some(replayed_to) if marker.offset >= *replayed_to => {}
            _ => return,
        }
        self.end_transaction(
            marker.partition,
            marker.producer_id,
            marker.commit,
            marker.offset,
        );
    }

    /// Ends `producer_id`'s transaction in offsets partition `partition`.
    pub(super) fn end_transaction(
        &mut self,
        partition: i32,
        producer_id: i64,
        commit: bool,
        at: i64,
    ) {
        let ended = self.pending.end(partition, producer_id, at);
        if !commit {
            return;
        }
        for staged in ended {
            self.apply_offsets(&staged.group, vec![staged.offset]);
        }
    }

    /// A transactional offset record met while replaying `partition`.
    pub(super) fn stage_replayed(&mut self, partition: i32, record: &Record, key: Key) {
        let (
            Key::Offset {
                group,
                topic,
                partition: committed_partition,
            },
            Some(value),
        ) = (key, record.value.clone())
        else {
            return;
        };
        let Some(value) = CommittedOffset::decode(value) else {
            return;
        };
        self.pending.stage(
            record.producer_id,
            StagedOffset {
                partition,
                log_offset: record.offset,
                group,
                offset: ((topic, committed_partition), value),
            },
        );
    }
}

impl GroupCoordinator {
    /// What an offsets partition's state machine calls for each marker it applies.
    pub fn marker_observer(&self, partition: i32) -> MarkerObserver {
        let queue = Arc::clone(&self.markers);
        Arc::new(move |producer_id, commit, offset| {
            queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(AppliedMarker {
                    partition,
                    producer_id,
                    commit,
                    offset,
                });
        })
    }

    /// TxnOffsetCommit in a cluster: writes the offsets into the group's offsets partition
    /// as `producer_id`'s transactional batch and stages them until its marker. One
    /// result per partition, in request order.
    pub fn stage_transactional(
        &self,
        broker: &Broker,
        group_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        offsets: &[PartitionCommit],
    ) -> Vec<Option<ResponseError>> {
        if let Err(error) = self.owns(broker, group_id) {
            return vec![Some(error); offsets.len()];
        }
        let Some(replication) = broker.replication() else {
            return vec![Some(ResponseError::CoordinatorNotAvailable); offsets.len()];
        };
        let mut inner = self.lock();
        let (results, accepted) = commit::accepted(broker, offsets);
        if accepted.is_empty() {
            return results;
        }
        let index = Self::partition_of(group_id);
        let written =
            staged_batch(group_id, (producer_id, producer_epoch), &accepted).and_then(|batch| {
                replication.propose_to_partition(broker, OFFSETS_TOPIC, index, batch.to_vec())
            });
        let base_offset = match written {
            Ok((base_offset, _)) => base_offset,
            Err(error) => {
                tracing::error!(group = %group_id, %error, "cannot stage transactional offsets");
                return commit::unavailable(results);
            }
        };
        for (i, offset) in accepted.into_iter().enumerate() {
            inner.pending.stage(
                producer_id,
                StagedOffset {
                    partition: index,
                    log_offset: base_offset + i64::try_from(i).unwrap_or(0),
                    group: group_id.to_string(),
                    offset,
                },
            );
        }
        results
    }
}

/// The offsets as `producer`'s transactional batch: one batch, as a Raft entry must be.
fn staged_batch(
    group_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    accepted: &[Accepted],
) -> crate::error::Result<bytes::BytesMut> {
    let timestamp = super::now_ms();
    let records: Vec<Record> = accepted
        .iter()
        .enumerate()
        .map(|(i, (partition, value))| Record {
            transactional: true,
            producer_id,
            producer_epoch,
            // The encoder keeps a producer's records in one batch only while their
            // sequences follow on; nothing checks them (the coordinator writes these).
            sequence: i32::try_from(i).unwrap_or(i32::MAX),
            ..record_batch::plain_record(
                i64::try_from(i).unwrap_or(0),
                timestamp,
                Some(commit::offset_key(group_id, partition).encode()),
                Some(value.encode()),
            )
        })
        .collect();
    record_batch::encode_uncompressed(&records)
        .map_err(|error| crate::error::BrokerError::Metadata(error.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn staged(partition: i32, log_offset: i64, offset: i64) -> StagedOffset {
        StagedOffset {
            partition,
            log_offset,
            group: "g".to_string(),
            offset: (
                ("in".to_string(), 0),
                CommittedOffset {
                    offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: 0,
                },
            ),
        }
    }

    #[test]
    fn a_marker_ends_only_what_its_producer_staged_before_it_in_its_partition() {
        let mut pending = PendingTxnOffsets::default();
        pending.stage(7, staged(1, 10, 100));
        pending.stage(7, staged(2, 10, 200));
        pending.stage(8, staged(1, 11, 300));
        pending.stage(7, staged(1, 20, 400));
        let ended = pending.end(1, 7, 15);
        assert_eq!(ended, vec![staged(1, 10, 100)]);
        // Producer 8's offsets and producer 7's in another partition or after the marker stay.
        assert_eq!(pending.end(1, 8, 12), vec![staged(1, 11, 300)]);
        assert_eq!(pending.end(1, 7, 25), vec![staged(1, 20, 400)]);
        pending.forget(2);
        assert!(pending.end(2, 7, 99).is_empty());
        assert!(pending.by_producer.is_empty());
    }

    #[test]
    fn a_commit_applies_staged_offsets_and_an_abort_drops_them() {
        let mut inner = Inner::default();
        inner.loaded.insert(1, 5);
        inner.pending.stage(7, staged(1, 10, 100));
        inner.pending.stage(9, staged(1, 11, 900));
        inner.on_marker(AppliedMarker {
            partition: 1,
            producer_id: 9,
            commit: false,
            offset: 12,
        });
        inner.on_marker(AppliedMarker {
            partition: 1,
            producer_id: 7,
            commit: true,
            offset: 13,
        });
        let committed = inner.offsets.get("g").unwrap();
        assert_eq!(committed.get(&("in".to_string(), 0)).unwrap().offset, 100);
        // A marker the load already covered, or of a partition not coordinated here, does nothing.
        inner.pending.stage(7, staged(1, 3, 50));
        inner.on_marker(AppliedMarker {
            partition: 1,
            producer_id: 7,
            commit: true,
            offset: 4,
        });
        inner.pending.stage(7, staged(2, 3, 60));
        inner.on_marker(AppliedMarker {
            partition: 2,
            producer_id: 7,
            commit: true,
            offset: 4,
        });
        let committed = inner.offsets.get("g").unwrap();
        assert_eq!(committed.get(&("in".to_string(), 0)).unwrap().offset, 100);
    }

    /// A transactional offsets batch as the group coordinator writes it.
    fn one_staged_batch(producer_id: i64, offset: i64) -> bytes::BytesMut {
        staged_batch("g", (producer_id, 0), &[staged(0, 0, offset).offset]).unwrap()
    }

    #[test]
    fn staged_offsets_of_several_partitions_are_one_transactional_batch() {
        let accepted: Vec<Accepted> = (0..3)
            .map(|partition| {
                let mut offset = staged(0, 0, 10).offset;
                offset.0.1 = partition;
                offset
            })
            .collect();
        let batch = staged_batch("g", (7, 2), &accepted).unwrap();
        let batches: Vec<&[u8]> = crate::producer::partition_state::batches(&batch).collect();
        assert_eq!(batches.len(), 1, "a Raft entry holds exactly one batch");
        let header = crate::producer::batch_header::ProducerBatch::parse(batches[0]).unwrap();
        assert!(header.transactional && !header.control);
        assert_eq!((header.producer_id, header.producer_epoch), (7, 2));
        assert_eq!(header.last_offset_delta, 2);
    }

    #[test]
    fn a_replay_commits_what_a_commit_marker_ends_and_keeps_open_transactions_staged() {
        use crate::producer::batch_header::Marker;
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig::single_node(
            dir.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
        );
        let broker = Broker::open(config).unwrap();
        let topic = broker.groups().offsets_topic(&broker).unwrap();
        let partition = topic.partition(0).unwrap();
        let log = partition.log();
        // Producer 7 commits offset 100, producer 8 aborts 200, producer 9 is still open
        // with 300; the abort comes last, so 100 must stay committed.
        log.append(&mut one_staged_batch(7, 100), 0).unwrap();
        log.append(&mut one_staged_batch(8, 200), 0).unwrap();
        partition.append_marker(7, 0, Marker::Commit, 0).unwrap();
        log.append(&mut one_staged_batch(9, 300), 0).unwrap();
        partition.append_marker(8, 0, Marker::Abort, 0).unwrap();

        let mut inner = Inner::default();
        let (_, replayed_to) = super::super::store::replay(&mut inner, partition).unwrap();
        assert_eq!(replayed_to, 5);
        let committed = inner.offsets.get("g").unwrap();
        assert_eq!(committed.get(&("in".to_string(), 0)).unwrap().offset, 100);
        // Producer 9's offsets wait for its marker, which a live commit then applies.
        inner.loaded.insert(0, replayed_to);
        inner.on_marker(AppliedMarker {
            partition: 0,
            producer_id: 9,
            commit: true,
            offset: 5,
        });
        let committed = inner.offsets.get("g").unwrap();
        assert_eq!(committed.get(&("in".to_string(), 0)).unwrap().offset, 300);
    }
}
