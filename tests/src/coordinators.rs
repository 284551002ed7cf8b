//! Where a cluster's coordinators are, as Kafka clients find them.
//!
//! A group's coordinator is the leader of its `__consumer_offsets` partition, a transactional
//! id's the leader of its `__transaction_state` partition. The partition is Kafka's hash of
//! the key ([`partition_of`]: Java's `String.hashCode`, `Utils.abs`, mod
//! [`COORDINATOR_PARTITIONS`]), each partition is replicated on every node, and
//! FindCoordinator names its leader. A test finds a coordinator the way a client would, and
//! checks that the nodes agree: each node's own Metadata of the internal topic (asked of that
//! node alone, as [`crate::replicated`] does for data partitions) and each node's answer to a
//! raw FindCoordinator (through [`WireClient`]: librdkafka does not expose the request) must
//! all name the same node, one of the nodes asked ([`wait_coordinator`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::cluster::Cluster;
use crate::kafka;
use crate::wait_for;
use crate::wire::{WireClient, str_bytes};

/// Partitions of each coordinator topic (the broker's; Kafka's default is 50).
pub const COORDINATOR_PARTITIONS: i32 = 8;
/// How long a coordinator topic may take to be created, or the nodes to agree on a
/// coordinator: a failover (election on the survivors) fits in it.
pub const WAIT: Duration = Duration::from_secs(60);

/// What a coordinator coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A consumer group: its offsets and membership.
    Group,
    /// A transactional id: its producer id, epoch and open transaction.
    Transaction,
}

impl Kind {
    /// The internal topic whose partition leaders coordinate this kind of key.
    pub fn topic(self) -> &'static str {
        match self {
            Kind::Group => "__consumer_offsets",
            Kind::Transaction => "__transaction_state",
        }
    }

    /// FindCoordinator's key type.
    fn key_type(self) -> i8 {
        match self {
            Kind::Group => 0,
            Kind::Transaction => 1,
        }
    }
}

/// Kafka's key -> coordinator partition: Java's String.hashCode, Utils.abs, mod.
pub fn partition_of(key: &str) -> i32 {
    let hash = key.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % COORDINATOR_PARTITIONS
}

/// One partition of a coordinator topic, as one node's Metadata shows it (broker ids are
/// node ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub leader: Option<u64>,
    /// In Metadata's order: the first is the preferred leader.
    pub replicas: Vec<u64>,
}

/// The node at `address`'s Metadata of `kind`'s topic, partition -> placement; `None` if it
/// does not answer or does not list the topic.
pub fn layout(address: &str, kind: Kind) -> Option<BTreeMap<i32, Placement>> {
    let consumer: BaseConsumer = kafka::config(address).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(kind.topic()), Duration::from_secs(5))
        .ok()?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == kind.topic())?;
    if topic.error().is_some() {
        return None;
    }
    let node = |id: &i32| u64::try_from(*id).ok();
    Some(
        topic
            .partitions()
            .iter()
            .map(|p| {
                let placement = Placement {
                    leader: node(&p.leader()),
                    replicas: p.replicas().iter().filter_map(node).collect(),
                };
                (p.id(), placement)
            })
            .collect(),
    )
}

/// Creates `kind`'s topic (by asking the node at `address` FindCoordinator) and waits until
/// that node's Metadata shows every partition of it with a leader and three replicas.
pub fn created(address: &str, kind: Kind) -> BTreeMap<i32, Placement> {
    wait_for(
        &format!("{} created, every partition led", kind.topic()),
        WAIT,
        || {
            let _ = find(address, kind, "commerce-tests-probe");
            let layout = layout(address, kind)?;
            let complete = layout.len() == COORDINATOR_PARTITIONS as usize
                && layout
                    .values()
                    .all(|p| p.leader.is_some() && p.replicas.len() == 3);
            complete.then_some(layout)
        },
    )
}

/// FindCoordinator (v3) for `key`, asked of the node at `address` (running); the node it
/// names, `None` on an error code.
pub fn find(address: &str, kind: Kind, key: &str) -> Option<u64> {
    let mut client = WireClient::connect(address);
    let request = FindCoordinatorRequest::default()
        .with_key(str_bytes(key))
        .with_key_type(kind.key_type());
    let ResponseKind::FindCoordinator(response) = client.call(
        ApiKey::FindCoordinator,
        3,
        RequestKind::FindCoordinator(request),
    ) else {
        panic!("not a FindCoordinator response");
    };
    if response.error_code != 0 {
        return None;
    }
    u64::try_from(response.node_id.0).ok()
}

/// Waits until the nodes `among` (all running) agree on a leader of `key`'s partition of
/// `kind`'s topic, one of them and `accept`ed, and each one's FindCoordinator names it;
/// returns it. Panics after [`WAIT`] with `what` and each node's answers.
pub fn wait_coordinator(
    cluster: &mut Cluster,
    among: &[u64],
    kind: Kind,
    key: &str,
    what: &str,
    accept: impl Fn(u64) -> bool,
) -> u64 {
    let partition = partition_of(key);
    let addresses: Vec<(u64, String)> = among
        .iter()
        .map(|id| (*id, cluster.node(*id).bootstrap()))
        .collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<(u64, Option<u64>)> = addresses
            .iter()
            .map(|(id, address)| {
                let leader = layout(address, kind).and_then(|l| l.get(&partition)?.leader);
                (*id, leader)
            })
            .collect();
        let named: Vec<(u64, Option<u64>)> = addresses
            .iter()
            .map(|(id, address)| (*id, find(address, kind, key)))
            .collect();
        if let Some((_, Some(leader))) = leaders.first()
            && among.contains(leader)
            && accept(*leader)
            && leaders
                .iter()
                .chain(&named)
                .all(|(_, seen)| *seen == Some(*leader))
        {
            return *leader;
        }
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what} (nodes {among:?}); {} partition {partition} leader \
             per node: {leaders:?}; FindCoordinator({key}) per node: {named:?}",
            kind.topic()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
