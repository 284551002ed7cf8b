//! Issue 15, item 1: no card number at rest. Orders are placed with a succeeding and a
//! declining test card and run to their end; then every file under each node's data
//! directory (raw bytes: Raft logs, fjall journals and tables, partition segments, secrets)
//! and the node's log, and every record (key and value) of every topic, are searched
//! for the cards' digits. Only the provider's token and the last four digits may remain.
//!
//! A raw scan cannot see into compressed blocks: the fjall tables here compress only from
//! their third level, which a test this small never reaches, and the topics' batches are
//! written uncompressed by the services.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use commerce_tests::cluster::Cluster;
use commerce_tests::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api};
use commerce_tests::kafka;
use commerce_tests::orders::{
    DECLINED_CARD, GOOD_CARD, create_product, customer, order_body, place, start, wait_for_status,
};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::consumer::Consumer;
use serde_json::json;

const CARDS: [&str; 2] = [GOOD_CARD, DECLINED_CARD];

/// Places a good-card and a declined-card order through `api` and waits until the first is
/// confirmed and the second cancelled: every service has handled its card data by then.
fn run_orders(api: &Api, sku: &str, email: &str) {
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let product_id = create_product(api, sku);
    api.put(
        &format!("/api/inventory/{product_id}"),
        Some(&admin),
        &json!({"available": 10}),
    )
    .expect(200);
    let (_, token) = customer(api, email);
    let good = place(api, &token, &order_body(&product_id, 1, GOOD_CARD));
    let declined = place(api, &token, &order_body(&product_id, 1, DECLINED_CARD));
    wait_for_status(api, &token, &good, "confirmed");
    let cancelled = wait_for_status(api, &token, &declined, "cancelled");
    assert_eq!(cancelled["cancel_reason"], "payment_failed");
    // The payments show the last four digits, as before.
    for (order, last4) in [(&good, "4242"), (&declined, "0002")] {
        let payment = api
            .get(&format!("/api/payments/orders/{order}"), Some(&token))
            .expect(200);
        assert_eq!(payment.body["card_last4"], last4);
    }
    assert_eq!(
        api.get(&format!("/api/payments/orders/{declined}"), Some(&token))
            .body["failure_reason"],
        "card_declined"
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn holds(bytes: &[u8], card: &str) -> bool {
    bytes
        .windows(card.len())
        .any(|window| window == card.as_bytes())
}

/// Every file under the node's data directory, and its log, free of the cards' digits.
fn assert_no_card_on_disk(node: &Node) {
    let mut files = files_under(&node.data_dir());
    assert!(files.len() > 10, "the data directory has the node's files");
    files.push(node.log_path());
    for file in files {
        // A file may go away between listing and reading (a segment compacted meanwhile).
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for card in CARDS {
            assert!(!holds(&bytes, card), "{card} is in {}", file.display());
        }
    }
}

/// Every record of every topic (key and value) free of the cards' digits.
fn assert_no_card_in_topics(bootstrap: &str) {
    let metadata = kafka::consumer(bootstrap)
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("topic metadata");
    let mut seen = 0;
    for topic in metadata.topics() {
        let partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            continue;
        }
        for record in kafka::read_all(
            bootstrap,
            topic.name(),
            &partitions,
            Duration::from_secs(60),
        ) {
            seen += 1;
            let mut parts = vec![record.value.clone()];
            parts.extend(record.key.clone());
            for part in &parts {
                for card in CARDS {
                    assert!(
                        !holds(part, card),
                        "{card} is in a record of {} at offset {}: {}",
                        topic.name(),
                        record.offset,
                        String::from_utf8_lossy(part)
                    );
                }
            }
        }
    }
    assert!(
        seen > 10,
        "the topics hold the orders' events ({seen} records)"
    );
}

#[test]
fn no_card_number_is_kept_on_disk_or_in_any_topic() {
    let _limit = TimeLimit::new("no_card_number_is_kept", Duration::from_secs(240));
    let mut node = start("30000");
    let api = Api::new(&node);
    run_orders(&api, "CARD-1", "card-holder@example.com");
    assert_no_card_in_topics(&node.bootstrap());
    // Stopped first so that every write the node buffered is on disk.
    node.terminate();
    assert_no_card_on_disk(&node);
}

#[test]
fn no_card_number_is_kept_by_any_node_of_a_cluster() {
    let _limit = TimeLimit::new("no_card_number_in_a_cluster", Duration::from_secs(300));
    let mut cluster = Cluster::start_with_env(
        3,
        &[
            ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
            ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"),
            ("COMMERCE_SAGA_STEP_TIMEOUT_MS", "30000"),
        ],
    );
    let api = Api::new(cluster.node(1));
    wait_for("node 1 ready", Duration::from_secs(60), || {
        (api.get("/health/ready", None).status == 200).then_some(())
    });
    run_orders(&api, "CARD-3", "cluster-card-holder@example.com");
    assert_no_card_in_topics(&cluster.bootstrap_of(cluster.ids()));
    let ids = cluster.ids();
    for &id in &ids {
        cluster.node(id).terminate();
    }
    for id in ids {
        assert_no_card_on_disk(cluster.node(id));
    }
}
