//! The workload of the replication tests: one idempotent acks=all producer (librdkafka)
//! sending unique values `p<partition>-<seq>` from a thread, and the check of what it was
//! told against what was read back ([`crate::history`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::{Producer, PurgeConfig};

use crate::history::{self, Entry, Report};
use crate::kafka::{self, Record, TestProducer};
use crate::replicated::{PARTITIONS, SETTLE};
use crate::wait_for;

/// The workload's keys; key `k<i>` goes to partition `i % PARTITIONS`.
const KEYS: u32 = 12;

/// One idempotent acks=all producer sending `p<partition>-<seq>` records (seq counting per
/// partition, so a partition's send order is its seq order) at a few hundred records a
/// second from a thread, until finished.
pub struct Workload {
    producer: Arc<TestProducer>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    sender: Option<JoinHandle<()>>,
}

/// What the producer was told once it stopped.
pub struct Outcome {
    pub sent: u64,
    /// In acknowledgement order.
    pub acked: Vec<Record>,
    pub failed: Vec<String>,
}

impl Outcome {
    pub fn summary(&self) -> String {
        format!(
            "{} sent, {} acked, {} failed",
            self.sent,
            self.acked.len(),
            self.failed.len()
        )
    }
}

impl Workload {
    pub fn start(bootstrap: &str, topic: &'static str) -> Workload {
        let producer = Arc::new(kafka::producer(
            bootstrap,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                // Long enough to ride over any fault of these tests: every record sent
                // while the cluster keeps a majority is eventually delivered.
                ("message.timeout.ms", "60000"),
                // A request to a paused or cut-off leader is retried (same sequence numbers)
                // after 5 s rather than librdkafka's 30.
                ("request.timeout.ms", "5000"),
                ("retry.backoff.ms", "100"),
                ("topic.metadata.refresh.interval.ms", "2000"),
            ],
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let sender = std::thread::spawn({
            let (producer, stop, sent) =
                (Arc::clone(&producer), Arc::clone(&stop), Arc::clone(&sent));
            move || {
                let mut seq = [0u64; PARTITIONS as usize];
                let mut i: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..5 {
                        let key = i % KEYS;
                        let partition = i32::try_from(key).unwrap() % PARTITIONS;
                        let next = &mut seq[usize::try_from(partition).unwrap()];
                        let value = format!("p{partition}-{next}");
                        let key = format!("k{key}");
                        kafka::send(&producer, topic, Some(&key), &value, Some(partition), None);
                        *next += 1;
                        i = i.wrapping_add(1);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Workload {
            producer,
            stop,
            sent,
            sender: Some(sender),
        }
    }

    pub fn acked_count(&self) -> usize {
        self.producer.context().acked_count()
    }

    /// Acknowledgements of `partition` after the first `mark` acknowledgements.
    pub fn acked_in(&self, partition: i32, mark: usize) -> usize {
        let acked = self.producer.context().acked();
        acked
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .filter(|record| record.partition == partition)
            .count()
    }

    pub fn wait_acked(&self, count: usize, what: &str) {
        wait_for(&format!("{what}: {count} acknowledged"), 2 * SETTLE, || {
            (self.acked_count() >= count).then_some(())
        });
    }

    pub fn wait_acked_in(&self, partition: i32, mark: usize, count: usize, what: &str) {
        wait_for(&format!("{what}: {count} acknowledged"), 2 * SETTLE, || {
            (self.acked_in(partition, mark) >= count).then_some(())
        });
    }

    /// Stops sending, waits for every outstanding delivery report (purging what is still
    /// unacknowledged after the flush: it is simply not acknowledged) and returns the history.
    pub fn finish(mut self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            sender.join().expect("the sender thread panicked");
        }
        if let Err(error) = self.producer.flush(Duration::from_secs(60)) {
            eprintln!("flush did not complete ({error}); purging what is left");
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.flush(Duration::from_secs(5));
        }
        let context = self.producer.context();
        Outcome {
            sent: self.sent.load(Ordering::Relaxed),
            acked: context.acked(),
            failed: context.failed(),
        }
    }
}

impl Drop for Workload {
    /// A failing test stops the sender too, rather than leaving it sending to dead nodes.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The history check: acknowledged records in send order per partition (by their seq)
/// against what was read back.
pub fn check_history(outcome: &Outcome, read: &[Record]) -> Report {
    let mut acked: Vec<(&Record, u64)> = outcome
        .acked
        .iter()
        .map(|record| (record, seq_of(record)))
        .collect();
    acked.sort_by_key(|(record, seq)| (record.partition, *seq));
    let acked: Vec<Entry> = acked
        .iter()
        .map(|(record, _)| Entry::from(*record))
        .collect();
    let read: Vec<Entry> = read.iter().map(Entry::from).collect();
    history::check(&acked, &read)
}

/// The seq of a workload value `p<partition>-<seq>`.
fn seq_of(record: &Record) -> u64 {
    record
        .value_str()
        .split_once('-')
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or_else(|| panic!("not a workload value: {:?}", record.value_str()))
}
