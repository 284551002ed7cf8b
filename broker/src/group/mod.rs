//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets.
//!
//! - `state`: one group as a pure state machine (time passed in, no I/O), unit-tested.
//! - `member`: a member and the parked JoinGroup/SyncGroup answers it is owed.
//! - `consumer`: a KIP-848 consumer group (ConsumerGroupHeartbeat), also pure.
//! - `offsets`: the record formats of `__consumer_offsets`.
//! - this file: the coordinator — all groups and committed offsets of this node behind one
//!   lock, persisted as record batches appended to `__consumer_offsets` and rebuilt from it
//!   at start; plus the timer that expires sessions and ends rebalances that waited too long.
//!
//! Offsets are written before they are acknowledged and the in-memory view changes only after
//! the append succeeded, so a commit the client saw succeed survives a restart. The lock is
//! held across that append so that the log's order is the order commits were accepted in.
//! Handlers never await while holding it: a JoinGroup that must wait gets a receiver.

pub mod commit;
pub mod consumer;
pub mod member;
pub mod offsets;
pub mod state;
pub mod subscription;

use crate::broker::{Broker, Topic};
use crate::error::{BrokerError, Result};
use crate::topic_config::TopicConfig;
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use member::{JoinResult, Reply, SyncResult};
use offsets::{CommittedOffset, GroupRecord, Key};
use state::{Group, GroupState, JoinGroup};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's default is 50; a handful keeps a small node's directory count low while still
/// spreading groups (on a cluster each partition's leader coordinates its groups).
pub const OFFSETS_PARTITIONS: i32 = 8;
/// Kafka's group.min.session.timeout.ms and group.max.session.timeout.ms defaults.
pub const MIN_SESSION_TIMEOUT_MS: i64 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i64 = 1_800_000;
/// How often sessions and phase deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// How much of one `__consumer_offsets` partition is read per step while loading.
const LOAD_CHUNK: usize = 1 << 20;

/// A group's committed offsets: (topic, partition) -> offset.
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

#[derive(Default)]
struct Inner {
    /// Classic groups (JoinGroup/SyncGroup), and groups known only by their offsets.
    groups: BTreeMap<String, Group>,
    /// KIP-848 groups (ConsumerGroupHeartbeat).
    consumer_groups: BTreeMap<String, consumer::ConsumerGroup>,
    offsets: BTreeMap<String, GroupOffsets>,
}

impl Inner {
    /// A live KIP-848 group of that id (one with members).
    fn live_consumer_group(&self, group_id: &str) -> Option<&consumer::ConsumerGroup> {
        self.consumer_groups
            .get(group_id)
            .filter(|group| !group.members.is_empty())
    }
}

#[derive(Default)]
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
}

/// A group as DescribeGroups and ListGroups show it.
pub struct GroupSummary {
    pub group_id: String,
    /// Kafka's state name (classic: Empty, Stable, …; consumer: Empty, Reconciling, Stable).
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl GroupCoordinator {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rebuilds groups and offsets by replaying `__consumer_offsets` (if it exists).
    pub fn load(&self, broker: &Broker) -> Result<()> {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let mut inner = self.lock();
        let mut records = 0usize;
        for partition in &topic.partitions {
            let mut offset = partition.log_start_offset();
            while offset < partition.high_watermark() {
                let read = partition.read(offset, LOAD_CHUNK, true)?;
                let mut bytes = read.bytes;
                if bytes.is_empty() {
                    break;
                }
                let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(|error| {
                    BrokerError::Metadata(format!("{OFFSETS_TOPIC}: undecodable batch: {error}"))
                })?;
                let mut next = offset;
                for record in sets.iter().flat_map(|set| set.records.iter()) {
                    next = next.max(record.offset + 1);
                    if let Some(key) = record.key.clone().and_then(Key::decode) {
                        apply(&mut inner, key, record.value.clone());
                        records += 1;
                    }
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
        }
        tracing::info!(
            groups = inner.groups.len(),
            records,
            "group coordinator loaded {OFFSETS_TOPIC}"
        );
        Ok(())
    }

    /// The offsets topic, created compacted on first need (as Kafka does).
    pub fn offsets_topic(&self, broker: &Broker) -> Result<Arc<Topic>> {
        if let Some(topic) = broker.topic(OFFSETS_TOPIC) {
            return Ok(topic);
        }
        let config = TopicConfig::from_overrides([("cleanup.policy", "compact")])?;
        match broker.create_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, config) {
            Err(BrokerError::TopicAlreadyExists(_)) => broker
                .topic(OFFSETS_TOPIC)
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(OFFSETS_TOPIC.into())),
            other => other,
        }
    }

    pub fn join(&self, broker: &Broker, group_id: &str, join: JoinGroup) -> Reply<JoinResult> {
        let member_id = join.member_id.clone();
        if group_id.is_empty() {
            return Reply::Now(JoinResult::error(ResponseError::InvalidGroupId, &member_id));
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&join.session_timeout_ms) {
            return Reply::Now(JoinResult::error(
                ResponseError::InvalidSessionTimeout,
                &member_id,
            ));
        }
        if let Err(error) = self.offsets_topic(broker) {
            tracing::error!(%error, "cannot create {OFFSETS_TOPIC}");
            return Reply::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &member_id,
            ));
        }
        let mut inner = self.lock();
        if inner.live_consumer_group(group_id).is_some() {
            // The id is taken by a group on the new (KIP-848) protocol.
            return Reply::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &member_id,
            ));
        }
        if !inner.groups.contains_key(group_id) {
            if !member_id.is_empty() {
                return Reply::Now(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                ));
            }
            inner
                .groups
                .insert(group_id.to_string(), Group::new(group_id));
        }
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Reply::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &member_id,
            ));
        };
        let reply = group.join(join, now_ms());
        persist_if_dirty(broker, self, group);
        reply
    }

    pub fn sync(
        &self,
        broker: &Broker,
        group_id: &str,
        sync: state::SyncGroup,
    ) -> Reply<SyncResult> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Reply::Now(SyncResult::error(ResponseError::UnknownMemberId));
        };
        let reply = group.sync(sync, now_ms());
        persist_if_dirty(broker, self, group);
        reply
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        group.heartbeat(member_id, instance_id, generation, now_ms())
    }

    /// LeaveGroup for several members; the group-level error is for an unknown group.
    pub fn leave(
        &self,
        broker: &Broker,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> std::result::Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let now = now_ms();
        let results = members
            .iter()
            .map(|(member_id, instance_id)| group.leave(member_id, instance_id.as_deref(), now))
            .collect();
        persist_if_dirty(broker, self, group);
        Ok(results)
    }

    /// Committed offsets of a group; `None` topics means all of them.
    pub fn fetch_offsets(&self, group_id: &str) -> GroupOffsets {
        self.lock()
            .offsets
            .get(group_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let inner = self.lock();
        if let Some(group) = inner.live_consumer_group(group_id) {
            return Some(GroupSummary {
                group_id: group.id.clone(),
                state: group.state_name(),
                protocol_type: "consumer".to_string(),
                protocol: String::new(),
                members: group
                    .members
                    .values()
                    .map(|member| MemberSummary {
                        member_id: member.id.clone(),
                        instance_id: member.instance_id.clone(),
                        client_id: String::new(),
                        client_host: String::new(),
                        metadata: Bytes::new(),
                        assignment: Bytes::new(),
                    })
                    .collect(),
            });
        }
        let group = inner.groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(GroupSummary {
            group_id: group.id.clone(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: group
                .members
                .values()
                .map(|member| MemberSummary {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: member.metadata_for(&protocol),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state name, group type) of every live group.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let inner = self.lock();
        let consumer_groups = inner
            .consumer_groups
            .values()
            .filter(|group| !group.members.is_empty())
            .map(|group| {
                (
                    group.id.clone(),
                    "consumer".to_string(),
                    group.state_name(),
                    "consumer",
                )
            });
        let classic = inner
            .groups
            .values()
            .filter(|group| group.state != GroupState::Dead)
            .filter(|group| inner.live_consumer_group(&group.id).is_none())
            .map(|group| {
                (
                    group.id.clone(),
                    group.protocol_type.clone().unwrap_or_default(),
                    group.state.name(),
                    "classic",
                )
            });
        let mut all: Vec<_> = consumer_groups.chain(classic).collect();
        all.sort();
        all
    }

    /// DeleteGroups for one group: only an empty group goes (NON_EMPTY_GROUP otherwise); its
    /// offsets and metadata get tombstones.
    pub fn delete_group(&self, broker: &Broker, group_id: &str) -> Option<ResponseError> {
        let mut inner = self.lock();
        if inner.live_consumer_group(group_id).is_some() {
            return Some(ResponseError::NonEmptyGroup);
        }
        // A consumer-protocol group keeps no classic entry; its offsets still go with it.
        let was_consumer_group = inner.consumer_groups.remove(group_id).is_some();
        match inner.groups.get(group_id) {
            None if !was_consumer_group => return Some(ResponseError::GroupIdNotFound),
            Some(group) if group.state == GroupState::Dead => {
                return Some(ResponseError::GroupIdNotFound);
            }
            Some(group) if !group.is_empty() => return Some(ResponseError::NonEmptyGroup),
            _ => {}
        }
        let mut tombstones = vec![(
            Key::Group {
                group: group_id.to_string(),
            },
            None,
        )];
        for (topic, partition) in inner
            .offsets
            .get(group_id)
            .into_iter()
            .flat_map(|o| o.keys())
        {
            tombstones.push((
                Key::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                None,
            ));
        }
        if let Err(error) = self.append(broker, group_id, tombstones) {
            tracing::error!(group = group_id, %error, "cannot write group tombstones");
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(mut group) = inner.groups.remove(group_id) {
            group.mark_dead();
        }
        inner.offsets.remove(group_id);
        None
    }

    /// Appends records for one group to its `__consumer_offsets` partition.
    fn append(
        &self,
        broker: &Broker,
        group_id: &str,
        records: Vec<(Key, Option<Bytes>)>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let topic = self.offsets_topic(broker)?;
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let index = offsets::partition_for(group_id, count);
        let partition = topic.partition(index).ok_or_else(|| {
            BrokerError::UnknownTopicOrPartition(format!("{OFFSETS_TOPIC}-{index}"))
        })?;
        let timestamp = now_ms();
        let records: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i64::try_from(i).unwrap_or(0),
                sequence: -1,
                timestamp,
                key: Some(key.encode()),
                value,
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut batch, records.iter(), &options)
            .map_err(|error| BrokerError::Metadata(format!("cannot encode offsets: {error}")))?;
        partition.append(&mut batch)?;
        Ok(())
    }

    /// Session expiry and rebalance deadlines for every group.
    pub fn tick(&self, broker: &Broker) {
        let now = now_ms();
        let mut inner = self.lock();
        for group in inner.groups.values_mut() {
            group.tick(now);
            persist_if_dirty(broker, self, group);
        }
        if inner.consumer_groups.is_empty() {
            return;
        }
        let topics = assignable_topics(broker);
        for group in inner.consumer_groups.values_mut() {
            group.expire(&topics, now);
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile or leave.
    pub fn consumer_heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        heartbeat: consumer::Heartbeat,
    ) -> std::result::Result<consumer::HeartbeatAnswer, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if let Err(error) = self.offsets_topic(broker) {
            tracing::error!(%error, "cannot create {OFFSETS_TOPIC}");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let topics = assignable_topics(broker);
        let mut inner = self.lock();
        if inner
            .groups
            .get(group_id)
            .is_some_and(|group| !group.members.is_empty())
        {
            // A classic group with members owns the id.
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        inner
            .consumer_groups
            .entry(group_id.to_string())
            .or_insert_with(|| consumer::ConsumerGroup::new(group_id))
            .heartbeat(heartbeat, &topics, now_ms())
    }
}

/// Writes a group's metadata record when its generation moved on. A failure is logged, not
/// returned: the group keeps working and the record is rewritten at the next generation;
/// only the generation number after a restart would be older.
fn persist_if_dirty(broker: &Broker, coordinator: &GroupCoordinator, group: &mut Group) {
    if !group.take_dirty() {
        return;
    }
    let record = GroupRecord {
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        generation: group.generation,
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        timestamp: now_ms(),
    };
    let key = Key::Group {
        group: group.id.clone(),
    };
    if let Err(error) = coordinator.append(broker, &group.id, vec![(key, Some(record.encode()))]) {
        tracing::error!(group = %group.id, %error, "cannot persist group metadata");
    }
}

/// Every topic a consumer group may be assigned, by name.
fn assignable_topics(broker: &Broker) -> consumer::Topics {
    broker
        .topics()
        .iter()
        .filter(|topic| !topic.name.is_internal())
        .map(|topic| {
            let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            (topic.name.to_string(), (topic.id, partitions))
        })
        .collect()
}

/// Replays one `__consumer_offsets` record into the coordinator's state.
fn apply(inner: &mut Inner, key: Key, value: Option<Bytes>) {
    match (key, value) {
        (
            Key::Offset {
                group,
                topic,
                partition,
            },
            Some(value),
        ) => {
            if let Some(offset) = CommittedOffset::decode(value) {
                inner
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                inner
                    .offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), offset);
            }
        }
        (
            Key::Offset {
                group,
                topic,
                partition,
            },
            None,
        ) => {
            if let Some(offsets) = inner.offsets.get_mut(&group) {
                offsets.remove(&(topic, partition));
            }
        }
        (Key::Group { group }, Some(value)) => {
            if let Some(record) = GroupRecord::decode(value) {
                let protocol_type = Some(record.protocol_type).filter(|value| !value.is_empty());
                inner.groups.insert(
                    group.clone(),
                    Group::restored(&group, record.generation, protocol_type),
                );
            }
        }
        (Key::Group { group }, None) => {
            inner.groups.remove(&group);
            inner.offsets.remove(&group);
        }
    }
}

/// Runs the coordinator's timer until `shutdown` turns true.
pub async fn run_timers(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        broker.groups().tick(&broker);
    }
}
