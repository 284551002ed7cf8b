//! Consume-transform-produce with sendOffsetsToTransaction is exactly-once on a three-node
//! cluster while both coordinators fail over (the cluster version of `exactly_once.rs`).
//!
//! The group id and transactional id are picked so that their coordinators (the leaders of
//! their `__consumer_offsets` and `__transaction_state` partitions) start on different nodes.
//! A worker commits each batch's output and the group's offsets in one transaction. The group
//! coordinator is killed -9 between sendOffsetsToTransaction and commit, the worker carries on
//! with the two survivors, the node restarts; then the same for the transaction coordinator.
//! After each kill, and after any failed call, a new worker instance (same group, same
//! transactional.id) resumes from the group's committed offsets. At the end the output read
//! with read_committed holds every input record transformed exactly once, and the group's
//! committed offsets are the input's end offsets.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commerce_tests::coordinators::{self, Kind, wait_coordinator};
use commerce_tests::eos::{self, Pipeline, Worker};
use commerce_tests::replicated::{self, PARTITIONS, Replicated};
use commerce_tests::{TimeLimit, group, kafka};

const INPUT: &str = "eos-cluster-in";
const OUTPUT: &str = "eos-cluster-out";
const GROUP: &str = "eos-cluster-group";
/// Transactional ids tried, `-0`, `-1`, …, until one's coordinator differs from the group's.
const TXN_PREFIX: &str = "eos-cluster-worker";
const RECORDS: usize = 1_500;
const PER_TRANSACTION: usize = 50;
/// How long one phase may take to commit its transactions, or the end to make progress.
const PHASE_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    /// The group coordinator was killed (during this phase's first transaction).
    GroupDown,
    GroupBack,
    /// The transaction coordinator was killed (during this phase's first transaction).
    TxnDown,
    AllBack,
}

/// The processing: the current worker instance (none after a failure) and what it did.
struct Run {
    pipeline: Pipeline,
    worker: Option<Worker>,
    instances: usize,
    /// Phase and input records of every committed transaction.
    commits: Vec<(Phase, usize)>,
    failures: Vec<(Phase, String)>,
}

impl Run {
    /// One transaction, `midway` between sendOffsetsToTransaction and commit (or wherever
    /// it stopped); the records it committed, 0 at the end of input or on a failure (then the
    /// instance is dropped).
    fn transaction(&mut self, phase: Phase, midway: impl FnOnce()) -> usize {
        if self.worker.is_none() {
            self.instances += 1;
            self.worker = Some(Worker::start(&self.pipeline));
        }
        let (started, mut midway) = (Instant::now(), Some(midway));
        let result = self
            .worker
            .as_ref()
            .unwrap()
            .process(&self.pipeline, &mut midway);
        if let Some(midway) = midway.take() {
            midway();
        }
        match result {
            Ok(records) if records.is_empty() => 0,
            Ok(records) => {
                self.commits.push((phase, records.len()));
                let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
                for (partition, offset) in &records {
                    ranges.entry(*partition).or_insert((*offset, *offset)).1 = *offset;
                }
                eprintln!(
                    "transaction {} ({phase:?}, worker {}): committed after {:?}, input offsets \
                     {ranges:?}",
                    self.commits.len(),
                    self.instances,
                    started.elapsed()
                );
                records.len()
            }
            Err(why) => {
                eprintln!("worker {} failed in {phase:?}: {why}", self.instances);
                self.failures.push((phase, why));
                self.worker = None;
                0
            }
        }
    }

    fn until_committed(&mut self, phase: Phase, count: usize) {
        let deadline = Instant::now() + PHASE_WITHIN;
        while self.committed_in(phase) < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} transactions committed within {PHASE_WITHIN:?} in {phase:?}; \
                 failures: {:?}",
                self.committed_in(phase),
                self.failures
            );
            self.transaction(phase, || {});
        }
    }

    fn committed_in(&self, phase: Phase) -> usize {
        self.commits.iter().filter(|(p, _)| *p == phase).count()
    }
}

/// Whether every partition's committed offset is past its last input record.
fn consumed_all(offsets: &BTreeMap<i32, Option<i64>>, ends: &BTreeMap<i32, Option<i64>>) -> bool {
    ends.iter()
        .all(|(partition, end)| offsets.get(partition).copied().flatten() >= *end)
}

/// The group's committed offset per input partition, by a client outside the group.
fn committed(bootstrap: &str) -> BTreeMap<i32, Option<i64>> {
    (0..PARTITIONS)
        .map(|p| (p, group::committed(bootstrap, GROUP, INPUT, p)))
        .collect()
}

/// The first transactional id whose coordinator partition and preferred leader (first
/// replica) both differ from the group's; (id, group's preferred node, id's preferred node).
fn pick_transactional_id(replicated: &mut Replicated) -> (String, u64, u64) {
    let address = replicated.cluster.node(1).bootstrap();
    let offsets = coordinators::created(&address, Kind::Group);
    let txns = coordinators::created(&address, Kind::Transaction);
    let group_partition = coordinators::partition_of(GROUP);
    let group_node = offsets[&group_partition].replicas[0];
    let (txn_id, txn_partition, txn_node) = (0..64)
        .map(|n| {
            let id = format!("{TXN_PREFIX}-{n}");
            let partition = coordinators::partition_of(&id);
            (id, partition, txns[&partition].replicas[0])
        })
        .find(|(_, partition, node)| *partition != group_partition && *node != group_node)
        .unwrap_or_else(|| panic!("no transactional id away from node {group_node}"));
    eprintln!(
        "{GROUP}: __consumer_offsets-{group_partition}, preferred node {group_node}; \
         {txn_id}: __transaction_state-{txn_partition}, preferred node {txn_node}"
    );
    (txn_id, group_node, txn_node)
}

/// Kills `victim`, `kind`'s coordinator of `key`, during a transaction (after its offsets
/// were sent), commits a few more with the survivors and a new worker instance (which reads
/// the group's offsets from whichever node coordinates it now), restarts the node.
fn kill_coordinator(run: &mut Run, replicated: &mut Replicated, kind: Kind, victim: u64) {
    let (phase, key) = match kind {
        Kind::Group => (Phase::GroupDown, run.pipeline.group.clone()),
        Kind::Transaction => (Phase::TxnDown, run.pipeline.transactional_id.clone()),
    };
    eprintln!("killing node {victim}, the {kind:?} coordinator of {key}");
    run.transaction(phase, || replicated.cluster.node(victim).kill());
    run.worker = None;
    run.until_committed(phase, 4);
    let all = replicated.cluster.ids();
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != victim).collect();
    let what = "the survivors name a new coordinator";
    let cluster = &mut replicated.cluster;
    let successor = wait_coordinator(cluster, &survivors, kind, &key, what, |_| true);
    eprintln!("node {successor} coordinates {key} while node {victim} is down");
    replicated.cluster.node(victim).restart();
    replicated.wait_leaders(&all, "the cluster settles after the restart");
}

#[test]
fn exactly_once_survives_both_coordinators_failing_over() {
    let _limit = TimeLimit::new("cluster_exactly_once", Duration::from_secs(360));
    let mut replicated = Replicated::start(INPUT);
    let all = replicated.cluster.ids();
    let bootstrap = replicated.bootstrap.clone();
    replicated::create_replicated_topic(&bootstrap, OUTPUT, PARTITIONS);
    let input = kafka::producer(&bootstrap, &[("enable.idempotence", "true")]);
    for i in 0..RECORDS {
        let (value, partition) = (format!("{i:05}"), i32::try_from(i).unwrap() % PARTITIONS);
        kafka::send(&input, INPUT, None, &value, Some(partition), None);
    }
    let mut ends: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    for record in kafka::flush_all_acked(&input) {
        let end = ends.entry(record.partition).or_insert(Some(0));
        *end = (*end).max(Some(record.offset + 1));
    }
    drop(input);

    // Both coordinators on their preferred leaders: two different nodes.
    let (txn_id, group_node, txn_node) = pick_transactional_id(&mut replicated);
    let cluster = &mut replicated.cluster;
    let what = "the group's coordinator is its preferred leader";
    let group_victim =
        wait_coordinator(cluster, &all, Kind::Group, GROUP, what, |l| l == group_node);
    let what = "the transactional id's coordinator is its preferred leader";
    let txn_start = wait_coordinator(cluster, &all, Kind::Transaction, &txn_id, what, |l| {
        l == txn_node
    });
    assert_ne!(
        group_victim, txn_start,
        "the coordinators start on one node"
    );

    let pipeline = Pipeline {
        bootstrap: bootstrap.clone(),
        input: INPUT.to_string(),
        output: OUTPUT.to_string(),
        group: GROUP.to_string(),
        transactional_id: txn_id.clone(),
        per_transaction: PER_TRANSACTION,
    };
    let mut run = Run {
        pipeline,
        worker: None,
        instances: 0,
        commits: Vec::new(),
        failures: Vec::new(),
    };
    run.until_committed(Phase::Before, 3);
    kill_coordinator(&mut run, &mut replicated, Kind::Group, group_victim);
    run.until_committed(Phase::GroupBack, 2);
    // Then whichever node coordinates the transactional id now.
    let what = "the transaction coordinator before its kill";
    let cluster = &mut replicated.cluster;
    let txn_victim = wait_coordinator(cluster, &all, Kind::Transaction, &txn_id, what, |_| true);
    kill_coordinator(&mut run, &mut replicated, Kind::Transaction, txn_victim);

    // The rest of the input, until the group's offsets reach the input's end.
    let mut progress = Instant::now();
    let mut offsets = committed(&bootstrap);
    while !consumed_all(&offsets, &ends) && progress.elapsed() < PHASE_WITHIN {
        if run.transaction(Phase::AllBack, || {}) > 0 {
            progress = Instant::now();
        } else {
            offsets = committed(&bootstrap);
        }
    }
    run.worker = None;
    let offsets = committed(&bootstrap);

    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let output = eos::read_stable(&bootstrap, OUTPUT, &partitions);
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for record in &output {
        *copies.entry(record.value_str().to_string()).or_default() += 1;
    }
    let expected: Vec<String> = (0..RECORDS)
        .map(|i| eos::transformed(&format!("{i:05}")))
        .collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|v| !copies.contains_key(*v))
        .collect();
    let duplicated: Vec<(&String, &usize)> = copies.iter().filter(|(_, n)| **n > 1).collect();
    let strays: Vec<&String> = copies.keys().filter(|v| !expected.contains(v)).collect();
    println!(
        "cluster exactly-once: {} transactions committed by {} worker instances ({} while the \
         group coordinator node {group_victim} was down, {} while the transaction coordinator \
         node {txn_victim} was down), {} failed; {} input records in committed transactions \
         (of {RECORDS}); {} output records read_committed; committed offsets {offsets:?}, input \
         ends {ends:?}",
        run.commits.len(),
        run.instances,
        run.committed_in(Phase::GroupDown),
        run.committed_in(Phase::TxnDown),
        run.failures.len(),
        run.commits.iter().map(|(_, n)| n).sum::<usize>(),
        output.len(),
    );
    let first = |n: usize| n.min(10);
    assert!(
        missing.is_empty(),
        "{} input records lost: {:?}",
        missing.len(),
        &missing[..first(missing.len())]
    );
    assert!(
        duplicated.is_empty(),
        "{} output records more than once (offsets lost or not failed over): {:?}",
        duplicated.len(),
        &duplicated[..first(duplicated.len())]
    );
    assert!(strays.is_empty(), "output no input produced: {strays:?}");
    assert_eq!(output.len(), RECORDS);
    // A consumer's position may pass control batches after the last record (a
    // transaction's marker), so a committed offset lies between the last record's and the
    // log end.
    assert!(
        consumed_all(&offsets, &ends),
        "the group's committed offsets {offsets:?} short of the input's last records {ends:?}"
    );
    for (partition, offset) in &offsets {
        let (_, high_watermark) = kafka::watermarks(&bootstrap, INPUT, *partition);
        assert!(
            offset.is_some_and(|offset| offset <= high_watermark),
            "partition {partition}: committed {offset:?} past the log end {high_watermark}"
        );
    }
    for phase in [Phase::GroupDown, Phase::TxnDown] {
        assert!(
            run.committed_in(phase) >= 1,
            "no transaction committed in {phase:?}"
        );
    }
}
