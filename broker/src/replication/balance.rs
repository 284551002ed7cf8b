//! Preferred leaders for partitions: each partition is led by the first replica of its
//! placement when that node is up (Kafka's preferred leader election,
//! `auto.leader.rebalance.enable`). How a preferred replica takes leadership back is the
//! storage crate's [`PreferredLeadership`].

use super::Replication;
use crate::broker::Broker;
use commerce_storage::raft::{PREFERRED_CHECK_EVERY, PreferredLeadership};
use std::sync::Arc;
use tokio::sync::watch;

/// Runs until `stopped` turns true. Does nothing on a single node.
pub async fn run_leader_balancer(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let Some(replication) = broker.replication().cloned() else {
        return;
    };
    let mut standing = PreferredLeadership::new();
    let mut ticker = tokio::time::interval(PREFERRED_CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        balance(&broker, &replication, &mut standing).await;
    }
}

async fn balance(broker: &Broker, replication: &Replication, standing: &mut PreferredLeadership) {
    let metadata = replication.metadata.current();
    for topic in broker.topics() {
        let Some(placed) = metadata.topics.get(topic.name.as_str()) else {
            continue;
        };
        for partition in &topic.partitions {
            let Some(replica) = partition.replica() else {
                continue;
            };
            let preferred = usize::try_from(partition.index)
                .ok()
                .and_then(|index| placed.partitions.get(index))
                .and_then(|placed| placed.preferred_leader());
            if standing
                .check(&replication.raft, replica.group(), preferred)
                .await
            {
                tracing::info!(topic = %topic.name, partition = partition.index, "standing for preferred leadership");
            }
        }
    }
}
