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
//!
//! The producer's run and the read-back are [`commerce_tests::transactional`]; finding the
//! coordinator is [`commerce_tests::coordinators`].

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::TimeLimit;
use commerce_tests::cluster::Cluster;
use commerce_tests::coordinators::{self, COORDINATOR_PARTITIONS, Kind, wait_coordinator};
use commerce_tests::history;
use commerce_tests::replicated::Replicated;
use commerce_tests::transactional::{Intent, Outcome, RECORDS_PER_TXN, Run, Transaction};

const TOPIC: &str = "payments-cluster-txn";
const TRANSACTIONAL_ID: &str = "cluster-txn-1";

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

#[test]
fn transactions_survive_a_coordinator_kill_and_markers_reach_every_replica() {
    let _limit = TimeLimit::new(
        "transactions_survive_a_coordinator_kill_and_markers_reach_every_replica",
        Duration::from_secs(300),
    );
    let mut replicated = Replicated::start(TOPIC);
    let all = replicated.cluster.ids();
    let mut run = Run::new(&replicated.bootstrap, TOPIC, TRANSACTIONAL_ID);
    let txn_topic = Kind::Transaction.topic();

    // The first InitProducerId creates `__transaction_state`.
    run.until_committed(Phase::Before, BEFORE_KILL);
    let state_partition = coordinators::partition_of(TRANSACTIONAL_ID);
    let victim = coordinator(
        &mut replicated.cluster,
        &all,
        "every node names the leader of the transactional id's partition as its coordinator",
    );
    let layout = coordinators::layout(
        &replicated.cluster.node(victim).bootstrap(),
        Kind::Transaction,
    )
    .expect("the coordinator describes its own topic");
    let placement = layout
        .get(&state_partition)
        .expect("the coordinator describes its own topic's partition");
    eprintln!(
        "{TRANSACTIONAL_ID}: {txn_topic} partition {state_partition}, led by node {victim}: \
         {placement:?}"
    );
    assert_eq!(
        layout.len(),
        COORDINATOR_PARTITIONS as usize,
        "{txn_topic} partitions"
    );
    let mut replicas = placement.replicas.clone();
    replicas.sort_unstable();
    assert_eq!(
        replicas, all,
        "{txn_topic} partition {state_partition} is not replicated on every node"
    );

    // Kill the coordinator with the next transaction's records in the log, before its
    // commit or abort: the survivors' new leader of the partition must finish it.
    let killed_in = run.transactions().len();
    eprintln!("killing node {victim}, the coordinator, during transaction {killed_in}");
    run.transaction(Phase::CoordinatorDown, || {
        replicated.cluster.node(victim).kill();
    });
    run.until_committed(Phase::CoordinatorDown, WHILE_COORDINATOR_DOWN);
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != victim).collect();
    let successor = coordinator(
        &mut replicated.cluster,
        &survivors,
        "the survivors name a new coordinator",
    );
    eprintln!("node {successor} coordinates {TRANSACTIONAL_ID} after the kill");
    assert_ne!(successor, victim);

    replicated.cluster.node(victim).restart();
    replicated.wait_leaders(&all, "the restarted coordinator agrees on the data leaders");
    let after_restart = coordinator(
        &mut replicated.cluster,
        &all,
        "the restarted node agrees on the coordinator",
    );
    run.until_committed(Phase::CoordinatorBack, AFTER_COORDINATOR_BACK);

    // Then the leader of data partition 0, again in the middle of a transaction.
    let data_victim = replicated.wait_leaders(&all, "leaders before the second kill")[&0];
    eprintln!(
        "killing node {data_victim}, leader of partition 0 (coordinator: node \
         {after_restart}), during transaction {}",
        run.transactions().len()
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
    run.wait_stable();
    let committed_read = run.read("read_committed");
    let uncommitted_read = run.read("read_uncommitted");

    let committed = run.count(|o| *o == Outcome::Committed);
    let aborted = run.count(|o| *o == Outcome::Aborted);
    let ambiguous = run.count(Outcome::is_ambiguous);
    let after_kill = run.committed_in(&[
        Phase::CoordinatorDown,
        Phase::CoordinatorBack,
        Phase::DataLeaderDown,
        Phase::AllBack,
    ]);
    println!(
        "cluster transactions: {} run by {} producer instances: {committed} committed \
         ({after_kill} after the coordinator kill, {} while it was down), {aborted} aborted, \
         {ambiguous} ambiguous; {txn_topic} partition {state_partition}: coordinator node \
         {victim} killed in transaction {killed_in} ({:?}), node {successor} took over; node \
         {data_victim} (leader of partition 0) killed later; read back {} records \
         read_committed, {} read_uncommitted",
        run.transactions().len(),
        run.instances(),
        run.committed_in(&[Phase::CoordinatorDown]),
        run.transactions()[killed_in].outcome,
        committed_read.records.len(),
        uncommitted_read.records.len(),
    );
    let ambiguous_list = run.listing(|t| t.outcome.is_ambiguous());
    if !ambiguous_list.is_empty() {
        println!("ambiguous transactions:\n{ambiguous_list}");
    }

    let strays = &committed_read.strays;
    assert!(
        strays.is_empty(),
        "read_committed found records no transaction of this run sent: {strays:?}"
    );
    let partial_commits = run.broken(&committed_read, |t, present| {
        t.outcome == Outcome::Committed && present.iter().any(|n| *n != 1)
    });
    assert!(
        partial_commits.is_empty(),
        "committed transactions not read back whole, each record once, by read_committed:\n{}",
        partial_commits.join("\n")
    );
    let visible_aborts = run.broken(&committed_read, |t, present| {
        let aborted = t.outcome == Outcome::Aborted
            || (t.intent == Intent::Abort && t.outcome.is_ambiguous());
        aborted && present.iter().any(|n| *n != 0)
    });
    assert!(
        visible_aborts.is_empty(),
        "aborted transactions (or ones never committed) visible to read_committed:\n{}",
        visible_aborts.join("\n")
    );
    let torn = run.broken(&committed_read, |t, present| {
        t.outcome.is_ambiguous()
            && !(present.iter().all(|n| *n == 0) || present.iter().all(|n| *n == 1))
    });
    assert!(
        torn.is_empty(),
        "ambiguous transactions read back in part or more than once (not atomic):\n{}",
        torn.join("\n")
    );

    // Committed records also sit where they were acknowledged, in send order.
    let report = history::check(&run.committed_entries(), &committed_read.entries());
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
    let flushed_aborts: Vec<&Transaction<Phase>> = run
        .transactions()
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
            let present = uncommitted_read.copies(t.number);
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

/// Waits until the nodes `among` (all running) agree on the coordinator of the test's
/// transactional id, one of them, and returns it.
fn coordinator(cluster: &mut Cluster, among: &[u64], what: &str) -> u64 {
    wait_coordinator(
        cluster,
        among,
        Kind::Transaction,
        TRANSACTIONAL_ID,
        what,
        |_| true,
    )
}
