//! The transaction coordinator's records in a cluster: the internal topic
//! `__transaction_state`, as in Kafka. A transactional id belongs to one partition (Kafka's
//! hash of the id) and is coordinated by that partition's leader. Every change of its
//! record is appended there (key: the transactional id; value: the record as JSON) and is
//! durable once a majority has it; a node that starts leading the partition replays it,
//! the last record of each id winning.
//!
//! On one node the records stay in the producer store (`store.rs`), which overwrites in
//! place; partition groups are not compacted yet, so this topic grows with every
//! transaction in a cluster, as `__consumer_offsets` does.

use super::txn_metadata::TxnMetadata;
use crate::broker::{Broker, Topic};
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::record_batch;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

pub const TXN_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's default is 50; 8 spreads coordinators over a small cluster as well and keeps
/// the number of Raft groups (and the take-over replays) small.
pub const TXN_STATE_PARTITIONS: i32 = 8;

/// The `__transaction_state` partition of `transactional_id`.
pub fn partition_of(transactional_id: &str) -> i32 {
    crate::group::offsets::partition_for(transactional_id, TXN_STATE_PARTITIONS)
}

/// The topic, created on first need.
pub fn topic(broker: &Broker) -> Result<Arc<Topic>> {
    broker.internal_topic(TXN_STATE_TOPIC, TXN_STATE_PARTITIONS)
}

/// Appends `metadata` to its partition; returns once a majority has it. Only the
/// partition's leader can, so a node that lost the partition cannot overwrite its state.
pub fn append(broker: &Broker, metadata: &TxnMetadata) -> Result<()> {
    let topic = topic(broker)?;
    let index = partition_of(&metadata.transactional_id);
    let partition = topic
        .partition(index)
        .ok_or_else(|| BrokerError::NotLeaderOrFollower(format!("{TXN_STATE_TOPIC}-{index}")))?;
    let value = serde_json::to_vec(metadata)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        });
    let record = record_batch::plain_record(
        0,
        now_ms,
        Some(Bytes::copy_from_slice(metadata.transactional_id.as_bytes())),
        Some(Bytes::from(value)),
    );
    let mut batch = record_batch::encode_uncompressed(std::slice::from_ref(&record))
        .map_err(|error| BrokerError::Metadata(format!("cannot encode a transaction: {error}")))?;
    partition.append(&mut batch)?;
    Ok(())
}

/// The last record of every transactional id in `partition`.
pub fn replay(partition: &Partition) -> Result<Vec<TxnMetadata>> {
    let mut latest: HashMap<String, TxnMetadata> = HashMap::new();
    crate::log_replay::replay_records(partition, |record| {
        let Some(value) = record.value.filter(|_| !record.control) else {
            return;
        };
        match serde_json::from_slice::<TxnMetadata>(&value) {
            Ok(metadata) => {
                latest.insert(metadata.transactional_id.clone(), metadata);
            }
            Err(error) => tracing::error!(
                partition = partition.index,
                %error,
                "skipping an unreadable {TXN_STATE_TOPIC} record"
            ),
        }
    })?;
    Ok(latest.into_values().collect())
}
