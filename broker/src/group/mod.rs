//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), KIP-848 consumer groups (ConsumerGroupHeartbeat) and committed
//! offsets.
//!
//! - `state`: one classic group as a pure state machine (time passed in, no I/O).
//! - `member`: a classic member and the parked JoinGroup/SyncGroup answers it is owed.
//! - `consumer`: one KIP-848 consumer group, also pure.
//! - `commit`: who may commit offsets, and the commit itself; OffsetDelete.
//! - `admin`: describing, listing and deleting groups; reading offsets.
//! - `store`: `__consumer_offsets` — appending records, replaying them at start.
//! - `offsets`: the record formats of `__consumer_offsets` (Kafka's own).
//! - `subscription`: topics in a classic consumer's member metadata.
//! - this file: the coordinator — all groups and committed offsets of this node behind one
//!   lock — and the timer that expires sessions and ends rebalances that waited too long.
//!
//! Offsets are written before they are acknowledged and the in-memory view changes only after
//! the append succeeded, so a commit the client saw succeed survives a restart. The lock is
//! held across that append so that the log's order is the order commits were accepted in.
//! Handlers never await while holding it: a JoinGroup that must wait gets a receiver.

mod admin;
pub mod commit;
pub mod consumer;
pub mod member;
pub mod offsets;
mod ownership;
pub mod state;
mod store;
pub mod subscription;
mod txn_offsets;
pub mod txn_sink;

use crate::broker::Broker;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use member::{JoinResult, Reply, SyncResult};
use offsets::CommittedOffset;
use state::{Group, JoinGroup};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::persist_if_dirty;

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

/// A group's committed offsets: (topic, partition) -> offset.
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

#[derive(Default)]
pub(super) struct Inner {
    /// Classic groups (JoinGroup/SyncGroup), and groups known only by their offsets.
    groups: BTreeMap<String, Group>,
    /// KIP-848 groups (ConsumerGroupHeartbeat).
    consumer_groups: BTreeMap<String, consumer::ConsumerGroup>,
    offsets: BTreeMap<String, GroupOffsets>,
    /// In a cluster: the offsets partitions this node leads and has loaded (it
    /// coordinates their groups; see `ownership`), with the offset the load replayed to.
    loaded: BTreeMap<i32, i64>,
    /// In a cluster: offsets staged by open transactions (see `txn_offsets`).
    pending: txn_offsets::PendingTxnOffsets,
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
    /// Transaction markers the offsets partitions applied, not yet seen by the
    /// coordinator (see `txn_offsets`).
    markers: Arc<Mutex<Vec<txn_offsets::AppliedMarker>>>,
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
    /// The coordinator's state, with every transaction marker applied so far taken in.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let markers = std::mem::take(
            &mut *self
                .markers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for marker in markers {
            inner.on_marker(marker);
        }
        inner
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
        if let Err(error) = self.owns(broker, group_id) {
            return Reply::Now(JoinResult::error(error, &member_id));
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
        if let Err(error) = self.owns(broker, group_id) {
            return Reply::Now(SyncResult::error(error));
        }
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
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        if let Err(error) = self.owns(broker, group_id) {
            return Some(error);
        }
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
        self.owns(broker, group_id)?;
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
        self.owns(broker, group_id)?;
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

/// Runs the coordinator's timer until `shutdown` turns true.
pub async fn run_timers(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if broker.replication().is_some() {
            // Ticks may append offsets through Raft under the lock (see `api::handle`).
            let ticking = broker.clone();
            let _ = tokio::task::spawn_blocking(move || ticking.groups().tick(&ticking)).await;
        } else {
            broker.groups().tick(&broker);
        }
    }
}
