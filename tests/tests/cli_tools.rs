//! The `commerce` Kafka tools (topic, produce, consume, bench) used as an operator would.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::time::Duration;

use commerce_tests::cli::{run, run_ok};
use commerce_tests::{Node, TimeLimit, kafka};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn produce_then_consume_round_trips_keyed_lines() {
    let _limit = TimeLimit::new(
        "produce_then_consume_round_trips_keyed_lines",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let brokers = node.bootstrap();
    let b = brokers.as_str();
    run_ok(
        &[
            "topic",
            "create",
            "cli-roundtrip",
            "--partitions",
            "1",
            "--brokers",
            b,
        ],
        b"",
        CLI_TIMEOUT,
    );

    let lines = "user-1:created\nuser-2:renamed:twice\nuser-1:deleted\n";
    let output = run(
        &[
            "produce",
            "cli-roundtrip",
            "--key-separator",
            ":",
            "--brokers",
            b,
        ],
        lines.as_bytes(),
        CLI_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("produced 3 records"),
        "produce reports its count: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let consume = [
        "consume",
        "cli-roundtrip",
        "--from-beginning",
        "--count",
        "3",
        "--timeout-ms",
        "20000",
    ];
    let printed = run_ok(
        &[&consume[..], &["--key-separator", ":", "--brokers", b]].concat(),
        b"",
        CLI_TIMEOUT,
    );
    assert_eq!(printed, lines, "consume prints key:value lines as produced");

    let formatted = run_ok(
        &[
            &consume[..],
            &["--format", "%p/%o %k=%v\\n", "--brokers", b],
        ]
        .concat(),
        b"",
        CLI_TIMEOUT,
    );
    assert_eq!(
        formatted,
        "0/0 user-1=created\n0/1 user-2=renamed:twice\n0/2 user-1=deleted\n"
    );

    // The same records as any Kafka client sees them.
    let stored = kafka::read_all(b, "cli-roundtrip", &[0], Duration::from_secs(30));
    let pairs: Vec<(&str, &str)> = stored
        .iter()
        .map(|r| (r.key_str(), r.value_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("user-1", "created"),
            ("user-2", "renamed:twice"),
            ("user-1", "deleted")
        ]
    );
}

#[test]
fn consume_exit_at_end_stops_after_the_last_record() {
    let _limit = TimeLimit::new(
        "consume_exit_at_end_stops_after_the_last_record",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let b = node.bootstrap();
    run_ok(
        &[
            "topic",
            "create",
            "cli-eof",
            "--partitions",
            "2",
            "--brokers",
            &b,
        ],
        b"",
        CLI_TIMEOUT,
    );
    run_ok(
        &["produce", "cli-eof", "--partition", "1", "--brokers", &b],
        b"a\nb\nc\n",
        CLI_TIMEOUT,
    );
    let printed = run_ok(
        &[
            "consume",
            "cli-eof",
            "--from-beginning",
            "--exit-at-end",
            "--brokers",
            &b,
        ],
        b"",
        CLI_TIMEOUT,
    );
    assert_eq!(printed, "a\nb\nc\n");
    let tail = run_ok(
        &[
            "consume",
            "cli-eof",
            "--partition",
            "1",
            "--offset",
            "1",
            "--exit-at-end",
            "--brokers",
            &b,
        ],
        b"",
        CLI_TIMEOUT,
    );
    assert_eq!(tail, "b\nc\n", "--offset starts at that offset");
}

#[test]
fn topic_create_list_describe_delete() {
    let _limit = TimeLimit::new(
        "topic_create_list_describe_delete",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let b = node.bootstrap();
    let created = run_ok(
        &[
            "topic",
            "create",
            "cli-admin",
            "-p",
            "2",
            "-r",
            "1",
            "-c",
            "retention.ms=3600000",
            "--brokers",
            &b,
        ],
        b"",
        CLI_TIMEOUT,
    );
    assert!(created.contains("created topic cli-admin"), "{created}");

    let listed = run_ok(&["topic", "list", "--brokers", &b], b"", CLI_TIMEOUT);
    let row = listed
        .lines()
        .find(|line| line.split_whitespace().next() == Some("cli-admin"));
    let row = row.unwrap_or_else(|| panic!("topic list lacks cli-admin:\n{listed}"));
    assert_eq!(
        row.split_whitespace().nth(1),
        Some("2"),
        "partition count in: {row}"
    );

    let described = run_ok(
        &["topic", "describe", "cli-admin", "--brokers", &b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(described.contains("PARTITIONS  2"), "{described}");
    assert!(
        described.contains("retention.ms=3600000"),
        "describe shows the topic config:\n{described}"
    );

    let again = run(
        &["topic", "create", "cli-admin", "--brokers", &b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(!again.status.success(), "creating an existing topic fails");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cli-admin"),
        "the error names the topic"
    );

    run_ok(
        &["topic", "delete", "cli-admin", "--brokers", &b],
        b"",
        CLI_TIMEOUT,
    );
    commerce_tests::wait_for("cli-admin to be deleted", Duration::from_secs(15), || {
        kafka::partitions_of(&b, "cli-admin")
            .is_none()
            .then_some(())
    });
    let missing = run(
        &["topic", "describe", "cli-admin", "--brokers", &b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(
        !missing.status.success(),
        "describing a deleted topic fails"
    );
    assert_eq!(
        kafka::partitions_of(&b, "cli-admin"),
        None,
        "describe did not auto-create the topic"
    );
}

#[test]
fn bench_produce_then_bench_consume_count_every_record() {
    let _limit = TimeLimit::new(
        "bench_produce_then_bench_consume_count_every_record",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let b = node.bootstrap();
    let produced = run_ok(
        &[
            "bench",
            "produce",
            "--topic",
            "cli-bench",
            "--partitions",
            "3",
            "--records",
            "20000",
            "--record-size",
            "200",
            "--acks",
            "all",
            "--brokers",
            &b,
        ],
        b"",
        Duration::from_secs(120),
    );
    assert!(produced.contains("20000 records produced"), "{produced}");
    assert!(
        produced.contains("p99"),
        "the summary has latency percentiles: {produced}"
    );
    assert_eq!(
        kafka::partitions_of(&b, "cli-bench"),
        Some(vec![0, 1, 2]),
        "--partitions created the topic"
    );
    let total: i64 = (0..3)
        .map(|p| kafka::watermarks(&b, "cli-bench", p).1)
        .sum();
    assert_eq!(
        total, 20_000,
        "the log holds exactly the records the bench reported"
    );

    let consumed = run_ok(
        &["bench", "consume", "--topic", "cli-bench", "--brokers", &b],
        b"",
        Duration::from_secs(120),
    );
    assert!(consumed.contains("20000 records consumed"), "{consumed}");
}

#[test]
fn produce_fails_clearly_when_no_broker_answers() {
    let _limit = TimeLimit::new(
        "produce_fails_clearly_when_no_broker_answers",
        Duration::from_secs(60),
    );
    // A port that nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let output = run(
        &[
            "produce",
            "nowhere",
            "--brokers",
            &closed,
            "-X",
            "message.timeout.ms=2000",
        ],
        b"one\ntwo\n",
        CLI_TIMEOUT,
    );
    assert!(
        !output.status.success(),
        "produce must fail when nothing is delivered"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2 of 2 records were not delivered"),
        "a clear error: {stderr}"
    );
}

#[test]
fn consume_of_a_missing_topic_fails_clearly() {
    let _limit = TimeLimit::new(
        "consume_of_a_missing_topic_fails_clearly",
        Duration::from_secs(60),
    );
    let node = Node::start();
    let b = node.bootstrap();
    let output = run(
        &["consume", "no-such-topic", "--exit-at-end", "--brokers", &b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no-such-topic"),
        "the error names the topic: {stderr}"
    );
    assert_eq!(
        kafka::partitions_of(&b, "no-such-topic"),
        None,
        "consume did not auto-create it"
    );
}

#[test]
fn version_names_the_package_version_and_the_commit_built_from() {
    let output = run_ok(&["--version"], b"", CLI_TIMEOUT);
    let line = output.trim();
    let rest = line
        .strip_prefix(&format!("commerce {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| {
            panic!(
                "`commerce --version` printed {line:?}, not \"commerce {} (commit <id>)\"",
                env!("CARGO_PKG_VERSION")
            )
        });
    let commit = rest.strip_suffix("-dirty").unwrap_or(rest);
    // The tests run from the workspace's own checkout; outside one the binary says so.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(
            commit, head,
            "`commerce --version` names commit {commit} but the checkout is at {head}: \
             rebuild the binary (`cargo build --release -p commerce`)"
        ),
        None => assert_eq!(commit, "unknown", "not a git checkout: {line:?}"),
    }
}
