//! `commerce consume --group` and `commerce group list|describe|reset-offsets|delete` used as
//! an operator would, against a real node.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::cli::{run, run_ok};
use commerce_tests::group::{self, Member, drive};
use commerce_tests::{Node, TimeLimit, kafka};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);
const TOPIC: &str = "cli-group";

fn produce(bootstrap: &str, partition: i32, values: &[&str]) {
    let producer = kafka::producer(bootstrap, &[]);
    for value in values {
        kafka::send(&producer, TOPIC, None, value, Some(partition), None);
    }
    kafka::flush_all_acked(&producer);
}

fn committed(bootstrap: &str) -> (Option<i64>, Option<i64>) {
    (
        group::committed(bootstrap, "billing", TOPIC, 0),
        group::committed(bootstrap, "billing", TOPIC, 1),
    )
}

/// `commerce consume TOPIC --group billing -e`: the lines it printed, sorted.
fn consume_as_group(brokers: &str) -> Vec<String> {
    let out = run_ok(
        &[
            "consume",
            TOPIC,
            "--group",
            "billing",
            "--from-beginning",
            "-e",
            "--brokers",
            brokers,
        ],
        b"",
        CLI_TIMEOUT,
    );
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn group_tools_consume_describe_reset_and_delete() {
    let _limit = TimeLimit::new(
        "group_tools_consume_describe_reset_and_delete",
        Duration::from_secs(240),
    );
    let node = Node::start();
    let brokers = node.bootstrap();
    let b = brokers.as_str();
    kafka::create_topic(b, TOPIC, 2, &[]);
    produce(b, 0, &["a0", "a1", "a2", "a3", "a4"]);
    produce(b, 1, &["b0", "b1", "b2", "b3", "b4"]);

    // A group consumer prints everything once and commits what it printed.
    assert_eq!(
        consume_as_group(b),
        ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]
    );
    assert_eq!(committed(b), (Some(5), Some(5)));
    // Run again, it has nothing left to print.
    assert!(consume_as_group(b).is_empty());

    let listed = run_ok(&["group", "list", "--brokers", b], b"", CLI_TIMEOUT);
    let line = listed
        .lines()
        .find(|line| line.starts_with("billing "))
        .unwrap_or_else(|| panic!("billing not listed:\n{listed}"));
    assert!(line.contains("Empty"), "{line}");

    produce(b, 0, &["a5", "a6", "a7"]);
    let described = run_ok(
        &["group", "describe", "billing", "--brokers", b],
        b"",
        CLI_TIMEOUT,
    );
    let rows: Vec<Vec<&str>> = described
        .lines()
        .filter(|line| line.starts_with(TOPIC))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![TOPIC, "0", "5", "8", "3"],
            vec![TOPIC, "1", "5", "5", "0"]
        ],
        "{described}"
    );

    // While a member is in the group: described with its partitions; no reset, no delete.
    let mut member = Member::join(b, "billing", TOPIC, &[]);
    drive(
        &mut [&mut member],
        "the member's assignment",
        Duration::from_secs(60),
        |m| m[0].assigned().len() == 2,
    );
    let described = run_ok(
        &["group", "describe", "billing", "--brokers", b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(described.contains("state Stable"), "{described}");
    assert!(described.contains("1 member(s)"), "{described}");
    assert!(
        described.contains(&format!("{TOPIC}:[0, 1]")),
        "{described}"
    );
    let refused = run(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
            "--brokers",
            b,
        ],
        b"",
        CLI_TIMEOUT,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("active member"));
    let refused = run(
        &["group", "delete", "billing", "--brokers", b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(!refused.status.success());
    drop(member);
    assert_eq!(
        committed(b),
        (Some(5), Some(5)),
        "the member committed nothing"
    );

    // A dry run changes nothing; --execute does, clipped to each partition's range.
    let plan = run_ok(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            TOPIC,
            "--to-earliest",
            "--brokers",
            b,
        ],
        b"",
        CLI_TIMEOUT,
    );
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(committed(b), (Some(5), Some(5)));
    for (flags, expected) in [
        (&["--to-earliest"][..], (Some(0), Some(0))),
        (&["--to-latest"][..], (Some(8), Some(5))),
        (&["--to-offset", "7"][..], (Some(7), Some(5))),
        (&["--to-offset", "2"][..], (Some(2), Some(2))),
    ] {
        let mut args = vec![
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            TOPIC,
            "--execute",
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--brokers", b]);
        run_ok(&args, b"", CLI_TIMEOUT);
        assert_eq!(committed(b), expected, "after {flags:?}");
    }
    // The group resumes from the reset offsets.
    assert_eq!(
        consume_as_group(b),
        ["a2", "a3", "a4", "a5", "a6", "a7", "b2", "b3", "b4"]
    );

    let deleted = run_ok(
        &["group", "delete", "billing", "--brokers", b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(deleted.contains("deleted group billing"), "{deleted}");
    assert_eq!(committed(b), (None, None));
    let listed = run_ok(&["group", "list", "--brokers", b], b"", CLI_TIMEOUT);
    assert!(
        !listed.lines().any(|line| line.starts_with("billing ")),
        "{listed}"
    );
    let missing = run(
        &["group", "describe", "billing", "--brokers", b],
        b"",
        CLI_TIMEOUT,
    );
    assert!(!missing.status.success());
}
