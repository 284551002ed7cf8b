//! Transactions on a three-node cluster: the transaction coordinator fails over, and
//! transaction markers are replicated with the data.
//!
//! A transactional id's coordinator is the Raft leader of its `__transaction_state`
//! partition (Kafka's hash of the id, 8 partitions, each replicated on all three nodes), and
//! FindCoordinator names that leader. One transactional librdkafka producer runs transactions
//! of a few records spread over the three partitions of a replicated topic, aborting every
//! fourth on purpose. The coordinator is killed -9 in the middle of a transaction, later the
//! leader of data partition 0 too; whenever a call fails the transaction's fate is unknown
//! to the producer (ambiguous), and a new instance with the same transactional.id fences the
//! old one. At the end the topic is read with read_committed: every committed transaction
//! whole and once, no aborted one, each ambiguous one whole or not at all; read_uncommitted
//! still finds the aborted records, so markers (not missing data) hide them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commerce_tests::TimeLimit;
use commerce_tests::history::{self, Entry};
use commerce_tests::kafka::{self, Record, TestProducer};
use commerce_tests::replicated::{PARTITIONS, Replicated};
use commerce_tests::wire::{WireClient, str_bytes};
use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

const TOPIC: &str = "payments-cluster-txn";
const TRANSACTIONAL_ID: &str = "cluster-txn-1";
/// The coordinator's internal topic and its partition count (Kafka's default is 50; the
/// broker uses 8, as for `__consumer_offsets`).
const TXN_TOPIC: &str = "__transaction_state";
const TXN_PARTITIONS: i32 = 8;
/// FindCoordinator's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// Records per transaction, record `i` to partition `i % PARTITIONS`.
const RECORDS_PER_TXN: usize = 6;
/// Transaction `n` is aborted on purpose when `n % ABORT_EVERY == ABORT_EVERY - 1`.
const ABORT_EVERY: usize = 4;
/// Short, so that a transaction a dead coordinator left open is aborted soon; the
/// producer's message timeout may not exceed it.
const TXN_TIMEOUT_MS: &str = "10000";
/// One flush, commit_transaction or abort_transaction call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// One init_transactions call, and how long new instances keep trying.
const INIT_TIMEOUT: Duration = Duration::from_secs(15);
const INIT_WITHIN: Duration = Duration::from_secs(60);
/// How long one phase may take to commit its transactions.
const PHASE_WITHIN: Duration = Duration::from_secs(60);
/// Any other wait: leaders, coordinators, the last stable offset, reading back.
const WAIT: Duration = Duration::from_secs(60);

/// Transactions to commit in each phase.
const BEFORE_KILL: usize = 4;
const WHILE_COORDINATOR_DOWN: usize = 5;
const AFTER_COORDINATOR_BACK: usize = 3;
const WHILE_DATA_LEADER_DOWN: usize = 3;
const AT_THE_END: usize = 2;

/// Where the run is, for the record of each transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// All three nodes up.
    Before,
    /// The coordinator was killed -9 (during this phase's first transaction).
    CoordinatorDown,
    /// The old coordinator restarted.
    CoordinatorBack,
    /// The leader of data partition 0 was killed -9 (during this phase's first transaction).
    DataLeaderDown,
    /// Everything restarted.
    AllBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Commit,
    Abort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// commit_transaction returned Ok.
    Committed,
    /// abort_transaction returned Ok.
    Aborted,
    /// A call failed (the reason): the producer cannot know what became of the transaction.
    Ambiguous(String),
}

#[derive(Debug)]
struct Transaction {
    number: usize,
    phase: Phase,
    intent: Intent,
    outcome: Outcome,
    /// Its records as the producer acknowledged them (partition, offset, value).
    acked: Vec<Record>,
}

/// The transactional producer's run: the current instance (none after a failed call) and
/// the record of every transaction.
struct Run {
    bootstrap: String,
    producer: Option<TestProducer>,
    instances: usize,
    transactions: Vec<Transaction>,
}

impl Run {
    fn new(bootstrap: &str) -> Run {
        Run {
            bootstrap: bootstrap.to_string(),
            producer: None,
            instances: 0,
            transactions: Vec::new(),
        }
    }

    /// The current instance, or a new one initialized (which fences any older one).
    fn producer(&mut self) -> &TestProducer {
        if self.producer.is_none() {
            self.instances += 1;
        }
        let bootstrap = &self.bootstrap;
        self.producer.get_or_insert_with(|| initialized(bootstrap))
    }

    /// Runs the next transaction: begin, send and flush its records, `midway` (a fault),
    /// then commit or abort it as its number says.
    fn transaction(&mut self, phase: Phase, midway: impl FnOnce()) -> Outcome {
        let number = self.transactions.len();
        let intent = if number % ABORT_EVERY == ABORT_EVERY - 1 {
            Intent::Abort
        } else {
            Intent::Commit
        };
        let started = Instant::now();
        let producer = self.producer();
        let sent = begin_and_send(producer, number);
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

    /// Runs transactions until `commits` of them have committed in `phase`.
    fn until_committed(&mut self, phase: Phase, commits: usize) {
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

    fn committed_in(&self, phases: &[Phase]) -> usize {
        self.transactions
            .iter()
            .filter(|t| phases.contains(&t.phase) && t.outcome == Outcome::Committed)
            .count()
    }

    fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.transactions
            .iter()
            .filter(|t| which(&t.outcome))
            .count()
    }

    fn listing(&self, which: impl Fn(&Transaction) -> bool) -> String {
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
    fn close(&mut self) {
        self.producer = None;
    }
}

#[test]
fn transactions_survive_a_coordinator_kill_and_markers_reach_every_replica() {
    let _limit = TimeLimit::new(
        "transactions_survive_a_coordinator_kill_and_markers_reach_every_replica",
        Duration::from_secs(300),
    );
    let mut replicated = Replicated::start(TOPIC);
    let all = replicated.cluster.ids();
    let mut run = Run::new(&replicated.bootstrap);

    // The first InitProducerId creates `__transaction_state`.
    run.until_committed(Phase::Before, BEFORE_KILL);
    let state_partition = transaction_partition(TRANSACTIONAL_ID);
    let victim = coordinator(
        &mut replicated,
        &all,
        state_partition,
        "every node names the leader of the transactional id's partition as its coordinator",
    );
    let layout = txn_state_view(
        &replicated.cluster.node(victim).bootstrap(),
        state_partition,
    )
    .expect("the coordinator describes its own topic");
    eprintln!(
        "{TRANSACTIONAL_ID}: {TXN_TOPIC} partition {state_partition}, led by node {victim}: \
         {layout:?}"
    );
    assert_eq!(
        layout.partitions, TXN_PARTITIONS as usize,
        "{TXN_TOPIC} partitions"
    );
    assert_eq!(
        layout.replicas, all,
        "{TXN_TOPIC} partition {state_partition} is not replicated on every node"
    );

    // Kill the coordinator with the next transaction's records in the log, before its
    // commit or abort: the survivors' new leader of the partition must finish it.
    let killed_in = run.transactions.len();
    eprintln!("killing node {victim}, the coordinator, during transaction {killed_in}");
    run.transaction(Phase::CoordinatorDown, || {
        replicated.cluster.node(victim).kill();
    });
    run.until_committed(Phase::CoordinatorDown, WHILE_COORDINATOR_DOWN);
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != victim).collect();
    let successor = coordinator(
        &mut replicated,
        &survivors,
        state_partition,
        "the survivors name a new coordinator",
    );
    eprintln!("node {successor} coordinates {TRANSACTIONAL_ID} after the kill");
    assert_ne!(successor, victim);

    replicated.cluster.node(victim).restart();
    replicated.wait_leaders(&all, "the restarted coordinator agrees on the data leaders");
    let after_restart = coordinator(
        &mut replicated,
        &all,
        state_partition,
        "the restarted node agrees on the coordinator",
    );
    run.until_committed(Phase::CoordinatorBack, AFTER_COORDINATOR_BACK);

    // Then the leader of data partition 0, again in the middle of a transaction.
    let data_victim = replicated.wait_leaders(&all, "leaders before the second kill")[&0];
    eprintln!(
        "killing node {data_victim}, leader of partition 0 (coordinator: node \
         {after_restart}), during transaction {}",
        run.transactions.len()
    );
    run.transaction(Phase::DataLeaderDown, || {
        replicated.cluster.node(data_victim).kill();
    });
    run.until_committed(Phase::DataLeaderDown, WHILE_DATA_LEADER_DOWN);
    replicated.cluster.node(data_victim).restart();
    replicated.wait_leaders(&all, "the cluster settles after the second kill");
    run.until_committed(Phase::AllBack, AT_THE_END);
    run.close();

    // No transaction is open any more: each partition's last stable offset reaches its
    // high watermark once the last markers are in.
    let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
    for record in run.transactions.iter().flat_map(|t| &t.acked) {
        let end = needed.entry(record.partition).or_default();
        *end = (*end).max(record.offset + 1);
    }
    wait_stable(&replicated.bootstrap, &needed);
    let committed_read = read(&replicated.bootstrap, "read_committed");
    let uncommitted_read = read(&replicated.bootstrap, "read_uncommitted");
    let (seen, strays) = tally(&committed_read, run.transactions.len());
    let (seen_uncommitted, _) = tally(&uncommitted_read, run.transactions.len());

    let committed = run.count(|o| *o == Outcome::Committed);
    let aborted = run.count(|o| *o == Outcome::Aborted);
    let ambiguous = run.count(|o| matches!(o, Outcome::Ambiguous(_)));
    let after_kill = run.committed_in(&[
        Phase::CoordinatorDown,
        Phase::CoordinatorBack,
        Phase::DataLeaderDown,
        Phase::AllBack,
    ]);
    println!(
        "cluster transactions: {} run by {} producer instances: {committed} committed \
         ({after_kill} after the coordinator kill, {} while it was down), {aborted} aborted, \
         {ambiguous} ambiguous; {TXN_TOPIC} partition {state_partition}: coordinator node \
         {victim} killed in transaction {killed_in} ({:?}), node {successor} took over; node \
         {data_victim} (leader of partition 0) killed later; read back {} records \
         read_committed, {} read_uncommitted",
        run.transactions.len(),
        run.instances,
        run.committed_in(&[Phase::CoordinatorDown]),
        run.transactions[killed_in].outcome,
        committed_read.len(),
        uncommitted_read.len(),
    );
    let ambiguous_list = run.listing(|t| matches!(t.outcome, Outcome::Ambiguous(_)));
    if !ambiguous_list.is_empty() {
        println!("ambiguous transactions:\n{ambiguous_list}");
    }

    assert!(
        strays.is_empty(),
        "read_committed found records no transaction of this run sent: {strays:?}"
    );
    let broken = |which: &dyn Fn(&Transaction, &[usize]) -> bool| -> Vec<String> {
        run.transactions
            .iter()
            .filter_map(|t| {
                let present = presence(&seen, t.number);
                which(t, &present).then(|| {
                    format!(
                        "transaction {} ({:?}, {:?}, {:?}): copies per record {present:?}",
                        t.number, t.phase, t.intent, t.outcome
                    )
                })
            })
            .collect()
    };
    let partial_commits =
        broken(&|t, present| t.outcome == Outcome::Committed && present.iter().any(|n| *n != 1));
    assert!(
        partial_commits.is_empty(),
        "committed transactions not read back whole, each record once, by read_committed:\n{}",
        partial_commits.join("\n")
    );
    let visible_aborts = broken(&|t, present| {
        let aborted = t.outcome == Outcome::Aborted
            || (t.intent == Intent::Abort && matches!(t.outcome, Outcome::Ambiguous(_)));
        aborted && present.iter().any(|n| *n != 0)
    });
    assert!(
        visible_aborts.is_empty(),
        "aborted transactions (or ones never committed) visible to read_committed:\n{}",
        visible_aborts.join("\n")
    );
    let torn = broken(&|t, present| {
        matches!(t.outcome, Outcome::Ambiguous(_))
            && !(present.iter().all(|n| *n == 0) || present.iter().all(|n| *n == 1))
    });
    assert!(
        torn.is_empty(),
        "ambiguous transactions read back in part or more than once (not atomic):\n{}",
        torn.join("\n")
    );

    // Committed records also sit where they were acknowledged, in send order.
    let mut committed_acked: Vec<&Record> = run
        .transactions
        .iter()
        .filter(|t| t.outcome == Outcome::Committed)
        .flat_map(|t| &t.acked)
        .collect();
    committed_acked.sort_by_key(|record| parse(record.value_str()));
    let acked_entries: Vec<Entry> = committed_acked.into_iter().map(Entry::from).collect();
    let read_entries: Vec<Entry> = committed_read.iter().map(Entry::from).collect();
    let report = history::check(&acked_entries, &read_entries);
    assert!(
        report.is_clean(),
        "committed records against read_committed: {report}"
    );

    assert!(
        run.committed_in(&[Phase::CoordinatorDown]) >= WHILE_COORDINATOR_DOWN,
        "too few transactions committed while the coordinator was down to test its failover"
    );
    assert!(
        after_kill >= WHILE_COORDINATOR_DOWN + AFTER_COORDINATOR_BACK + WHILE_DATA_LEADER_DOWN,
        "too few transactions committed after the coordinator kill: {after_kill}"
    );

    // The aborted records are in the log: markers hide them from read_committed.
    let flushed_aborts: Vec<&Transaction> = run
        .transactions
        .iter()
        .filter(|t| t.outcome == Outcome::Aborted && t.acked.len() == RECORDS_PER_TXN)
        .collect();
    assert!(
        flushed_aborts.len() >= 2,
        "too few aborted transactions with every record acknowledged to check the log: {}",
        flushed_aborts.len()
    );
    let missing_aborts: Vec<String> = flushed_aborts
        .iter()
        .filter_map(|t| {
            let present = presence(&seen_uncommitted, t.number);
            present.contains(&0).then(|| {
                format!(
                    "transaction {}: copies per record {present:?}, acknowledged at {:?}",
                    t.number,
                    t.acked
                        .iter()
                        .map(|r| (r.partition, r.offset))
                        .collect::<Vec<_>>()
                )
            })
        })
        .collect();
    assert!(
        missing_aborts.is_empty(),
        "acknowledged records of aborted transactions missing from read_uncommitted:\n{}",
        missing_aborts.join("\n")
    );
}

/// A producer with the test's transactional.id, initialized: a new instance per attempt
/// (with backoff) until one's init_transactions succeeds within [`INIT_WITHIN`].
fn initialized(bootstrap: &str) -> TestProducer {
    let deadline = Instant::now() + INIT_WITHIN;
    let mut backoff = Duration::from_millis(100);
    loop {
        let producer = kafka::producer(
            bootstrap,
            &[
                ("transactional.id", TRANSACTIONAL_ID),
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
            "no producer with transactional.id {TRANSACTIONAL_ID} initialized within \
             {INIT_WITHIN:?}; last attempt: {why}"
        );
        eprintln!("{why}; a new instance in {backoff:?}");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Begins transaction `number` and sends its records, flushed to the log.
fn begin_and_send(producer: &TestProducer, number: usize) -> Result<(), String> {
    producer
        .begin_transaction()
        .map_err(|error| describe("begin_transaction", &error))?;
    for index in 0..RECORDS_PER_TXN {
        let value = value_of(number, index);
        let partition = i32::try_from(index).unwrap() % PARTITIONS;
        let mut record = BaseRecord::<str, str>::to(TOPIC)
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

fn value_of(number: usize, index: usize) -> String {
    format!("t{number:04}-r{index}")
}

/// (transaction number, record index) of a value of this test.
fn parse(value: &str) -> Option<(usize, usize)> {
    let (number, index) = value.strip_prefix('t')?.split_once("-r")?;
    Some((number.parse().ok()?, index.parse().ok()?))
}

/// Copies of each record read, by (transaction, index); and the values read that no
/// transaction of the run sent.
fn tally(
    records: &[Record],
    transactions: usize,
) -> (BTreeMap<(usize, usize), usize>, Vec<String>) {
    let mut seen = BTreeMap::new();
    let mut strays = Vec::new();
    for record in records {
        let value = String::from_utf8_lossy(&record.value).into_owned();
        match parse(&value) {
            Some((number, index)) if number < transactions && index < RECORDS_PER_TXN => {
                *seen.entry((number, index)).or_default() += 1;
            }
            _ => strays.push(format!(
                "{value:?} at {}/{}",
                record.partition, record.offset
            )),
        }
    }
    (seen, strays)
}

/// Copies read of each of transaction `number`'s records.
fn presence(seen: &BTreeMap<(usize, usize), usize>, number: usize) -> Vec<usize> {
    (0..RECORDS_PER_TXN)
        .map(|index| seen.get(&(number, index)).copied().unwrap_or(0))
        .collect()
}

/// Kafka's transactional id -> `__transaction_state` partition: Java's String.hashCode,
/// Utils.abs, mod.
fn transaction_partition(id: &str) -> i32 {
    let hash = id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % TXN_PARTITIONS
}

/// `__transaction_state` as one node's Metadata shows it (broker ids are node ids).
#[derive(Debug)]
struct TxnStateView {
    partitions: usize,
    /// Of the partition asked about.
    leader: Option<u64>,
    replicas: Vec<u64>,
}

/// The node at `address`'s Metadata of `__transaction_state`, for `partition`; `None` if
/// it does not answer or does not list the topic or the partition.
fn txn_state_view(address: &str, partition: i32) -> Option<TxnStateView> {
    let consumer: BaseConsumer = kafka::config(address).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(TXN_TOPIC), Duration::from_secs(5))
        .ok()?;
    let topic = metadata.topics().iter().find(|t| t.name() == TXN_TOPIC)?;
    if topic.error().is_some() {
        return None;
    }
    let found = topic.partitions().iter().find(|p| p.id() == partition)?;
    let mut replicas: Vec<u64> = found
        .replicas()
        .iter()
        .filter_map(|id| u64::try_from(*id).ok())
        .collect();
    replicas.sort_unstable();
    Some(TxnStateView {
        partitions: topic.partitions().len(),
        leader: u64::try_from(found.leader()).ok(),
        replicas,
    })
}

/// FindCoordinator (v3, key type transaction) for the test's transactional id, asked of
/// the node at `address` (running); the node it names, `None` on an error code.
fn find_coordinator(address: &str) -> Option<u64> {
    let mut client = WireClient::connect(address);
    let request = FindCoordinatorRequest::default()
        .with_key(str_bytes(TRANSACTIONAL_ID))
        .with_key_type(KEY_TYPE_TRANSACTION);
    let ResponseKind::FindCoordinator(response) = client.call(
        ApiKey::FindCoordinator,
        3,
        RequestKind::FindCoordinator(request),
    ) else {
        panic!("not a FindCoordinator response");
    };
    if response.error_code != 0 {
        return None;
    }
    u64::try_from(response.node_id.0).ok()
}

/// Waits until the nodes `among` (all running) agree on a leader of `__transaction_state`
/// partition `partition`, one of them, and each one's FindCoordinator names it; returns it.
fn coordinator(replicated: &mut Replicated, among: &[u64], partition: i32, what: &str) -> u64 {
    let addresses: Vec<(u64, String)> = among
        .iter()
        .map(|id| (*id, replicated.cluster.node(*id).bootstrap()))
        .collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<(u64, Option<u64>)> = addresses
            .iter()
            .map(|(id, address)| {
                (
                    *id,
                    txn_state_view(address, partition).and_then(|view| view.leader),
                )
            })
            .collect();
        let named: Vec<(u64, Option<u64>)> = addresses
            .iter()
            .map(|(id, address)| (*id, find_coordinator(address)))
            .collect();
        if let Some((_, Some(leader))) = leaders.first()
            && among.contains(leader)
            && leaders.iter().all(|(_, seen)| *seen == Some(*leader))
            && named.iter().all(|(_, seen)| *seen == Some(*leader))
        {
            return *leader;
        }
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what} (nodes {among:?}); {TXN_TOPIC} partition {partition} \
             leader per node: {leaders:?}; FindCoordinator({TRANSACTIONAL_ID}) per node: \
             {named:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every partition's last stable offset (ListOffsets latest, read_committed)
/// equals its high watermark, and that covers the acknowledged records (`needed`: partition
/// -> one past the last acknowledged offset).
fn wait_stable(bootstrap: &str, needed: &BTreeMap<i32, i64>) {
    let committed = kafka::consumer_with(bootstrap, &[("isolation.level", "read_committed")]);
    let uncommitted = kafka::consumer_with(bootstrap, &[("isolation.level", "read_uncommitted")]);
    let ask = Duration::from_secs(5);
    let deadline = Instant::now() + WAIT;
    for partition in 0..PARTITIONS {
        let needed = needed.get(&partition).copied().unwrap_or(0);
        loop {
            let stable = committed
                .fetch_watermarks(TOPIC, partition, ask)
                .map(|(_, high)| high);
            let high = uncommitted
                .fetch_watermarks(TOPIC, partition, ask)
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

/// Every partition of the topic from the beginning to its end as `isolation` sees it.
fn read(bootstrap: &str, isolation: &str) -> Vec<Record> {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    kafka::read_all_with(
        bootstrap,
        TOPIC,
        &partitions,
        WAIT,
        &[("isolation.level", isolation)],
    )
}
