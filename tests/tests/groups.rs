//! Consumer groups (classic protocol) with librdkafka consumers: partitions are split among
//! members and move on rebalances, committed offsets survive consumer and broker restarts
//! (SIGTERM and kill -9), static members rejoin without a rebalance, and the
//! cooperative-sticky assignor works.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::group::{self, Member, drive, split_exactly};
use commerce_tests::kafka;
use commerce_tests::{Node, TimeLimit};

const SETTLE: Duration = Duration::from_secs(60);

/// Produces `per_partition` records to each of `partitions` partitions ("p<partition>-<i>").
fn fill(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer = kafka::producer(bootstrap, &[]);
    for partition in 0..partitions {
        for i in 0..per_partition {
            let value = format!("p{partition}-{i}");
            kafka::send(&producer, topic, None, &value, Some(partition), None);
        }
    }
    kafka::flush_all_acked(&producer);
}

#[test]
fn members_split_partitions_and_a_newcomer_takes_some_over() {
    let _limit = TimeLimit::new(
        "members_split_partitions_and_a_newcomer_takes_some_over",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-split", 4, &[]);
    fill(&bootstrap, "orders-split", 4, 10);

    let mut first = Member::join(&bootstrap, "split", "orders-split", &[]);
    let mut second = Member::join(&bootstrap, "split", "orders-split", &[]);
    drive(
        &mut [&mut first, &mut second],
        "two members owning every partition exactly once",
        SETTLE,
        |members| split_exactly(members, 4),
    );
    // Together they read everything (a record read before the first rebalance may be read
    // again by its new owner: nothing was committed, and that is at-least-once).
    drive(
        &mut [&mut first, &mut second],
        "all 40 records",
        SETTLE,
        |members| {
            let values: std::collections::BTreeSet<&str> = members
                .iter()
                .flat_map(|member| member.records.iter().map(|record| record.value_str()))
                .collect();
            values.len() == 40
        },
    );

    let mut third = Member::join(&bootstrap, "split", "orders-split", &[]);
    drive(
        &mut [&mut first, &mut second, &mut third],
        "three members owning every partition exactly once",
        SETTLE,
        |members| split_exactly(members, 4),
    );
}

#[test]
fn a_restarted_consumer_resumes_after_its_last_commit() {
    let _limit = TimeLimit::new(
        "a_restarted_consumer_resumes_after_its_last_commit",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-resume", 1, &[]);
    fill(&bootstrap, "orders-resume", 1, 20);

    let mut reader = Member::join(&bootstrap, "resume", "orders-resume", &[]);
    drive(&mut [&mut reader], "20 records", SETTLE, |m| {
        m[0].records.len() >= 20
    });
    // Only the first 12 are processed "for good".
    reader.commit(0, 12);
    assert_eq!(
        group::committed(&bootstrap, "resume", "orders-resume", 0),
        Some(12)
    );
    drop(reader);

    let mut successor = Member::join(&bootstrap, "resume", "orders-resume", &[]);
    drive(
        &mut [&mut successor],
        "the 8 uncommitted records",
        SETTLE,
        |m| m[0].records.len() >= 8,
    );
    let offsets: Vec<i64> = successor.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (12..20).collect::<Vec<_>>());
}

#[test]
fn committed_offsets_survive_sigterm_and_kill_9() {
    let _limit = TimeLimit::new(
        "committed_offsets_survive_sigterm_and_kill_9",
        Duration::from_secs(180),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-durable", 2, &[]);
    fill(&bootstrap, "orders-durable", 2, 10);

    let mut reader = Member::join(&bootstrap, "durable", "orders-durable", &[]);
    drive(&mut [&mut reader], "20 records", SETTLE, |m| {
        m[0].records.len() >= 20
    });
    reader.commit(0, 4);
    reader.commit(1, 7);
    drop(reader);
    // Offsets live in a compacted internal topic that never ages them out.
    let config = |key| kafka::topic_config(&bootstrap, "__consumer_offsets", key);
    assert_eq!(config("cleanup.policy").as_deref(), Some("compact"));
    assert_eq!(config("retention.ms").as_deref(), Some("-1"));

    assert!(node.terminate().success());
    node.restart();
    assert_eq!(
        group::committed(&bootstrap, "durable", "orders-durable", 0),
        Some(4)
    );
    assert_eq!(
        group::committed(&bootstrap, "durable", "orders-durable", 1),
        Some(7)
    );

    // A later commit, then no chance to flush or close anything.
    let mut reader = Member::join(&bootstrap, "durable", "orders-durable", &[]);
    drive(
        &mut [&mut reader],
        "the 9 uncommitted records",
        SETTLE,
        |m| m[0].records.len() >= 9,
    );
    reader.commit(0, 9);
    drop(reader);
    node.kill();
    node.restart();
    assert_eq!(
        group::committed(&bootstrap, "durable", "orders-durable", 0),
        Some(9)
    );
    assert_eq!(
        group::committed(&bootstrap, "durable", "orders-durable", 1),
        Some(7)
    );

    // And a member after the crash starts where the commits say.
    let mut successor = Member::join(&bootstrap, "durable", "orders-durable", &[]);
    drive(
        &mut [&mut successor],
        "the 4 uncommitted records",
        SETTLE,
        |m| m[0].records.len() >= 4,
    );
    let mut positions: Vec<(i32, i64)> = successor
        .records
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, vec![(0, 9), (1, 7), (1, 8), (1, 9)]);
}

#[test]
fn a_static_member_rejoins_without_a_rebalance() {
    let _limit = TimeLimit::new(
        "a_static_member_rejoins_without_a_rebalance",
        Duration::from_secs(120),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-static", 4, &[]);

    let mut alpha = Member::join(
        &bootstrap,
        "static",
        "orders-static",
        &[
            ("group.instance.id", "alpha"),
            ("session.timeout.ms", "30000"),
        ],
    );
    let mut beta = Member::join(
        &bootstrap,
        "static",
        "orders-static",
        &[
            ("group.instance.id", "beta"),
            ("session.timeout.ms", "30000"),
        ],
    );
    drive(&mut [&mut alpha, &mut beta], "a split", SETTLE, |m| {
        split_exactly(m, 4)
    });
    let alpha_partitions = alpha.assigned();
    let beta_rebalances = beta.rebalances();

    // A static member closing does not leave the group (KIP-345): it comes back under the
    // same instance id, gets a new member id and its old partitions, and beta sees nothing.
    drop(alpha);
    let mut alpha = Member::join(
        &bootstrap,
        "static",
        "orders-static",
        &[
            ("group.instance.id", "alpha"),
            ("session.timeout.ms", "30000"),
        ],
    );
    drive(
        &mut [&mut alpha, &mut beta],
        "alpha's partitions back",
        SETTLE,
        |m| !m[0].assigned().is_empty(),
    );
    assert_eq!(alpha.assigned(), alpha_partitions);
    // Give a (wrong) rebalance the time to reach beta before checking it did not.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        alpha.poll(Duration::from_millis(20));
        beta.poll(Duration::from_millis(20));
    }
    assert_eq!(beta.rebalances(), beta_rebalances, "beta was rebalanced");
    assert!(split_exactly(&[&mut alpha, &mut beta], 4));
}

#[test]
fn cooperative_sticky_members_split_and_rebalance_incrementally() {
    let _limit = TimeLimit::new(
        "cooperative_sticky_members_split_and_rebalance_incrementally",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-coop", 4, &[]);
    fill(&bootstrap, "orders-coop", 4, 5);
    let sticky = [("partition.assignment.strategy", "cooperative-sticky")];

    let mut first = Member::join(&bootstrap, "coop", "orders-coop", &sticky);
    drive(
        &mut [&mut first],
        "all partitions on the only member",
        SETTLE,
        |m| split_exactly(m, 4),
    );
    let mut second = Member::join(&bootstrap, "coop", "orders-coop", &sticky);
    drive(&mut [&mut first, &mut second], "a 2+2 split", SETTLE, |m| {
        split_exactly(m, 4) && m.iter().all(|member| member.assigned().len() == 2)
    });
    drive(
        &mut [&mut first, &mut second],
        "all 20 records",
        SETTLE,
        |m| m.iter().map(|member| member.records.len()).sum::<usize>() >= 20,
    );
}

#[test]
fn a_live_member_rides_over_a_broker_crash() {
    let _limit = TimeLimit::new(
        "a_live_member_rides_over_a_broker_crash",
        Duration::from_secs(180),
    );
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-ride", 2, &[]);
    fill(&bootstrap, "orders-ride", 2, 5);

    let mut member = Member::join(&bootstrap, "ride", "orders-ride", &[]);
    drive(&mut [&mut member], "the first 10 records", SETTLE, |m| {
        m[0].records.len() >= 10
    });
    member.commit(0, 5);
    member.commit(1, 5);

    // The coordinator forgets the member (it only keeps offsets and the generation); the
    // member's next request gets UNKNOWN_MEMBER_ID and it rejoins on its own.
    node.kill();
    node.restart();
    let producer = kafka::producer(&bootstrap, &[]);
    for partition in 0..2 {
        for i in 5..10 {
            let value = format!("p{partition}-{i}");
            kafka::send(
                &producer,
                "orders-ride",
                None,
                &value,
                Some(partition),
                None,
            );
        }
    }
    kafka::flush_all_acked(&producer);
    drive(
        &mut [&mut member],
        "the 10 records after the crash",
        SETTLE,
        |m| m[0].records.len() >= 20,
    );
    let mut values: Vec<&str> = member.records.iter().map(|r| r.value_str()).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 20, "nothing read twice, nothing missed");

    // Committing works again once the member is back in a generation.
    let committed_both = |member: &Member| {
        let mut list = rdkafka::TopicPartitionList::new();
        for partition in 0..2 {
            list.add_partition_offset("orders-ride", partition, rdkafka::Offset::Offset(10))
                .unwrap();
        }
        rdkafka::consumer::Consumer::commit(
            &member.consumer,
            &list,
            rdkafka::consumer::CommitMode::Sync,
        )
        .is_ok()
    };
    drive(&mut [&mut member], "a successful commit", SETTLE, |m| {
        committed_both(m[0])
    });
    assert_eq!(
        group::committed(&bootstrap, "ride", "orders-ride", 0),
        Some(10)
    );
    assert_eq!(
        group::committed(&bootstrap, "ride", "orders-ride", 1),
        Some(10)
    );
}

/// KIP-848 (`group.protocol=consumer`): the coordinator assigns; members split the topic,
/// a newcomer gets its share only after the old owner gave it up, and commits (with member
/// epochs) work.
#[test]
fn consumer_protocol_members_split_partitions_and_commit() {
    let _limit = TimeLimit::new(
        "consumer_protocol_members_split_partitions_and_commit",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "orders-848", 4, &[]);
    fill(&bootstrap, "orders-848", 4, 5);
    let kip848 = [("group.protocol", "consumer")];

    let mut first = Member::join(&bootstrap, "kip848", "orders-848", &kip848);
    drive(
        &mut [&mut first],
        "all partitions on the only member",
        SETTLE,
        |m| split_exactly(m, 4),
    );
    drive(&mut [&mut first], "all 20 records", SETTLE, |m| {
        m[0].records.len() >= 20
    });
    for partition in 0..4 {
        first.commit(partition, 5);
    }
    let mut second = Member::join(&bootstrap, "kip848", "orders-848", &kip848);
    drive(&mut [&mut first, &mut second], "a 2+2 split", SETTLE, |m| {
        split_exactly(m, 4) && m.iter().all(|member| member.assigned().len() == 2)
    });
    assert!(
        second.records.is_empty(),
        "the newcomer starts at the commits"
    );
    for partition in 0..4 {
        assert_eq!(
            group::committed(&bootstrap, "kip848", "orders-848", partition),
            Some(5)
        );
    }
    drop(second);
    drive(
        &mut [&mut first],
        "everything back on the first member",
        SETTLE,
        |m| split_exactly(m, 4),
    );

    // Once the last member left, the group and its offsets can be deleted.
    drop(first);
    let admin = kafka::admin(&bootstrap);
    let deleted = kafka::block_on(admin.delete_groups(&["kip848"], &kafka::admin_options()))
        .expect("DeleteGroups failed");
    assert_eq!(deleted, vec![Ok("kip848".to_string())]);
    assert_eq!(
        group::committed(&bootstrap, "kip848", "orders-848", 0),
        None
    );
}
