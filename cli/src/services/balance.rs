//! The services' groups spread their leaders over the nodes: group `n` (in
//! [`super::SERVICE_GROUPS`] order) prefers the `n`-th of its voters, round the ring, so
//! three nodes lead four, four and three of the eleven groups instead of one node leading
//! all (whichever formed first), and a node that comes back takes its share again. How a
//! preferred replica takes leadership is the storage crate's [`PreferredLeadership`].

use super::group_service;
use commerce_storage::raft::{
    GroupId, NodeId, PREFERRED_CHECK_EVERY, PreferredLeadership, RaftNode,
};
use std::sync::Arc;
use tokio::sync::watch;

/// The preferred leader of service group `group` among `voters`.
pub fn preferred_leader(group: GroupId, voters: &[NodeId]) -> Option<NodeId> {
    let mut voters = voters.to_vec();
    voters.sort_unstable();
    let position = super::SERVICE_GROUPS
        .iter()
        .position(|name| Some(*name) == group_service(group.0))?;
    voters.get(position % voters.len().max(1)).copied()
}

/// Runs until `stopped` turns true.
pub async fn run_service_leader_balancer(raft: Arc<RaftNode>, mut stopped: watch::Receiver<bool>) {
    let mut standing = PreferredLeadership::new();
    let mut ticker = tokio::time::interval(PREFERRED_CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        for group in raft.groups() {
            let Some(service) = group_service(group.0) else {
                continue;
            };
            let Ok(status) = raft.status(group) else {
                continue;
            };
            let preferred = preferred_leader(group, &status.voters);
            if standing.check(&raft, group, preferred).await {
                tracing::info!(service, "standing for the service's preferred leadership");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::services::service_group;

    #[test]
    fn the_groups_spread_over_three_voters() {
        let mut led = std::collections::BTreeMap::<NodeId, usize>::new();
        for name in super::super::SERVICE_GROUPS {
            let group = service_group(name).unwrap();
            *led.entry(preferred_leader(group, &[3, 1, 2]).unwrap())
                .or_default() += 1;
        }
        assert_eq!(
            led.into_iter().collect::<Vec<_>>(),
            vec![(1, 4), (2, 4), (3, 3)]
        );
    }
}
