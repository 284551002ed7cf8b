//! A transactional producer's run, as the client sees it: numbered transactions of a few
//! records each, every one's outcome recorded, and the topic read back to check them.
//!
//! A [`Run`] drives one transactional.id through a succession of librdkafka producer
//! instances. Transaction `n` sends [`RECORDS_PER_TXN`] records, record `i` to partition
//! `i % PARTITIONS` of a replicated topic, flushes them, and commits, or aborts on purpose
//! every [`ABORT_EVERY`]th. When a call fails the producer cannot know what became of the
//! transaction ([`Outcome::Ambiguous`]), so the instance is dropped: the next one's
//! init_transactions fences it, and the coordinator finishes what it left open.
//!
//! Record values name their transaction and index (`t0042-r3`), so a read-back ([`Read`],
//! in `read_back.rs`) counts the copies of each record per transaction: what a test checks
//! is that a committed transaction is read whole and once with read_committed, an aborted
//! one not at all, and an ambiguous one all or nothing.
//!
//! A run is generic over the test's phase type, recorded with each transaction, so that a
//! test can count what committed while a fault lasted.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

use crate::kafka::{self, Record, TestProducer};
use crate::replicated::PARTITIONS;

mod read_back;

pub use read_back::{Read, WAIT};

/// Records per transaction, record `i` to partition `i % PARTITIONS`.
pub const RECORDS_PER_TXN: usize = 6;
/// Transaction `n` is aborted on purpose when `n % ABORT_EVERY == ABORT_EVERY - 1`.
pub const ABORT_EVERY: usize = 4;
/// Short, so that a transaction a dead coordinator left open is aborted soon; the
/// producer's message timeout may not exceed it.
const TXN_TIMEOUT_MS: &str = "10000";
/// One flush, commit_transaction or abort_transaction call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// One init_transactions call, and how long new instances keep trying.
const INIT_TIMEOUT: Duration = Duration::from_secs(15);
const INIT_WITHIN: Duration = Duration::from_secs(60);
/// How long one phase may take to commit its transactions ([`Run::until_committed`]).
pub const PHASE_WITHIN: Duration = Duration::from_secs(60);

/// What the run means to do with a transaction, by its number (see [`ABORT_EVERY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Commit,
    Abort,
}

/// What the producer was told became of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// commit_transaction returned Ok.
    Committed,
    /// abort_transaction returned Ok.
    Aborted,
    /// A call failed (the reason): the producer cannot know what became of the transaction.
    Ambiguous(String),
}

impl Outcome {
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Outcome::Ambiguous(_))
    }
}

/// One transaction of a run, as the producer saw it.
#[derive(Debug)]
pub struct Transaction<P> {
    /// Its place in the run, from 0; its records' values carry it.
    pub number: usize,
    /// The test's phase it ran in.
    pub phase: P,
    pub intent: Intent,
    pub outcome: Outcome,
    /// Its records as the producer acknowledged them (partition, offset, value).
    pub acked: Vec<Record>,
}

/// The transactional producer's run: the current instance (none after a failed call) and
/// the record of every transaction.
pub struct Run<P> {
    bootstrap: String,
    topic: String,
    transactional_id: String,
    producer: Option<TestProducer>,
    instances: usize,
    transactions: Vec<Transaction<P>>,
}

impl<P: Copy + Eq + Debug> Run<P> {
    /// A run of `transactional_id` on `topic` (of [`PARTITIONS`] partitions); no instance
    /// is created before the first transaction.
    pub fn new(bootstrap: &str, topic: &str, transactional_id: &str) -> Run<P> {
        Run {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            transactional_id: transactional_id.to_string(),
            producer: None,
            instances: 0,
            transactions: Vec::new(),
        }
    }

    /// Every transaction run so far, in order: `transactions()[n].number == n`.
    pub fn transactions(&self) -> &[Transaction<P>] {
        &self.transactions
    }

    /// How many producer instances the run has created (a new one after each failed call).
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// The current instance, or a new one initialized (which fences any older one).
    fn producer(&mut self) -> &TestProducer {
        if self.producer.is_none() {
            self.instances += 1;
        }
        let (bootstrap, id) = (&self.bootstrap, &self.transactional_id);
        self.producer
            .get_or_insert_with(|| initialized(bootstrap, id))
    }

    /// Runs the next transaction: begin, send and flush its records, `midway` (a fault),
    /// then commit or abort it as its number says.
    pub fn transaction(&mut self, phase: P, midway: impl FnOnce()) -> Outcome {
        let number = self.transactions.len();
        let intent = if number % ABORT_EVERY == ABORT_EVERY - 1 {
            Intent::Abort
        } else {
            Intent::Commit
        };
        let started = Instant::now();
        let topic = self.topic.clone();
        let producer = self.producer();
        let sent = begin_and_send(producer, &topic, number);
        midway();
        let finished = sent.and_then(|()| match intent {
            Intent::Commit => producer
                .commit_transaction(CALL_TIMEOUT)
                .map_err(|error| describe("commit_transaction", &error)),
            Intent::Abort => producer
                .abort_transaction(CALL_TIMEOUT)
                .map_err(|error| describe("abort_transaction", &error)),
        });
        let acked = if finished.is_ok() {
            acked_of(producer, number, Duration::from_secs(5))
        } else {
            acked_of(producer, number, Duration::ZERO)
        };
        let outcome = match (finished, intent) {
            (Ok(()), Intent::Commit) => Outcome::Committed,
            (Ok(()), Intent::Abort) => Outcome::Aborted,
            (Err(why), _) => {
                // Whatever state this instance is in, the next one fences it.
                self.producer = None;
                Outcome::Ambiguous(why)
            }
        };
        eprintln!(
            "transaction {number} ({phase:?}, {intent:?}): {outcome:?} after {:?}, {} of \
             {RECORDS_PER_TXN} records acknowledged",
            started.elapsed(),
            acked.len()
        );
        self.transactions.push(Transaction {
            number,
            phase,
            intent,
            outcome: outcome.clone(),
            acked,
        });
        outcome
    }

    /// Runs transactions until `commits` of them have committed in `phase`; panics with the
    /// phase's transactions if that takes more than [`PHASE_WITHIN`].
    pub fn until_committed(&mut self, phase: P, commits: usize) {
        let deadline = Instant::now() + PHASE_WITHIN;
        while self.committed_in(&[phase]) < commits {
            assert!(
                Instant::now() < deadline,
                "only {} of {commits} transactions committed within {PHASE_WITHIN:?} in phase \
                 {phase:?}; its transactions:\n{}",
                self.committed_in(&[phase]),
                self.listing(|transaction| transaction.phase == phase)
            );
            self.transaction(phase, || {});
        }
    }

    /// How many transactions committed in any of `phases`.
    pub fn committed_in(&self, phases: &[P]) -> usize {
        self.transactions
            .iter()
            .filter(|t| phases.contains(&t.phase) && t.outcome == Outcome::Committed)
            .count()
    }

    /// How many transactions had an outcome `which` accepts.
    pub fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.transactions
            .iter()
            .filter(|t| which(&t.outcome))
            .count()
    }

    /// The transactions `which` accepts, one line each (number, phase, intent, outcome).
    pub fn listing(&self, which: impl Fn(&Transaction<P>) -> bool) -> String {
        self.transactions
            .iter()
            .filter(|t| which(t))
            .map(|t| {
                format!(
                    "  {} {:?} {:?}: {:?}",
                    t.number, t.phase, t.intent, t.outcome
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Drops the last instance (its last transaction is finished).
    pub fn close(&mut self) {
        self.producer = None;
    }
}

/// A producer with `transactional_id`, initialized: a new instance per attempt (with
/// backoff) until one's init_transactions succeeds within [`INIT_WITHIN`].
fn initialized(bootstrap: &str, transactional_id: &str) -> TestProducer {
    let deadline = Instant::now() + INIT_WITHIN;
    let mut backoff = Duration::from_millis(100);
    loop {
        let producer = kafka::producer(
            bootstrap,
            &[
                ("transactional.id", transactional_id),
                ("transaction.timeout.ms", TXN_TIMEOUT_MS),
                ("message.timeout.ms", TXN_TIMEOUT_MS),
                ("request.timeout.ms", "5000"),
                ("retry.backoff.ms", "100"),
                ("topic.metadata.refresh.interval.ms", "2000"),
            ],
        );
        let why = match producer.init_transactions(INIT_TIMEOUT) {
            Ok(()) => return producer,
            Err(error) => describe("init_transactions", &error),
        };
        drop(producer);
        assert!(
            Instant::now() + backoff < deadline,
            "no producer with transactional.id {transactional_id} initialized within \
             {INIT_WITHIN:?}; last attempt: {why}"
        );
        eprintln!("{why}; a new instance in {backoff:?}");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Begins transaction `number` and sends its records to `topic`, flushed to the log.
fn begin_and_send(producer: &TestProducer, topic: &str, number: usize) -> Result<(), String> {
    producer
        .begin_transaction()
        .map_err(|error| describe("begin_transaction", &error))?;
    for index in 0..RECORDS_PER_TXN {
        let value = value_of(number, index);
        let partition = i32::try_from(index).unwrap() % PARTITIONS;
        let mut record = BaseRecord::<str, str>::to(topic)
            .key(&value)
            .payload(&value)
            .partition(partition);
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if Instant::now() < deadline =>
                {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(describe(&format!("send {value}"), &error)),
            }
        }
    }
    producer
        .flush(CALL_TIMEOUT)
        .map_err(|error| describe("flush", &error))
}

/// Transaction `number`'s records the instance acknowledged, waiting up to `patience` for
/// all of them (delivery reports are served by the producer's polling thread).
fn acked_of(producer: &TestProducer, number: usize, patience: Duration) -> Vec<Record> {
    let deadline = Instant::now() + patience;
    loop {
        let acked: Vec<Record> = producer
            .context()
            .acked()
            .into_iter()
            .filter(|record| parse(record.value_str()).is_some_and(|(n, _)| n == number))
            .collect();
        if acked.len() >= RECORDS_PER_TXN || Instant::now() >= deadline {
            return acked;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A failed call and its error; for a transactional error, what librdkafka says it implies.
fn describe(call: &str, error: &KafkaError) -> String {
    match error {
        KafkaError::Transaction(error) => format!(
            "{call}: {error} (fatal {}, requires abort {}, retriable {})",
            error.is_fatal(),
            error.txn_requires_abort(),
            error.is_retriable()
        ),
        other => format!("{call}: {other}"),
    }
}

/// The value (and key) of record `index` of transaction `number`.
fn value_of(number: usize, index: usize) -> String {
    format!("t{number:04}-r{index}")
}

/// (transaction number, record index) of a value [`value_of`] made.
fn parse(value: &str) -> Option<(usize, usize)> {
    let (number, index) = value.strip_prefix('t')?.split_once("-r")?;
    Some((number.parse().ok()?, index.parse().ok()?))
}
