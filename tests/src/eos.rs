//! Exactly-once processing: a consume-transform-produce worker that commits its input
//! offsets inside its transactions (sendOffsetsToTransaction), and the read-back of its output.
//!
//! A [`Worker`] is one instance of the processing: a read_committed group member and a
//! transactional producer; a new instance with the same group and transactional id fences
//! the old one and resumes from the group's committed offsets. Where the group's and the
//! transactional id's coordinators are is [`crate::coordinators`]' business.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::{self, Record, TestConsumer, TestProducer};
use crate::wait_for;

/// How long a worker may take to be initialized, or its output topic to settle.
pub const WAIT: Duration = Duration::from_secs(60);
/// One transactional call: a coordinator's failover fits in it.
const CALL: Duration = Duration::from_secs(30);

/// What a worker reads, writes and commits as.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub bootstrap: String,
    pub input: String,
    pub output: String,
    pub group: String,
    pub transactional_id: String,
    /// Input records per transaction, at most.
    pub per_transaction: usize,
}

/// An input record polled: (partition, offset, value).
type Polled = (i32, i64, String);

/// The output value of input value `value`.
pub fn transformed(value: &str) -> String {
    format!("out-{value}")
}

/// One worker instance: a group member reading the input, a transactional producer.
pub struct Worker {
    consumer: TestConsumer,
    producer: TestProducer,
}

impl Worker {
    /// Subscribes and initializes transactions (fencing any older instance and finishing its
    /// transaction) before the first poll reads the group's offsets; a new producer per
    /// attempt until one initializes within [`WAIT`].
    pub fn start(pipeline: &Pipeline) -> Worker {
        let consumer = kafka::consumer_with(
            &pipeline.bootstrap,
            &[
                ("group.id", &pipeline.group),
                ("isolation.level", "read_committed"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("auto.offset.reset", "earliest"),
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "500"),
                ("max.poll.interval.ms", "20000"),
            ],
        );
        consumer
            .subscribe(&[&pipeline.input])
            .expect("cannot subscribe");
        let deadline = Instant::now() + WAIT;
        loop {
            let producer = kafka::producer(
                &pipeline.bootstrap,
                &[
                    ("transactional.id", &pipeline.transactional_id),
                    ("transaction.timeout.ms", "10000"),
                    ("message.timeout.ms", "10000"),
                    ("request.timeout.ms", "5000"),
                    ("retry.backoff.ms", "100"),
                    ("topic.metadata.refresh.interval.ms", "2000"),
                ],
            );
            match producer.init_transactions(Duration::from_secs(15)) {
                Ok(()) => return Worker { consumer, producer },
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "no worker initialized within {WAIT:?}: {error}"
                    );
                    eprintln!("init_transactions: {error}; a new producer");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// One transaction: up to `per_transaction` input records polled, their transformed
    /// values sent, the consumer's position sent as the group's offsets
    /// (sendOffsetsToTransaction), `midway` (taken), commit. Ok: (partition, offset) of each
    /// input record committed, none when no input came for a few seconds; Err: the
    /// transaction's fate is unknown and the instance must be replaced.
    pub fn process(
        &self,
        pipeline: &Pipeline,
        midway: &mut Option<impl FnOnce()>,
    ) -> Result<Vec<(i32, i64)>, String> {
        let Worker { consumer, producer } = self;
        let polled = poll_some(consumer, pipeline.per_transaction)?;
        if polled.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |call: &'static str| move |error: KafkaError| format!("{call}: {error}");
        producer
            .begin_transaction()
            .map_err(failed("begin_transaction"))?;
        for (_, _, value) in &polled {
            send(producer, &pipeline.output, value)?;
        }
        producer.flush(CALL).map_err(failed("flush"))?;
        let position = consumer.position().map_err(failed("position"))?;
        covers(&position, &pipeline.input, &polled)?;
        let metadata = consumer.group_metadata().ok_or("no group metadata")?;
        producer
            .send_offsets_to_transaction(&position, &metadata, CALL)
            .map_err(failed("send_offsets_to_transaction"))?;
        if let Some(midway) = midway.take() {
            midway();
        }
        producer
            .commit_transaction(CALL)
            .map_err(failed("commit_transaction"))?;
        Ok(polled.into_iter().map(|(p, o, _)| (p, o)).collect())
    }
}

/// Up to `count` records, empty once none came for a few seconds. A partition read again
/// within one batch (a rebalance reset its position) is an error: no batch holds a record
/// twice.
fn poll_some(consumer: &TestConsumer, count: usize) -> Result<Vec<Polled>, String> {
    let mut polled: Vec<Polled> = Vec::new();
    let mut idle_since = Instant::now();
    loop {
        let patience = Duration::from_millis(if polled.is_empty() { 4_000 } else { 300 });
        if polled.len() >= count || idle_since.elapsed() >= patience {
            return Ok(polled);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                if polled
                    .iter()
                    .any(|(p, o, _)| *p == partition && *o >= offset)
                {
                    return Err(format!("partition {partition} read again from {offset}"));
                }
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                polled.push((partition, offset, value.into_owned()));
                idle_since = Instant::now();
            }
            Some(Err(error)) => eprintln!("consumer error: {error}"),
            None => {}
        }
    }
}

/// The position must be right after the last record polled from each partition (not so
/// after a rebalance reset it): else the offsets sent would not match the output.
fn covers(position: &TopicPartitionList, input: &str, polled: &[Polled]) -> Result<(), String> {
    let last: BTreeMap<i32, i64> = polled.iter().map(|(p, o, _)| (*p, *o)).collect();
    for (partition, offset) in last {
        let at = position
            .find_partition(input, partition)
            .map(|e| e.offset());
        if at != Some(Offset::Offset(offset + 1)) {
            return Err(format!("position {at:?} of {partition} after {offset}"));
        }
    }
    Ok(())
}

/// Sends `value` transformed, keyed by `value`, waiting while the local queue is full.
fn send(producer: &TestProducer, output: &str, value: &str) -> Result<(), String> {
    let payload = transformed(value);
    let mut record = BaseRecord::<str, str>::to(output)
        .key(value)
        .payload(&payload);
    let deadline = Instant::now() + CALL;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if Instant::now() < deadline =>
            {
                record = returned;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => return Err(format!("send {payload}: {error}")),
        }
    }
}

/// Every record of `partitions` of `topic` read with read_committed, once no transaction is
/// open there any more (each partition's last stable offset at its high watermark).
pub fn read_stable(bootstrap: &str, topic: &str, partitions: &[i32]) -> Vec<Record> {
    let isolation = |level| kafka::consumer_with(bootstrap, &[("isolation.level", level)]);
    let (committed, uncommitted) = (isolation("read_committed"), isolation("read_uncommitted"));
    for partition in partitions {
        let end = |consumer: &TestConsumer| {
            let watermarks = consumer.fetch_watermarks(topic, *partition, kafka::REQUEST_TIMEOUT);
            watermarks.map(|(_, high)| high).ok()
        };
        let what = format!("{topic}-{partition}: the last stable offset at the high watermark");
        wait_for(&what, WAIT, || {
            let stable = end(&committed);
            (stable.is_some() && stable == end(&uncommitted)).then_some(())
        });
    }
    let isolation = [("isolation.level", "read_committed")];
    kafka::read_all_with(bootstrap, topic, partitions, WAIT, &isolation)
}
