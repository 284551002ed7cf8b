//! Preferred leaders spread over the nodes after a membership change.
//!
//! New topics are placed with their preferred leaders round the ring ([`place_replicas`]),
//! but moving replicas off a leaving node used to drop it from each replica list and
//! append the new replica last: every partition the leaving node preferred-led fell to its
//! second replica, and the node that received the replicas led none. Kafka's preferred
//! leader is the first replica, and partition leadership follows it (see the broker's
//! `replication::balance`), so balance is a matter of replica ORDER: this module reorders
//! replica lists (never their members, so no data moves) until no node is the preferred
//! leader of two partitions more than another node that holds a replica of one of them.
//!
//! [`place_replicas`]: super::place_replicas

use super::metadata::ClusterMetadata;
use super::placement::{PlacementError, moves_off_node};
use std::collections::BTreeMap;

/// One partition's new replica list: `(topic, partition, replicas)`.
pub type Reassignment = (String, i32, Vec<u64>);

/// Everything that takes node `leaving` out of the partitions' placement: its replicas
/// moved to the other nodes ([`moves_off_node`]), then the preferred leaders balanced over
/// the nodes that stay. One entry per partition whose list changes; empty once the node
/// holds nothing and the leaders are balanced, so proposing the plan again is a no-op.
pub fn drain_plan(
    metadata: &ClusterMetadata,
    leaving: u64,
) -> Result<Vec<Reassignment>, PlacementError> {
    let mut after = metadata.clone();
    for (name, partition, replicas) in moves_off_node(metadata, leaving)? {
        let slot = after.topics.get_mut(&name).and_then(|topic| {
            usize::try_from(partition)
                .ok()
                .and_then(|index| topic.partitions.get_mut(index))
        });
        if let Some(slot) = slot {
            slot.replicas = replicas;
        }
    }
    after.nodes.remove(&leaving);
    let mut lists = replica_lists(&after);
    balance_preferred_leaders(&mut lists, after.nodes.keys().copied());
    let before = replica_lists(metadata);
    Ok(lists
        .into_iter()
        .filter(|(key, replicas)| before.get(key) != Some(replicas))
        .map(|((name, partition), replicas)| (name, partition, replicas))
        .collect())
}

/// Every partition's replica list, by `(topic, partition)`.
fn replica_lists(metadata: &ClusterMetadata) -> BTreeMap<(String, i32), Vec<u64>> {
    metadata
        .topics
        .values()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter_map(move |(index, placed)| {
                    let index = i32::try_from(index).ok()?;
                    Some(((topic.name.clone(), index), placed.replicas.clone()))
                })
        })
        .collect()
}

/// Reorders `lists` so that the preferred leaders (first replicas) spread over `nodes`,
/// within each topic first (a busy topic is led by as many nodes as it can be) and then
/// over all topics. A replica moves to the front of its list (the others keep their order)
/// when, counting the topic's partitions it prefers to lead, it leads two fewer than the
/// current preferred leader; or one fewer (the topic stays as even) while leading two fewer
/// partitions over all. Each step lowers the sum of squared leader counts of the topic, or
/// keeps it and lowers the overall one, so it ends; deterministic (partitions in order, the
/// least-leading replica, lowest id on a tie) so every run proposes the same.
pub fn balance_preferred_leaders(
    lists: &mut BTreeMap<(String, i32), Vec<u64>>,
    nodes: impl IntoIterator<Item = u64>,
) {
    let mut overall: BTreeMap<u64, usize> = nodes.into_iter().map(|id| (id, 0)).collect();
    let mut by_topic: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for ((topic, _), replicas) in lists.iter() {
        if let Some(first) = replicas.first() {
            *overall.entry(*first).or_default() += 1;
            *by_topic.entry((topic.clone(), *first)).or_default() += 1;
        }
    }
    loop {
        let mut changed = false;
        for ((topic, _), replicas) in lists.iter_mut() {
            let Some(&leader) = replicas.first() else {
                continue;
            };
            let in_topic = |id: u64| by_topic.get(&(topic.clone(), id)).copied().unwrap_or(0);
            let all = |id: u64| overall.get(&id).copied().unwrap_or(0);
            let Some((position, &better)) = replicas
                .iter()
                .enumerate()
                .skip(1)
                .min_by_key(|(_, id)| (in_topic(**id), all(**id), **id))
            else {
                continue;
            };
            let topic_gap = in_topic(leader).saturating_sub(in_topic(better));
            let overall_gap = all(leader).saturating_sub(all(better));
            if topic_gap < 1 || (topic_gap < 2 && overall_gap < 2) {
                continue;
            }
            replicas.remove(position);
            replicas.insert(0, better);
            for (id, step) in [(leader, -1), (better, 1)] {
                for count in [
                    overall.entry(id).or_default(),
                    by_topic.entry((topic.clone(), id)).or_default(),
                ] {
                    *count = count.saturating_add_signed(step);
                }
            }
            changed = true;
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::controller::{NodeRecord, PartitionReplicas, TopicMetadata, place_replicas};

    use std::collections::BTreeSet;

    fn cluster(nodes: &[u64], topics: &[(&str, Vec<Vec<u64>>)]) -> ClusterMetadata {
        let mut metadata = ClusterMetadata::default();
        for id in nodes {
            metadata.nodes.insert(
                *id,
                NodeRecord {
                    id: *id,
                    kafka_addr: String::new(),
                    raft_addr: String::new(),
                    http_addr: String::new(),
                },
            );
        }
        let mut group = 0;
        for (name, partitions) in topics {
            let partitions = partitions
                .iter()
                .map(|replicas| {
                    group += 1;
                    PartitionReplicas {
                        replicas: replicas.clone(),
                        group,
                        reassigned: false,
                    }
                })
                .collect();
            metadata.topics.insert(
                name.to_string(),
                TopicMetadata {
                    name: name.to_string(),
                    id: uuid::Uuid::nil(),
                    config: Default::default(),
                    partitions,
                },
            );
        }
        metadata
    }

    /// Applies `plan` and counts each node's preferred leaderships.
    fn leaders_after(metadata: &ClusterMetadata, plan: &[Reassignment]) -> BTreeMap<u64, usize> {
        let mut lists = replica_lists(metadata);
        for (name, partition, replicas) in plan {
            lists.insert((name.clone(), *partition), replicas.clone());
        }
        let mut led = BTreeMap::new();
        for replicas in lists.values() {
            *led.entry(replicas[0]).or_default() += 1;
        }
        led
    }

    /// Issue 14: topics placed before and after node 4 joined, then node 1 leaves.
    /// Dropping node 1 from each list would leave node 2 leading five of nine partitions
    /// and nodes 3 and 4 two each; balanced, each of the three leads three.
    #[test]
    fn removing_a_node_spreads_its_leaderships_over_the_others() {
        // As placed: "a" on nodes 1-3, then "b" and "c" after node 4 joined.
        let metadata = cluster(
            &[1, 2, 3, 4],
            &[
                ("a", vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]),
                ("b", vec![vec![4, 1, 2], vec![1, 2, 3], vec![2, 3, 4]]),
                ("c", vec![vec![3, 4, 1], vec![4, 1, 2], vec![1, 2, 3]]),
            ],
        );
        let moved_only = moves_off_node(&metadata, 1).unwrap();
        assert_eq!(
            leaders_after(&metadata, &moved_only)[&2],
            5,
            "without balancing, node 2 inherits node 1's leaderships"
        );

        let plan = drain_plan(&metadata, 1).unwrap();
        let led = leaders_after(&metadata, &plan);
        assert_eq!(led, BTreeMap::from([(2, 3), (3, 3), (4, 3)]), "{plan:?}");
        for (name, partition, replicas) in &plan {
            assert!(!replicas.contains(&1), "{name}-{partition}: {replicas:?}");
            assert_eq!(replicas.len(), 3);
        }
        let mut applied = metadata.clone();
        for (name, partition, replicas) in &plan {
            applied.topics.get_mut(name).unwrap().partitions[*partition as usize].replicas =
                replicas.clone();
        }
        assert_eq!(
            drain_plan(&applied, 1).unwrap(),
            vec![],
            "a second plan changes nothing"
        );
    }

    #[test]
    fn reordering_keeps_each_replica_set() {
        let metadata = cluster(&[1, 2, 3], &[("t", vec![vec![1, 2, 3]; 6])]);
        let mut lists = replica_lists(&metadata);
        balance_preferred_leaders(&mut lists, [1, 2, 3]);
        let mut led = BTreeMap::new();
        for replicas in lists.values() {
            let set: BTreeSet<u64> = replicas.iter().copied().collect();
            assert_eq!(set, BTreeSet::from([1, 2, 3]));
            *led.entry(replicas[0]).or_default() += 1;
        }
        assert_eq!(led, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    }

    /// Balanced over all topics is not enough: a topic whose partitions all prefer one node
    /// is served by that node alone. Here the other topics even the totals out already.
    #[test]
    fn each_topic_spreads_over_its_replicas() {
        let mut topics = vec![("t", vec![vec![2, 3, 4]; 3])];
        topics.extend([("u", vec![vec![3, 4, 2]]), ("v", vec![vec![4, 2, 3]])]);
        topics.extend([("w", vec![vec![3, 2, 4]]), ("x", vec![vec![4, 3, 2]])]);
        let metadata = cluster(&[2, 3, 4], &topics);
        let mut lists = replica_lists(&metadata);
        balance_preferred_leaders(&mut lists, [2, 3, 4]);
        let leaders: BTreeSet<u64> = (0..3).map(|p| lists[&("t".to_string(), p)][0]).collect();
        assert_eq!(leaders, BTreeSet::from([2, 3, 4]), "{lists:?}");
        let mut led = BTreeMap::new();
        for replicas in lists.values() {
            *led.entry(replicas[0]).or_default() += 1;
        }
        assert!(led.values().all(|n| (2..=3).contains(n)), "{led:?}");
    }

    #[test]
    fn a_balanced_placement_is_left_alone() {
        let placed = place_replicas(&BTreeSet::from([1, 2, 3]), &BTreeMap::new(), 6, 2).unwrap();
        let metadata = cluster(&[1, 2, 3], &[("t", placed)]);
        let mut lists = replica_lists(&metadata);
        let before = lists.clone();
        balance_preferred_leaders(&mut lists, [1, 2, 3]);
        assert_eq!(lists, before);
    }
}
