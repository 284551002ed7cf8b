//! kill -9 in the middle of an acks=all produce loses no acknowledged record.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use commerce_tests::kafka::{self, Record};
use commerce_tests::{Node, TimeLimit, wait_for};
use rdkafka::producer::{Producer, PurgeConfig};

/// Kills the node three times while one producer keeps sending with acks=all (it rides over
/// the restarts), so later crashes hit a log that has already been recovered once.
#[test]
fn acked_records_survive_kill_9_mid_produce() {
    let _limit = TimeLimit::new(
        "acked_records_survive_kill_9_mid_produce",
        Duration::from_secs(240),
    );
    let mut node = Node::start();
    let topic = "payments-crash";
    let partitions = [0, 1, 2];
    kafka::create_topic(&node.bootstrap(), topic, 3, &[]);

    // A delivery timeout long enough to ride over a restart; a record that still fails is
    // simply not acknowledged and not checked.
    let producer = Arc::new(kafka::producer(
        &node.bootstrap(),
        &[("message.timeout.ms", "15000")],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
        move || {
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    let key = format!("k{}", i % 16);
                    kafka::send(
                        &producer,
                        topic,
                        Some(&key),
                        &format!("{key}:{i}"),
                        None,
                        None,
                    );
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });

    for round in 1..=3 {
        let target = round * 2_000;
        wait_for(
            &format!("{target} acknowledged records"),
            Duration::from_secs(60),
            || (producer.context().acked_count() >= target).then_some(()),
        );
        node.kill();
        node.restart();
    }
    // Some acknowledgements from the last incarnation too.
    let target = producer.context().acked_count() + 1_000;
    wait_for(
        "acknowledgements after the last restart",
        Duration::from_secs(60),
        || (producer.context().acked_count() >= target).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("the sender thread panicked");
    let _ = producer.flush(Duration::from_secs(30));
    // Whatever is not acknowledged by now never will be: drop it.
    producer.purge(PurgeConfig::default().queue().inflight());
    let acked: Vec<Record> = producer.context().acked();
    assert!(acked.len() >= 7_000);
    eprintln!("{} records acknowledged across 3 crashes", acked.len());

    let stored = kafka::read_all(
        &node.bootstrap(),
        topic,
        &partitions,
        Duration::from_secs(90),
    );
    eprintln!("{} records stored", stored.len());
    assert_acked_present(&acked, &stored, "after three kill -9 and restarts");

    // And once more from cold: a kill with no producer running, then a fresh read.
    node.kill();
    node.restart();
    let stored = kafka::read_all(
        &node.bootstrap(),
        topic,
        &partitions,
        Duration::from_secs(90),
    );
    assert_acked_present(&acked, &stored, "after a final kill -9 and restart");
}

fn assert_acked_present(acked: &[Record], stored: &[Record], when: &str) {
    let by_position: HashMap<(i32, i64), &Record> = stored
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    let mut missing = Vec::new();
    for ack in acked {
        match by_position.get(&(ack.partition, ack.offset)) {
            Some(found) if found.key == ack.key && found.value == ack.value => {}
            Some(found) => missing.push(format!(
                "{}/{}: acked {:?} but found {:?}",
                ack.partition,
                ack.offset,
                ack.value_str(),
                found.value_str()
            )),
            None => missing.push(format!(
                "{}/{}: acked {:?} but absent",
                ack.partition,
                ack.offset,
                ack.value_str()
            )),
        }
    }
    assert!(
        missing.is_empty(),
        "{when}: {} of {} acknowledged records lost or changed (stored: {}); first: {:?}",
        missing.len(),
        acked.len(),
        stored.len(),
        &missing[..missing.len().min(5)]
    );
}
