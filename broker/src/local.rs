//! `LocalLog`: the in-process handle to the log — append, read and subscribe without a network
//! hop. Services use it on the embedded deployment; it is the same core the Kafka handlers use,
//! so what a service appends is what a Kafka consumer fetches.

use crate::broker::Broker;
use crate::error::Result;
use commerce_storage::{AppendInfo, LogRead};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct LocalLog {
    broker: Arc<Broker>,
}

impl LocalLog {
    pub fn new(broker: Arc<Broker>) -> LocalLog {
        LocalLog { broker }
    }

    /// Appends wire-format v2 record batches; offsets are assigned in place.
    pub fn append(&self, topic: &str, partition: i32, batches: &mut [u8]) -> Result<AppendInfo> {
        self.broker.partition(topic, partition)?.append(batches)
    }

    /// Committed batches starting at the one containing `offset`, at most `max_bytes` (but at
    /// least one whole batch).
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<LogRead> {
        self.broker
            .partition(topic, partition)?
            .read(offset, max_bytes, true)
    }

    /// A receiver of the partition's log end, which changes after every append.
    pub fn subscribe(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>> {
        Ok(self.broker.partition(topic, partition)?.subscribe())
    }

    /// Waits until the partition holds a record at `offset` (its log end is past it).
    pub async fn wait_for(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let mut end = self.subscribe(topic, partition)?;
        // An error means the partition was deleted; the caller learns it on its next read.
        let _ = end.wait_for(|end| *end > offset).await;
        Ok(())
    }

    /// Creates the topic with the node's defaults unless it exists.
    pub fn ensure_topic(&self, topic: &str) -> Result<()> {
        self.broker.ensure_topic(topic).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::BrokerConfig;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{Record, RecordBatchDecoder};

    fn batch(values: &[&str]) -> BytesMut {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                crate::record_batch::plain_record(
                    i as i64,
                    1_700_000_000_000,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(value.to_string())),
                )
            })
            .collect();
        crate::record_batch::encode_uncompressed(&records).unwrap()
    }

    #[tokio::test]
    async fn appended_batches_read_back_and_wake_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            BrokerConfig::single_node(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        let broker = Broker::open(config).unwrap();
        let log = LocalLog::new(broker);
        log.ensure_topic("events").unwrap();
        let mut end = log.subscribe("events", 0).unwrap();

        let first = log.append("events", 0, &mut batch(&["a", "b"])).unwrap();
        let second = log.append("events", 0, &mut batch(&["c"])).unwrap();
        assert_eq!((first.base_offset, first.last_offset), (0, 1));
        assert_eq!((second.base_offset, second.last_offset), (2, 2));
        assert!(end.has_changed().unwrap());
        assert_eq!(*end.borrow_and_update(), 3);

        let mut bytes = log.read("events", 0, 0, 1 << 20).unwrap().bytes;
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        let values: Vec<(i64, Bytes)> = sets
            .iter()
            .flat_map(|set| set.records.iter())
            .map(|record| (record.offset, record.value.clone().unwrap()))
            .collect();
        assert_eq!(
            values,
            vec![
                (0, Bytes::from("a")),
                (1, Bytes::from("b")),
                (2, Bytes::from("c"))
            ]
        );
        log.wait_for("events", 0, 2).await.unwrap();
        assert!(log.append("missing", 0, &mut batch(&["x"])).is_err());
    }
}
