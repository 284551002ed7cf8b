//! Preferred leaders: each partition is led by the first replica of its placement when
//! that node is up, so leadership spreads as placement meant, and comes back to a node that
//! returns after a failure (Kafka's preferred leader election,
//! `auto.leader.rebalance.enable`).
//!
//! openraft 0.9 cannot hand leadership over, so the preferred replica takes it: once it is
//! a caught-up follower (it applied everything it holds), it stands for election. The
//! current leader grants the vote when this replica's log is as long as its own (its own
//! lease long expired), and steps down; under heavy writes the replica's log may be a
//! little behind, the election fails, and it tries again after [`RETRY_AFTER`].

use super::Replication;
use crate::broker::Broker;
use commerce_storage::raft::Role;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often preferred leadership is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A follower must have been caught up this long (two checks) before it stands.
const SETTLED_CHECKS: u32 = 2;
/// The least time between two attempts for one partition.
const RETRY_AFTER: Duration = Duration::from_secs(15);

/// Runs until `stopped` turns true. Does nothing on a single node.
pub async fn run_leader_balancer(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let Some(replication) = broker.replication().cloned() else {
        return;
    };
    let mut settled: BTreeMap<u64, u32> = BTreeMap::new();
    let mut tried: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        balance(&broker, &replication, &mut settled, &mut tried).await;
    }
}

async fn balance(
    broker: &Broker,
    replication: &Replication,
    settled: &mut BTreeMap<u64, u32>,
    tried: &mut BTreeMap<u64, Instant>,
) {
    let metadata = replication.metadata.current();
    let me = replication.node_id;
    for topic in broker.topics() {
        let Some(placed) = metadata.topics.get(topic.name.as_str()) else {
            continue;
        };
        for partition in &topic.partitions {
            let Some(replica) = partition.replica() else {
                continue;
            };
            let group = replica.group();
            let preferred = usize::try_from(partition.index)
                .ok()
                .and_then(|index| placed.partitions.get(index))
                .and_then(|placed| placed.preferred_leader());
            let Some(status) = replica.status() else {
                continue;
            };
            let caught_up = status.role == Role::Follower
                && status.leader.is_some_and(|leader| leader != me)
                && status.voters.contains(&me)
                && status.last_applied_index == status.last_log_index;
            if preferred != Some(me) || !caught_up {
                settled.remove(&group.0);
                continue;
            }
            let checks = settled.entry(group.0).or_default();
            *checks += 1;
            if *checks < SETTLED_CHECKS {
                continue;
            }
            if tried
                .get(&group.0)
                .is_some_and(|at| at.elapsed() < RETRY_AFTER)
            {
                continue;
            }
            tried.insert(group.0, Instant::now());
            tracing::info!(topic = %topic.name, partition = partition.index, leader = ?status.leader, "taking back preferred leadership");
            if let Err(error) = replication.raft.campaign(group).await {
                tracing::debug!(%group, %error, "could not stand for preferred leadership");
            }
        }
    }
}
