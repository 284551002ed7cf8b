//! `commerce bench http` against a real node: it logs in as the admin, writes products or
//! browses the catalog through the gateway, and reports what the node really did.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api};
use commerce_tests::{Node, TimeLimit, cli};

/// The count of `status` answers in the bench's `answers:` line.
fn answers(output: &str, status: &str) -> u64 {
    let line = output
        .lines()
        .find(|line| line.starts_with("answers: "))
        .unwrap_or_else(|| panic!("no answers line in:\n{output}"));
    line.trim_start_matches("answers: ")
        .split(", ")
        .find_map(|part| part.strip_prefix(&format!("{status}: ")))
        .map_or(0, |count| count.parse().unwrap())
}

#[test]
fn bench_http_writes_and_reads_products_through_the_gateway() {
    let _limit = TimeLimit::new("bench_http", Duration::from_secs(120));
    let node = Node::start_with_env(&[
        ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
        ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"),
    ]);
    let target = format!("http://{}", node.http_addr());
    let admin = [
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
    ];

    let mut args = vec![
        "bench",
        "http",
        "--target",
        &target,
        "--scenario",
        "product-write",
        "--concurrency",
        "2",
        "--duration",
        "1",
    ];
    args.extend(admin);
    let written = cli::run_ok(&args, b"", Duration::from_secs(60));
    assert!(written.contains("requests/s"), "{written}");
    assert!(written.contains("p99"), "{written}");
    let created = answers(&written, "201");
    assert!(created > 0, "{written}");
    // Every 201 is a product the catalog now lists.
    let api = Api::new(&node);
    let page = api
        .get("/api/catalog/products?page_size=1", None)
        .expect(200);
    assert_eq!(page.body["total"], created, "{written}");

    let mut args = vec![
        "bench",
        "http",
        "--target",
        &target,
        "--scenario",
        "catalog-read",
        "--concurrency",
        "2",
        "--duration",
        "1",
    ];
    args.extend(admin);
    let read = cli::run_ok(&args, b"", Duration::from_secs(60));
    assert!(answers(&read, "200") > 0, "{read}");
    let errors: u64 = ["0", "404", "429", "500", "503"]
        .iter()
        .map(|status| answers(&read, status))
        .sum();
    assert_eq!(errors, 0, "{read}");
}
