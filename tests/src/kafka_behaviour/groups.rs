//! Consumer groups: cooperative-sticky members hand partitions over incrementally with
//! every record consumed once across the handover; a member of several partitions gets
//! records from all of them while one holds a large backlog; a new member resumes where the
//! group committed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::create_topic;
use crate::group::{self, Member, drive, split_exactly};
use crate::kafka;

const SETTLE: Duration = Duration::from_secs(60);

/// Produces `p<partition>-<i>` for `i` in `numbers` to each of `partitions` partitions.
fn fill(bootstrap: &str, topic: &str, partitions: i32, numbers: std::ops::Range<usize>) {
    let producer = kafka::producer(bootstrap, &[]);
    for partition in 0..partitions {
        for i in numbers.clone() {
            let value = format!("p{partition}-{i}");
            kafka::send(&producer, topic, None, &value, Some(partition), None);
        }
    }
    kafka::flush_all_acked(&producer);
}

/// Polls `member` once; a record that came is processed at once: its offset is committed
/// (synchronously) before the member polls again, so whoever takes its partition next
/// starts after it.
fn poll_and_commit(member: &mut Member) {
    let before = member.records.len();
    member.poll(Duration::from_millis(20));
    if let Some(record) = member.records.get(before).cloned() {
        member.commit(record.partition, record.offset + 1);
    }
}

/// Polls (and commits) every member in turn until `done` holds; panics with `what` after
/// [`SETTLE`].
fn drive_committing(
    members: &mut [&mut Member],
    what: &str,
    mut done: impl FnMut(&[&mut Member]) -> bool,
) {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        for member in members.iter_mut() {
            poll_and_commit(member);
        }
        if done(members) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {SETTLE:?} waiting for {what}; assignments: {:?}, records: {:?}",
            members
                .iter()
                .map(|member| member.assigned())
                .collect::<Vec<_>>(),
            members
                .iter()
                .map(|member| member.records.len())
                .collect::<Vec<_>>()
        );
    }
}

fn consumed(members: &[&mut Member]) -> usize {
    members.iter().map(|member| member.records.len()).sum()
}

/// Two cooperative-sticky members join one after the other. The first takes every
/// partition and consumes (committing as it goes); when the second joins it gets some
/// partitions, and only those are revoked from the first, which keeps the rest throughout
/// (an eager rebalance would revoke everything). Records produced after the handover are
/// consumed too, and across the group every record is consumed exactly once.
pub fn cooperative_sticky_handover_consumes_each_record_once(bootstrap: &str) {
    const TOPIC: &str = "behaviour-coop";
    const GROUP: &str = "behaviour-coop-group";
    const PARTITIONS: i32 = 4;
    const BEFORE: usize = 10;
    const AFTER: usize = 10;
    let total = usize::try_from(PARTITIONS).unwrap_or(0) * (BEFORE + AFTER);
    create_topic(bootstrap, TOPIC, PARTITIONS, &[]);
    fill(bootstrap, TOPIC, PARTITIONS, 0..BEFORE);
    let sticky = [("partition.assignment.strategy", "cooperative-sticky")];

    let mut first = Member::join(bootstrap, GROUP, TOPIC, &sticky);
    let before_total = usize::try_from(PARTITIONS).unwrap_or(0) * BEFORE;
    drive_committing(
        &mut [&mut first],
        "the only member owning every partition and consuming the first records",
        |members| split_exactly(members, PARTITIONS) && consumed(members) == before_total,
    );
    assert!(
        first.revoked().is_empty(),
        "nothing revoked from the only member: {:?}",
        first.revoked()
    );

    let mut second = Member::join(bootstrap, GROUP, TOPIC, &sticky);
    drive_committing(
        &mut [&mut first, &mut second],
        "a 2+2 split between the first and the second member",
        |members| {
            split_exactly(members, PARTITIONS)
                && members.iter().all(|member| member.assigned().len() == 2)
        },
    );
    let kept = first.assigned();
    let handed_over = second.assigned();
    let revoked: BTreeSet<i32> = first.revoked().into_iter().collect();
    assert_eq!(
        revoked, handed_over,
        "cooperative: only the partitions the second member took were revoked from the first \
         (the first kept {kept:?})"
    );

    fill(bootstrap, TOPIC, PARTITIONS, BEFORE..BEFORE + AFTER);
    drive_committing(
        &mut [&mut first, &mut second],
        "every record consumed by the group",
        |members| {
            let distinct: BTreeSet<&str> = members
                .iter()
                .flat_map(|member| member.records.iter().map(|record| record.value_str()))
                .collect();
            distinct.len() == total
        },
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in first.records.iter().chain(&second.records) {
        *seen.entry(record.value_str().to_string()).or_default() += 1;
    }
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(value, _)| value)
        .collect();
    assert!(
        twice.is_empty(),
        "records consumed more than once across the handover: {twice:?}"
    );
    assert_eq!(
        first.assigned(),
        kept,
        "the first member kept its partitions"
    );
    assert_eq!(
        revoked,
        first.revoked().into_iter().collect::<BTreeSet<_>>(),
        "no partition revoked from the first member after the handover"
    );
}

/// Partition 0 holds a large backlog, partitions 1 and 2 a few records each. A member of all
/// three, fetching in small pieces, gets the few records of 1 and 2 long before it has
/// read the backlog: the broker serves every partition of a fetch, not the first one until
/// it is drained.
pub fn a_backlog_on_one_partition_does_not_block_the_others(bootstrap: &str) {
    const TOPIC: &str = "behaviour-backlog";
    const GROUP: &str = "behaviour-backlog-group";
    const BACKLOG: usize = 3_000;
    const FEW: usize = 10;
    create_topic(bootstrap, TOPIC, 3, &[]);
    let producer = kafka::producer(bootstrap, &[("linger.ms", "20")]);
    let payload = "b".repeat(1_000);
    for i in 0..BACKLOG {
        kafka::send(
            &producer,
            TOPIC,
            None,
            &format!("{i}-{payload}"),
            Some(0),
            None,
        );
    }
    for partition in [1, 2] {
        for i in 0..FEW {
            kafka::send(
                &producer,
                TOPIC,
                None,
                &format!("p{partition}-{i}"),
                Some(partition),
                None,
            );
        }
    }
    kafka::flush_all_acked(&producer);

    // Small per-partition fetches and a small local queue: the backlog takes many fetches
    // to read, and librdkafka does not prefetch it all before the test polls
    // (fetch.max.bytes may not be below message.max.bytes, 1 MB).
    let mut member = Member::join(
        bootstrap,
        GROUP,
        TOPIC,
        &[
            ("max.partition.fetch.bytes", "16384"),
            ("fetch.max.bytes", "1048576"),
            ("queued.max.messages.kbytes", "128"),
        ],
    );
    let few_done = |member: &Member| {
        [1, 2].iter().all(|partition| {
            member
                .records
                .iter()
                .filter(|record| record.partition == *partition)
                .count()
                == FEW
        })
    };
    drive(
        &mut [&mut member],
        "every record of partitions 1 and 2",
        SETTLE,
        |members| members.iter().all(|member| few_done(member)),
    );
    let backlog_read = member
        .records
        .iter()
        .filter(|record| record.partition == 0)
        .count();
    eprintln!(
        "{backlog_read} of the {BACKLOG} backlog records were read before partitions 1 and 2"
    );
    assert!(
        backlog_read < BACKLOG / 2,
        "head-of-line blocking: {backlog_read} of the {BACKLOG} backlog records were read \
         before the {FEW} records of each other partition"
    );
}

/// A member consumes part of two partitions and commits where it stopped, then leaves; a
/// new member of the group starts exactly at the committed offsets: nothing before them
/// again, nothing after them skipped.
pub fn a_new_member_resumes_from_committed_offsets(bootstrap: &str) {
    const TOPIC: &str = "behaviour-resume";
    const GROUP: &str = "behaviour-resume-group";
    const PER_PARTITION: usize = 10;
    const PROCESSED: usize = 4;
    create_topic(bootstrap, TOPIC, 2, &[]);
    fill(bootstrap, TOPIC, 2, 0..PER_PARTITION);
    let processed = i64::try_from(PROCESSED).unwrap_or(0);
    let end = i64::try_from(PER_PARTITION).unwrap_or(0);

    let mut leaving = Member::join(bootstrap, GROUP, TOPIC, &[]);
    drive(
        &mut [&mut leaving],
        "the first records of both partitions",
        SETTLE,
        |members| {
            [0, 1].iter().all(|partition| {
                members[0]
                    .records
                    .iter()
                    .filter(|record| record.partition == *partition)
                    .count()
                    >= PROCESSED
            })
        },
    );
    for partition in [0, 1] {
        leaving.commit(partition, processed);
    }
    drop(leaving);
    for partition in [0, 1] {
        assert_eq!(
            group::committed(bootstrap, GROUP, TOPIC, partition),
            Some(processed),
            "partition {partition}: the committed offset"
        );
    }

    let mut resuming = Member::join(bootstrap, GROUP, TOPIC, &[]);
    let remaining = 2 * (PER_PARTITION - PROCESSED);
    drive(
        &mut [&mut resuming],
        "the records after the committed offsets",
        SETTLE,
        |members| members[0].records.len() >= remaining,
    );
    for partition in [0, 1] {
        let read: Vec<(i64, String)> = resuming
            .records
            .iter()
            .filter(|record| record.partition == partition)
            .map(|record| (record.offset, record.value_str().to_string()))
            .collect();
        let expected: Vec<(i64, String)> = (processed..end)
            .map(|offset| (offset, format!("p{partition}-{offset}")))
            .collect();
        assert_eq!(
            read, expected,
            "partition {partition}: the new member resumes at the committed offset"
        );
        resuming.commit(partition, end);
        assert_eq!(
            group::committed(bootstrap, GROUP, TOPIC, partition),
            Some(end),
            "partition {partition}: the new member's commit"
        );
    }
}
