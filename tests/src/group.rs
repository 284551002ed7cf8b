//! Consumer-group members for tests: librdkafka consumers subscribed with a `group.id`, driven
//! by the test thread (BaseConsumer only rebalances and heartbeats while it is polled), with a
//! context that counts rebalances so that a test can assert one did or did not happen.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka::{self, Record};

/// Counts the rebalances a member went through (librdkafka's rebalance callback), and keeps
/// every partition taken from it, so that a test can tell an incremental (cooperative)
/// revocation from an eager one that takes everything.
#[derive(Default)]
pub struct GroupContext {
    pub assigns: AtomicUsize,
    pub revokes: AtomicUsize,
    /// Every partition revoked from this member so far, in revocation order.
    pub revoked: Mutex<Vec<i32>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32)
            || std::env::var_os("TEST_RDKAFKA_DEBUG").is_some()
        {
            eprintln!("librdkafka {level:?} {fac}: {log_message}");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => self.assigns.fetch_add(1, Ordering::SeqCst),
            Rebalance::Revoke(list) => {
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(list.elements().iter().map(|element| element.partition()));
                }
                self.revokes.fetch_add(1, Ordering::SeqCst)
            }
            Rebalance::Error(_) => 0,
        };
    }
}

/// One member of a consumer group, subscribed to one topic.
pub struct Member {
    pub consumer: BaseConsumer<GroupContext>,
    pub topic: String,
    /// Every record this member polled, in poll order.
    pub records: Vec<Record>,
}

impl Member {
    /// Joins `group` (auto commit off, reading from the earliest offset when the group has no
    /// commit) with `extra` settings such as `group.instance.id` or the assignment strategy.
    pub fn join(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut config = kafka::config(bootstrap);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        // With KIP-848 (group.protocol=consumer) the coordinator owns session and heartbeat
        // timing; librdkafka refuses these settings there.
        if !extra.contains(&("group.protocol", "consumer")) {
            config
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "500");
        }
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext::default())
            .expect("cannot create a group consumer");
        consumer.subscribe(&[topic]).expect("cannot subscribe");
        Member {
            consumer,
            topic: topic.to_string(),
            records: Vec::new(),
        }
    }

    /// Polls once for up to `wait`, keeping a record if one came.
    pub fn poll(&mut self, wait: Duration) {
        match self.consumer.poll(wait) {
            None => {}
            Some(Ok(message)) => self.records.push(Record::of(&message)),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => eprintln!("group consumer error: {error}"),
        }
    }

    /// The partitions of the topic currently assigned to this member.
    pub fn assigned(&self) -> BTreeSet<i32> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .filter(|element| element.topic() == self.topic)
                    .map(|element| element.partition())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Synchronously commits `next_offset` (the offset of the next record to read) for a
    /// partition; panics if the broker refuses.
    pub fn commit(&self, partition: i32, next_offset: i64) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(next_offset))
            .expect("bad commit list");
        self.consumer
            .commit(&list, CommitMode::Sync)
            .unwrap_or_else(|error| panic!("commit {partition}@{next_offset} failed: {error}"));
    }

    /// Every partition revoked from this member so far.
    pub fn revoked(&self) -> Vec<i32> {
        self.consumer
            .context()
            .revoked
            .lock()
            .map(|revoked| revoked.clone())
            .unwrap_or_default()
    }

    pub fn rebalances(&self) -> usize {
        self.consumer.context().assigns.load(Ordering::SeqCst)
            + self.consumer.context().revokes.load(Ordering::SeqCst)
    }
}

/// Polls every member in turn until `done` holds; panics with `what` after `timeout`.
pub fn drive(
    members: &mut [&mut Member],
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[&mut Member]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        for member in members.iter_mut() {
            member.poll(Duration::from_millis(20));
        }
        if done(members) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; assignments: {:?}",
            members
                .iter()
                .map(|member| member.assigned())
                .collect::<Vec<_>>()
        );
    }
}

/// True when the members' assignments are non-empty, disjoint and cover `0..partitions`.
pub fn split_exactly(members: &[&mut Member], partitions: i32) -> bool {
    let mut seen = BTreeSet::new();
    for member in members {
        let assigned = member.assigned();
        if assigned.is_empty() {
            return false;
        }
        for partition in assigned {
            if !seen.insert(partition) {
                return false;
            }
        }
    }
    seen == (0..partitions).collect()
}

/// The group's committed offset for a partition, read with OffsetFetch by a fresh client
/// that does not join the group; `None` when nothing is committed.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let mut config = kafka::config(bootstrap);
    config.set("group.id", group);
    let consumer: BaseConsumer = config.create().expect("cannot create a consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let answer = consumer
        .committed_offsets(list, kafka::REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("OffsetFetch for {group} failed: {error}"));
    let element = answer
        .find_partition(topic, partition)
        .expect("OffsetFetch answered without the partition");
    match element.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}
