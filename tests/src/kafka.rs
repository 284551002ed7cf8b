//! rdkafka clients wired for tests.
//!
//! Every client uses [`TestContext`], which prints librdkafka's warnings and errors to the
//! test's stderr (shown when the test fails) and, for producers, records the fate of every
//! record: acknowledged (with its partition and offset) or failed. A producer made with
//! [`platform_producer`] also signs what it sends as the services' relays do, so the
//! services apply it (a plain [`producer`] writes what any outsider could, which they refuse).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::node::Node;
use crate::record_signing::{self, RecordKey};

/// Timeout for one admin, metadata or offsets request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A record as stored: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn of(message: &impl Message) -> Record {
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp: message.timestamp().to_millis(),
        }
    }

    pub fn key_str(&self) -> &str {
        self.key
            .as_deref()
            .map(|key| std::str::from_utf8(key).expect("test keys are UTF-8"))
            .unwrap_or("")
    }

    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).expect("test values are UTF-8")
    }
}

/// Client context: logs librdkafka's complaints, records deliveries.
#[derive(Default)]
pub struct TestContext {
    acked: Mutex<Vec<Record>>,
    failed: Mutex<Vec<String>>,
    /// Set for a [`platform_producer`]: `send` signs every record with it.
    record_key: Option<RecordKey>,
}

impl TestContext {
    /// Records acknowledged so far, in acknowledgement order.
    pub fn acked(&self) -> Vec<Record> {
        self.acked.lock().expect("poisoned").clone()
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("poisoned").len()
    }

    /// Delivery failures so far.
    pub fn failed(&self) -> Vec<String> {
        self.failed.lock().expect("poisoned").clone()
    }
}

impl ClientContext for TestContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32)
            || std::env::var_os("TEST_RDKAFKA_DEBUG").is_some()
        {
            eprintln!("librdkafka {level:?} {fac}: {log_message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Partition ends are expected (read_all relies on them), not worth a line each.
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ConsumerContext for TestContext {}

impl ProducerContext for TestContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => self
                .acked
                .lock()
                .expect("poisoned")
                .push(Record::of(message)),
            Err((error, message)) => self.failed.lock().expect("poisoned").push(format!(
                "{error} (partition {}, key {:?})",
                message.partition(),
                message.key().map(String::from_utf8_lossy)
            )),
        }
    }
}

pub type TestProducer = ThreadedProducer<TestContext>;
pub type TestConsumer = BaseConsumer<TestContext>;
pub type TestAdmin = AdminClient<TestContext>;

/// Base configuration: the node, IPv4, and `TEST_RDKAFKA_DEBUG=<contexts>` passed through
/// as librdkafka's `debug` for investigating a failure.
pub fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    if let Ok(debug) = std::env::var("TEST_RDKAFKA_DEBUG") {
        config.set("debug", debug);
    }
    config
}

/// A producer with acks=all plus `extra` settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> TestProducer {
    let mut config = config(bootstrap);
    config
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create_with_context(TestContext::default())
        .expect("cannot create a producer")
}

/// A producer like [`producer`] whose records [`send`] signs with `node`'s record key, as
/// the services' relays sign theirs: for tests that drive a service through its topics.
pub fn platform_producer(node: &Node, extra: &[(&str, &str)]) -> TestProducer {
    let mut config = config(&node.bootstrap());
    config
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let context = TestContext {
        record_key: Some(RecordKey::of(node)),
        ..TestContext::default()
    };
    config
        .create_with_context(context)
        .expect("cannot create a producer")
}

/// A consumer outside any group, reporting partition ends.
pub fn consumer(bootstrap: &str) -> TestConsumer {
    consumer_with(bootstrap, &[])
}

/// `consumer` plus `extra` settings (e.g. `isolation.level`).
pub fn consumer_with(bootstrap: &str, extra: &[(&str, &str)]) -> TestConsumer {
    let mut config = config(bootstrap);
    // librdkafka only takes an assignment from a consumer with a group id; no group is
    // joined and nothing is committed.
    config
        .set("group.id", "commerce-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create_with_context(TestContext::default())
        .expect("cannot create a consumer")
}

pub fn admin(bootstrap: &str) -> TestAdmin {
    config(bootstrap)
        .create_with_context(TestContext::default())
        .expect("cannot create an admin client")
}

/// Runs an admin future to completion.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
        .block_on(future)
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates a topic (replication factor 1) and panics unless the broker says it did.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = block_on(admin(bootstrap).create_topics([&topic], &admin_options()))
        .unwrap_or_else(|error| panic!("CreateTopics {name} failed: {error}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("CreateTopics {topic} refused: {code:?} ({code})");
        }
    }
}

/// The value of config `key` of `topic`, by DescribeConfigs.
pub fn topic_config(bootstrap: &str, topic: &str, key: &str) -> Option<String> {
    let results = block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()),
    )
    .unwrap_or_else(|error| panic!("DescribeConfigs {topic} failed: {error}"));
    let resource = results
        .into_iter()
        .next()
        .expect("DescribeConfigs returned no resource")
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic} refused: {code:?}"));
    resource.get(key).and_then(|entry| entry.value.clone())
}

/// Partition ids of `topic` per Metadata (without auto-creating it), or `None` if the broker
/// does not list it.
pub fn partitions_of(bootstrap: &str, topic: &str) -> Option<Vec<i32>> {
    let metadata = consumer(bootstrap)
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("Metadata failed: {error}"));
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    if found.error().is_some() {
        return None;
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Some(ids)
}

/// Enqueues a record, waiting while librdkafka's local queue is full.
pub fn send(
    producer: &TestProducer,
    topic: &str,
    key: Option<&str>,
    value: &str,
    partition: Option<i32>,
    timestamp: Option<i64>,
) {
    let mut record = BaseRecord::<str, str>::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(record_key) = &producer.context().record_key {
        let signature = record_key.sign(topic, key.map(str::as_bytes), Some(value.as_bytes()));
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: record_signing::HEADER,
            value: Some(signature.as_bytes()),
        }));
    }
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(timestamp) = timestamp {
        record = record.timestamp(timestamp);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if Instant::now() < deadline =>
            {
                record = returned;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => panic!("cannot enqueue a record for {topic}: {error}"),
        }
    }
}

/// Flushes and asserts that every record sent so far was acknowledged; returns them all.
pub fn flush_all_acked(producer: &TestProducer) -> Vec<Record> {
    let flushed = producer.flush(Duration::from_secs(60));
    let failed = producer.context().failed();
    assert!(
        failed.is_empty(),
        "{} records failed delivery, first: {}",
        failed.len(),
        failed[0]
    );
    flushed.unwrap_or_else(|error| panic!("flush did not complete: {error}"));
    producer.context().acked()
}

/// Reads `partitions` of `topic` from the beginning until each reports its end (the high
/// watermark seen by Fetch); records come in partition order, offsets ascending.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Vec<Record> {
    read_all_with(bootstrap, topic, partitions, timeout, &[])
}

/// `read_all` with a consumer given `extra` settings; with `isolation.level=read_committed`
/// a partition's end is its last stable offset.
pub fn read_all_with(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    extra: &[(&str, &str)],
) -> Vec<Record> {
    let consumer = consumer_with(bootstrap, extra);
    let mut assignment = TopicPartitionList::new();
    for &partition in partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("bad assignment");
    }
    consumer.assign(&assignment).expect("cannot assign");
    let deadline = Instant::now() + timeout;
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut records = Vec::new();
    while at_end.len() < partitions.len() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach the end of partitions {:?} within {timeout:?} ({} records so far)",
            partitions
                .iter()
                .filter(|p| !at_end.contains(p))
                .collect::<Vec<_>>(),
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                records.push(Record::of(&message));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => eprintln!("consumer error while reading {topic}: {error}"),
        }
    }
    records.sort_by_key(|record| (record.partition, record.offset));
    records
}

/// (earliest, latest) offsets of a partition, by ListOffsets.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    consumer(bootstrap)
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("ListOffsets {topic}/{partition} failed: {error}"))
}

/// The first offset whose timestamp is at or after `timestamp_ms`, by ListOffsets;
/// `Offset::End` when there is none.
pub fn offset_for_time(bootstrap: &str, topic: &str, partition: i32, timestamp_ms: i64) -> Offset {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))
        .expect("bad query");
    let answer = consumer(bootstrap)
        .offsets_for_times(query, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("ListOffsets by time {topic}/{partition} failed: {error}"));
    let element = answer
        .find_partition(topic, partition)
        .expect("ListOffsets answered without the partition");
    if let Err(error) = element.error() {
        panic!("ListOffsets by time {topic}/{partition} refused: {error}");
    }
    element.offset()
}
