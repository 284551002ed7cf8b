//! Kafka behaviour scenarios, written once and run against any bootstrap address: a single
//! node and a three-node cluster run the very same code (`tests/tests/kafka_behaviour.rs`),
//! so a behaviour that differs between the two fails a test.
//!
//! Each scenario is a plain function of the bootstrap address that uses librdkafka exactly
//! as a client application would: it creates its own topics (replication factor = the
//! number of brokers, up to 3), produces, consumes, and asserts what would break for a
//! client if the broker behaved otherwise. [`run`] runs them in turn, each on its own
//! thread named after it (a panic names the scenario) and each within its own time limit,
//! and reports every failure at the end rather than stopping at the first.
//!
//! - [`produce`]: a new topic takes produce at once, densely numbered; the idempotent producer.
//! - [`transactions`]: read_committed past aborted transactions, the last stable offset, and a
//!   producer fenced by a newer instance of its transactional id.
//! - [`groups`]: cooperative-sticky handover, no head-of-line blocking across partitions,
//!   a new member resuming from committed offsets.
//! - [`offsets`]: offsets-for-times and consumer lag count records only.

pub mod groups;
pub mod offsets;
pub mod produce;
pub mod transactions;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;

use crate::kafka;

/// How long one scenario may take before it is reported as hung (generous: it fails
/// instead of hanging, it does not time the broker).
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(150);
/// How long a topic may take to be created while a cluster settles.
const CREATE_LIMIT: Duration = Duration::from_secs(60);

/// One behaviour, run against a bootstrap address.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(&str),
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "new_topic_takes_produce_at_once_and_commits",
        run: produce::new_topic_takes_produce_at_once_and_commits,
    },
    Scenario {
        name: "idempotent_producer_writes_each_record_once_in_order",
        run: produce::idempotent_producer_writes_each_record_once_in_order,
    },
    Scenario {
        name: "read_committed_reads_past_aborted_transactions",
        run: transactions::read_committed_reads_past_aborted_transactions,
    },
    Scenario {
        name: "fenced_transactional_producer_gets_a_fatal_error",
        run: transactions::fenced_transactional_producer_gets_a_fatal_error,
    },
    Scenario {
        name: "cooperative_sticky_handover_consumes_each_record_once",
        run: groups::cooperative_sticky_handover_consumes_each_record_once,
    },
    Scenario {
        name: "a_backlog_on_one_partition_does_not_block_the_others",
        run: groups::a_backlog_on_one_partition_does_not_block_the_others,
    },
    Scenario {
        name: "a_new_member_resumes_from_committed_offsets",
        run: groups::a_new_member_resumes_from_committed_offsets,
    },
    Scenario {
        name: "offsets_for_times_and_lag_count_records_only",
        run: offsets::offsets_for_times_and_lag_count_records_only,
    },
];

/// A scenario left out of a run, and why (printed when the run starts).
pub struct Skip {
    pub name: &'static str,
    pub reason: &'static str,
}

/// Runs every scenario not in `skips` against `bootstrap`, one after another, each on a
/// thread named after it and within [`SCENARIO_LIMIT`]. Panics at the end naming every
/// scenario that failed (their own panic messages are above, under their thread names).
pub fn run(target: &str, bootstrap: &str, skips: &[Skip]) {
    for skip in skips {
        assert!(
            SCENARIOS.iter().any(|scenario| scenario.name == skip.name),
            "skip list names no scenario {}",
            skip.name
        );
        eprintln!("[{target}] SKIPPED scenario {}: {}", skip.name, skip.reason);
    }
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        if skips.iter().any(|skip| skip.name == scenario.name) {
            continue;
        }
        eprintln!("[{target}] scenario {} ...", scenario.name);
        let started = Instant::now();
        let outcome = run_one(*scenario, bootstrap);
        let took = started.elapsed();
        match outcome {
            Ok(()) => eprintln!("[{target}] scenario {} passed in {took:.1?}", scenario.name),
            Err(why) => {
                eprintln!(
                    "[{target}] scenario {} FAILED after {took:.1?}: {why}",
                    scenario.name
                );
                failures.push(format!("{} ({why})", scenario.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "[{target}] {} scenario(s) failed: {}",
        failures.len(),
        failures.join("; ")
    );
}

/// One scenario on its own thread; `Err` with why if it panicked or overran its limit. An
/// overrunning thread is left behind (its topics are its own), so the next scenarios
/// still run and report.
fn run_one(scenario: Scenario, bootstrap: &str) -> Result<(), String> {
    let (done, finished) = mpsc::channel();
    let bootstrap = bootstrap.to_string();
    let thread = std::thread::Builder::new()
        .name(scenario.name.to_string())
        .spawn(move || {
            (scenario.run)(&bootstrap);
            let _ = done.send(());
        })
        .map_err(|error| format!("cannot start its thread: {error}"))?;
    match finished.recv_timeout(SCENARIO_LIMIT) {
        Ok(()) => thread
            .join()
            .map_err(|_| "panicked after finishing".to_string()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let message = thread
                .join()
                .err()
                .and_then(|panic| {
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_else(|| "panicked".to_string());
            Err(message)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("did not finish within {SCENARIO_LIMIT:?}"))
        }
    }
}

/// The replication factor a client would ask for here: every broker, up to 3.
pub fn replication_factor(bootstrap: &str) -> i32 {
    let metadata = kafka::consumer(bootstrap)
        .fetch_metadata(None, kafka::REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("Metadata failed: {error}"));
    i32::try_from(metadata.brokers().len().clamp(1, 3)).unwrap_or(1)
}

/// Creates `name` with `partitions` partitions, replicated on every broker (up to 3).
/// Retried while the broker answers a retriable error (a cluster still electing its
/// controller); a retry that finds the topic made by the previous attempt is a success.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let replication = replication_factor(bootstrap);
    let topic = configs.iter().fold(
        NewTopic::new(name, partitions, TopicReplication::Fixed(replication)),
        |topic, (key, value)| topic.set(key, value),
    );
    crate::replicated::create_until(
        bootstrap,
        &topic,
        Instant::now() + CREATE_LIMIT,
        &format!("{name} (replication factor {replication})"),
    );
}

/// The values of `records`, in their order.
pub fn values(records: &[kafka::Record]) -> Vec<String> {
    records
        .iter()
        .map(|record| record.value_str().to_string())
        .collect()
}
