//! Reading a [`Run`]'s topic back once its last transaction is finished, and the tallies
//! a test checks its transactions against.
//!
//! Once no transaction is open, every partition's last stable offset must reach its high
//! watermark ([`Run::wait_stable`]): where it does not, a commit or abort marker is missing.
//! Then the topic is read from the beginning with one isolation level ([`Run::read`]), each
//! record's copies counted by (transaction, index), so that a test can ask of every
//! transaction how many copies of each of its records are visible ([`Run::broken`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use super::{Outcome, RECORDS_PER_TXN, Run, Transaction, parse};
use crate::history::Entry;
use crate::kafka::{self, Record};
use crate::replicated::PARTITIONS;

/// How long the last stable offsets may take to settle, and reading the topic back.
pub const WAIT: Duration = Duration::from_secs(60);

impl<P: Copy + Eq + Debug> Run<P> {
    /// Waits until every partition's last stable offset (ListOffsets latest, read_committed)
    /// equals its high watermark, and that covers every record the run had acknowledged:
    /// once no transaction is open any more, a partition where it does not is missing a
    /// commit or abort marker.
    pub fn wait_stable(&self) {
        let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
        for record in self.transactions.iter().flat_map(|t| &t.acked) {
            let end = needed.entry(record.partition).or_default();
            *end = (*end).max(record.offset + 1);
        }
        wait_stable(&self.bootstrap, &self.topic, &needed);
    }

    /// Every partition of the topic from the beginning to its end as `isolation`
    /// (`read_committed` or `read_uncommitted`) sees it, tallied by transaction.
    pub fn read(&self, isolation: &str) -> Read {
        let partitions: Vec<i32> = (0..PARTITIONS).collect();
        let records = kafka::read_all_with(
            &self.bootstrap,
            &self.topic,
            &partitions,
            WAIT,
            &[("isolation.level", isolation)],
        );
        let mut copies = BTreeMap::new();
        let mut strays = Vec::new();
        for record in &records {
            let value = String::from_utf8_lossy(&record.value).into_owned();
            match parse(&value) {
                Some((number, index))
                    if number < self.transactions.len() && index < RECORDS_PER_TXN =>
                {
                    *copies.entry((number, index)).or_default() += 1;
                }
                _ => strays.push(format!(
                    "{value:?} at {}/{}",
                    record.partition, record.offset
                )),
            }
        }
        Read {
            records,
            copies,
            strays,
        }
    }

    /// The transactions `which` rejects given the copies `read` found of each of their
    /// records, one line each, for an assertion's message.
    pub fn broken(
        &self,
        read: &Read,
        which: impl Fn(&Transaction<P>, &[usize]) -> bool,
    ) -> Vec<String> {
        self.transactions
            .iter()
            .filter_map(|t| {
                let present = read.copies(t.number);
                which(t, &present).then(|| {
                    format!(
                        "transaction {} ({:?}, {:?}, {:?}): copies per record {present:?}",
                        t.number, t.phase, t.intent, t.outcome
                    )
                })
            })
            .collect()
    }

    /// The records of the committed transactions as the producer acknowledged them, in send
    /// order (transaction, then record index), for [`crate::history::check`].
    pub fn committed_entries(&self) -> Vec<Entry> {
        let mut committed: Vec<&Record> = self
            .transactions
            .iter()
            .filter(|t| t.outcome == Outcome::Committed)
            .flat_map(|t| &t.acked)
            .collect();
        committed.sort_by_key(|record| parse(record.value_str()));
        committed.into_iter().map(Entry::from).collect()
    }
}

/// The topic as one isolation level read it back ([`Run::read`]).
pub struct Read {
    /// Every record read, partition by partition.
    pub records: Vec<Record>,
    /// Copies read of each record, by (transaction number, record index).
    copies: BTreeMap<(usize, usize), usize>,
    /// The values read that no transaction of the run sent, and where.
    pub strays: Vec<String>,
}

impl Read {
    /// Copies read of each of transaction `number`'s records, by record index.
    pub fn copies(&self, number: usize) -> Vec<usize> {
        (0..RECORDS_PER_TXN)
            .map(|index| self.copies.get(&(number, index)).copied().unwrap_or(0))
            .collect()
    }

    /// The records read, for [`crate::history::check`].
    pub fn entries(&self) -> Vec<Entry> {
        self.records.iter().map(Entry::from).collect()
    }
}

/// Waits until every partition of `topic`'s last stable offset equals its high watermark
/// and that reaches `needed` (partition -> one past the last acknowledged offset), all
/// within [`WAIT`].
fn wait_stable(bootstrap: &str, topic: &str, needed: &BTreeMap<i32, i64>) {
    let committed = kafka::consumer_with(bootstrap, &[("isolation.level", "read_committed")]);
    let uncommitted = kafka::consumer_with(bootstrap, &[("isolation.level", "read_uncommitted")]);
    let ask = Duration::from_secs(5);
    let deadline = Instant::now() + WAIT;
    for partition in 0..PARTITIONS {
        let needed = needed.get(&partition).copied().unwrap_or(0);
        loop {
            let stable = committed
                .fetch_watermarks(topic, partition, ask)
                .map(|(_, high)| high);
            let high = uncommitted
                .fetch_watermarks(topic, partition, ask)
                .map(|(_, high)| high);
            if let (Ok(stable), Ok(high)) = (&stable, &high)
                && stable == high
                && *high >= needed
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: the last stable offset ({stable:?}) did not reach the \
                 high watermark ({high:?}; acknowledged records end at {needed}) within \
                 {WAIT:?} although no transaction is open any more: a commit or abort marker \
                 is missing there"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
