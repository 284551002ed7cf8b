//! `commerce bench transactions` against a real node: it runs real transactions (every one
//! leaves its records visible to read_committed and a commit marker on each partition it
//! wrote) and reports their rate and latency.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::cli::run_ok;
use commerce_tests::{Node, TimeLimit, kafka};

#[test]
fn bench_transactions_commits_every_transaction_it_reports() {
    let _limit = TimeLimit::new(
        "bench_transactions_commits_every_transaction_it_reports",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let b = node.bootstrap();
    let output = run_ok(
        &[
            "bench",
            "transactions",
            "--topic",
            "bench-txn",
            "--partitions",
            "3",
            "--transactions",
            "40",
            "--records-per-txn",
            "4",
            "--record-size",
            "100",
            "--brokers",
            &b,
        ],
        b"",
        Duration::from_secs(90),
    );
    assert!(
        output.contains("40 transactions of 4 records committed"),
        "{output}"
    );
    assert!(
        output.contains("transaction latency (begin to commit): p50"),
        "{output}"
    );

    let committed = kafka::read_all_with(
        &b,
        "bench-txn",
        &[0, 1, 2],
        Duration::from_secs(30),
        &[("isolation.level", "read_committed")],
    );
    assert_eq!(committed.len(), 160, "every record of every transaction");
    // 4 records round robin over 3 partitions: each transaction wrote to all three, and its
    // commit left a marker (one offset) on each.
    let log_end: i64 = (0..3)
        .map(|p| kafka::watermarks(&b, "bench-txn", p).1)
        .sum();
    assert_eq!(
        log_end,
        160 + 40 * 3,
        "records plus one marker per partition"
    );
}
