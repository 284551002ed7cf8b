//! A topic replicated on a three-node cluster, as Kafka clients see it: the cluster formed,
//! a topic of [`PARTITIONS`] partitions created with replication factor 3, each node's own
//! Metadata view of it (leader, leader epoch = Raft term, replicas, ISR), and the faults a
//! test applies to one node at a time.
//!
//! Leaders are found by Metadata sent to one node at a time, so that each node's own view
//! can be compared: librdkafka sends its Metadata requests to whichever broker it likes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;

use crate::cluster::{Cluster, agreed_leader};
pub use crate::cluster::{Fault, signal};
use crate::kafka::{self, Record};
use crate::wait_for;

pub const PARTITIONS: i32 = 3;
/// How long the cluster may take to form, elect a leader, fail over or settle.
pub const SETTLE: Duration = Duration::from_secs(30);
/// One Metadata or ListOffsets request to one node: a node that is down does not answer.
const ASK: Duration = Duration::from_secs(3);

/// A formed three-node cluster with a topic of [`PARTITIONS`] partitions, each replicated on
/// all three nodes.
pub struct Replicated {
    pub cluster: Cluster,
    pub topic: &'static str,
    /// Every node's Kafka address, comma-separated: the clients' bootstrap.
    pub bootstrap: String,
    /// Node id -> its Kafka address.
    addresses: BTreeMap<u64, String>,
    /// Broker id (as Metadata names it) -> node id.
    brokers: BTreeMap<i32, u64>,
}

/// One node's Metadata for one partition, brokers translated to node ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: Option<u64>,
    /// The leader epoch: the partition group's Raft term.
    pub epoch: i32,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
}

impl Replicated {
    pub fn start(topic: &'static str) -> Replicated {
        let mut cluster = Cluster::start(3);
        let ids = cluster.ids();
        cluster.wait_until("a controller leader", &ids, SETTLE, |statuses| {
            agreed_leader(statuses).is_some()
        });
        let addresses: BTreeMap<u64, String> = ids
            .iter()
            .map(|id| (*id, cluster.node(*id).bootstrap()))
            .collect();
        let bootstrap = addresses.values().cloned().collect::<Vec<_>>().join(",");
        let ports: BTreeMap<u16, u64> = ids
            .iter()
            .map(|id| (cluster.node(*id).kafka_addr().port(), *id))
            .collect();
        let brokers = wait_for(
            "every node's Metadata lists the three brokers",
            SETTLE,
            || {
                let mut agreed = None;
                for address in addresses.values() {
                    let brokers: BTreeMap<i32, u64> = metadata_of(address)?
                        .brokers
                        .iter()
                        .filter_map(|broker| {
                            let port = u16::try_from(broker.port).ok()?;
                            Some((broker.node_id.0, *ports.get(&port)?))
                        })
                        .collect();
                    if brokers.len() != ids.len() || agreed.as_ref().is_some_and(|a| *a != brokers)
                    {
                        return None;
                    }
                    agreed = Some(brokers);
                }
                agreed
            },
        );
        create_replicated_topic(&bootstrap, topic, PARTITIONS);
        let replicated = Replicated {
            cluster,
            topic,
            bootstrap,
            addresses,
            brokers,
        };
        replicated.wait_leaders(&ids, "every partition of the new topic has a leader");
        for id in &ids {
            let view = replicated
                .view(*id)
                .expect("a node of a formed cluster answers");
            for (partition, seen) in &view {
                eprintln!(
                    "node {id}: partition {partition} leader {:?} (epoch {}), replicas {:?}, isr {:?}",
                    seen.leader, seen.epoch, seen.replicas, seen.isr
                );
                let mut replicas = seen.replicas.clone();
                replicas.sort_unstable();
                assert_eq!(
                    replicas, ids,
                    "node {id}: partition {partition} is not replicated on every node: {seen:?}"
                );
            }
        }
        replicated
    }

    /// Node `id`'s Metadata for the topic, asked of that node alone; `None` if it does not
    /// answer or does not list every partition. A partition without a leader (error
    /// LEADER_NOT_AVAILABLE, leader -1) has `leader: None`.
    pub fn view(&self, id: u64) -> Option<BTreeMap<i32, PartitionView>> {
        let metadata = metadata_of(&self.addresses[&id])?;
        let topic = metadata.topics.iter().find(|t| {
            t.name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == self.topic)
        })?;
        if topic.error_code != 0 || topic.partitions.len() != PARTITIONS as usize {
            return None;
        }
        let node = |broker: &BrokerId| self.brokers.get(&broker.0).copied();
        Some(
            topic
                .partitions
                .iter()
                .map(|partition| {
                    let view = PartitionView {
                        leader: node(&partition.leader_id),
                        epoch: partition.leader_epoch,
                        replicas: partition.replica_nodes.iter().filter_map(node).collect(),
                        isr: partition.isr_nodes.iter().filter_map(node).collect(),
                    };
                    (partition.partition_index, view)
                })
                .collect(),
        )
    }

    /// Partition `partition`'s leader epoch as node `leader` (its leader) advertises it.
    pub fn leader_epoch(&self, leader: u64, partition: i32) -> i32 {
        let view = self
            .view(leader)
            .unwrap_or_else(|| panic!("leader {leader} does not answer Metadata"));
        let seen = &view[&partition];
        assert_eq!(
            seen.leader,
            Some(leader),
            "node {leader} no longer leads {partition}"
        );
        seen.epoch
    }

    /// Waits until every node of `ids` answers Metadata naming a leader for every partition,
    /// all the same, each one of `ids`; returns partition -> leader.
    pub fn wait_leaders(&self, ids: &[u64], what: &str) -> BTreeMap<i32, u64> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let views: Vec<(u64, Option<BTreeMap<i32, PartitionView>>)> =
                ids.iter().map(|id| (*id, self.view(*id))).collect();
            if let Some(leaders) = agreed_partition_leaders(&views, ids) {
                return leaders;
            }
            assert!(
                Instant::now() < deadline,
                "not within {SETTLE:?}: {what} (nodes {ids:?}); their Metadata: {views:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Applies `fault` to node `target` for `lasting`, then repairs it and waits until the
    /// cluster agrees on leaders again.
    pub fn inject(&mut self, fault: Fault, target: u64, lasting: Duration) {
        self.cluster.inject(fault, target, lasting);
        self.wait_leaders(&self.cluster.ids(), "the cluster settles after a fault");
    }

    /// Every record of the topic, read from offset 0 to the high watermark. Waits first
    /// until each partition's watermark covers its last acknowledged offset (a leader
    /// publishes it once it has committed in its term); an acknowledged record beyond a
    /// watermark that never gets there is reported lost by the checker.
    pub fn read_back(&self, acked: &[Record]) -> Vec<Record> {
        let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
        for record in acked {
            let end = needed.entry(record.partition).or_default();
            *end = (*end).max(record.offset + 1);
        }
        let consumer = kafka::consumer(&self.bootstrap);
        let deadline = Instant::now() + SETTLE;
        for (partition, end) in needed {
            loop {
                let watermarks = consumer.fetch_watermarks(self.topic, partition, ASK);
                if matches!(watermarks, Ok((_, high)) if high >= end) {
                    break;
                }
                if Instant::now() >= deadline {
                    eprintln!(
                        "partition {partition}: watermarks {watermarks:?} still below {end}, \
                         one past the last acknowledged offset"
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let partitions: Vec<i32> = (0..PARTITIONS).collect();
        kafka::read_all(
            &self.bootstrap,
            self.topic,
            &partitions,
            Duration::from_secs(60),
        )
    }
}

/// One Metadata request (v9, every topic, no auto-creation) to the node at `address`
/// alone; `None` if it does not answer within [`ASK`] (down, paused) or answers garbage.
fn metadata_of(address: &str) -> Option<MetadataResponse> {
    const VERSION: i16 = 9;
    let address: SocketAddr = address.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&address, ASK).ok()?;
    stream.set_read_timeout(Some(ASK)).ok()?;
    stream.set_write_timeout(Some(ASK)).ok()?;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("cluster-kafka-tests")));
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let mut frame = bytes::BytesMut::new();
    header
        .encode(&mut frame, ApiKey::Metadata.request_header_version(VERSION))
        .ok()?;
    request.encode(&mut frame, VERSION).ok()?;
    let length = i32::try_from(frame.len()).ok()?;
    stream.write_all(&length.to_be_bytes()).ok()?;
    stream.write_all(&frame).ok()?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(length)).ok()?];
    stream.read_exact(&mut body).ok()?;
    let mut body = bytes::Bytes::from(body);
    let header =
        ResponseHeader::decode(&mut body, ApiKey::Metadata.response_header_version(VERSION))
            .ok()?;
    if header.correlation_id != 1 {
        return None;
    }
    MetadataResponse::decode(&mut body, VERSION).ok()
}

/// The leader of every partition, if every view lists one among `ids` and all agree.
fn agreed_partition_leaders(
    views: &[(u64, Option<BTreeMap<i32, PartitionView>>)],
    ids: &[u64],
) -> Option<BTreeMap<i32, u64>> {
    let mut agreed: Option<BTreeMap<i32, u64>> = None;
    for (_, view) in views {
        let leaders = view
            .as_ref()?
            .iter()
            .map(|(partition, seen)| Some((*partition, seen.leader?)))
            .collect::<Option<BTreeMap<i32, u64>>>()?;
        if !leaders.values().all(|leader| ids.contains(leader)) {
            return None;
        }
        match &agreed {
            None => agreed = Some(leaders),
            Some(first) if *first == leaders => {}
            Some(_) => return None,
        }
    }
    agreed
}

/// CreateTopics with replication factor 3, retried while the cluster is still settling (a
/// retry that finds the topic created by the previous attempt is a success).
pub fn create_replicated_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_replicated_topic_with(bootstrap, topic, partitions, &[]);
}

/// [`create_replicated_topic`] with topic configs.
pub fn create_replicated_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let new_topic = configs.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(3)),
        |new_topic, (key, value)| new_topic.set(key, value),
    );
    create_until(
        bootstrap,
        &new_topic,
        Instant::now() + SETTLE,
        &format!("{topic} with replication factor 3"),
    );
}

/// CreateTopics of `new_topic`, retried until `deadline` while the broker answers an error
/// (a cluster still electing its controller); a retry that finds the topic made by the
/// previous attempt is a success. `what` names the topic in the failure.
pub fn create_until(bootstrap: &str, new_topic: &NewTopic<'_>, deadline: Instant, what: &str) {
    let admin = kafka::admin(bootstrap);
    loop {
        let refused =
            match kafka::block_on(admin.create_topics([new_topic], &kafka::admin_options())) {
                Ok(results) => results.into_iter().find_map(|result| match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                    Err((_, code)) => Some(format!("{code:?} ({code})")),
                }),
                Err(error) => Some(error.to_string()),
            };
        let Some(why) = refused else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "CreateTopics {what} failed: {why}"
        );
        eprintln!("CreateTopics {what}: {why}; retrying");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The first segment's base offset of every partition log under `<data>/raft/groups/*/log`
/// that does not start at 0: a partition whose start retention, DeleteRecords or a
/// snapshot moved (a node's other groups are small and start at 0).
pub fn moved_log_starts(data_dir: &std::path::Path) -> Vec<i64> {
    let Ok(groups) = std::fs::read_dir(data_dir.join("raft").join("groups")) else {
        return Vec::new();
    };
    groups
        .flatten()
        .filter_map(|group| {
            let mut offsets: Vec<i64> = std::fs::read_dir(group.path().join("log"))
                .ok()?
                .flatten()
                .filter_map(|file| {
                    let name = file.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".log")?.parse().ok()
                })
                .collect();
            offsets.sort_unstable();
            offsets.first().copied().filter(|first| *first > 0)
        })
        .collect()
}

/// The leader of `topic`/`partition` as `bootstrap`'s metadata names it, once it names one
/// that `wanted` accepts: right after CreateTopics, or after a kill, the metadata may name
/// none (-1) for a while, and a returning preferred leader first catches up.
pub fn wait_for_leader(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    wanted: impl Fn(u64) -> bool,
) -> u64 {
    const LEADER_WAIT: Duration = Duration::from_secs(60);
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let leader = kafka::consumer(bootstrap)
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .ok()
            .and_then(|metadata| {
                let topic = metadata.topics().first()?;
                let found = topic.partitions().iter().find(|p| p.id() == partition)?;
                u64::try_from(found.leader()).ok()
            });
        if let Some(leader) = leader.filter(|leader| wanted(*leader)) {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no wanted leader of {topic}/{partition} within {LEADER_WAIT:?} (leader {leader:?})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
