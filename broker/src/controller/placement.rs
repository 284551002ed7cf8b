//! Where partitions live: replica placement for new partitions and the preferred-leader
//! moves that put leadership back where placement meant it to be.
//!
//! Placement is deterministic (the proposer computes it and puts it in the command): each
//! new partition is led by the node that leads the fewest partitions so far (lowest id on a
//! tie), and its followers are the next nodes round the ring of node ids. That spreads
//! leaders evenly within a topic and across topics, which Kafka gets from a random start
//! offset; being deterministic lets tests state where replicas land.

use super::metadata::ClusterMetadata;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {wanted} is more than the {nodes} nodes in the cluster")]
    NotEnoughNodes { wanted: usize, nodes: usize },
    #[error("the replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// Replica sets (preferred leader first) for `count` new partitions over `nodes`, given how
/// many partitions each node already leads (`leader_counts`; missing nodes count 0).
pub fn place_replicas(
    nodes: &BTreeSet<u64>,
    leader_counts: &BTreeMap<u64, usize>,
    count: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<u64>>, PlacementError> {
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    if replication_factor > nodes.len() {
        return Err(PlacementError::NotEnoughNodes {
            wanted: replication_factor,
            nodes: nodes.len(),
        });
    }
    let ring: Vec<u64> = nodes.iter().copied().collect();
    let mut counts: BTreeMap<u64, usize> = ring
        .iter()
        .map(|id| (*id, leader_counts.get(id).copied().unwrap_or(0)))
        .collect();
    let mut placed = Vec::with_capacity(count);
    for _ in 0..count {
        let Some((position, leader)) = ring
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| (counts.get(id).copied().unwrap_or(0), **id))
            .map(|(position, id)| (position, *id))
        else {
            break;
        };
        *counts.entry(leader).or_default() += 1;
        let replicas = (0..replication_factor)
            .filter_map(|step| ring.get((position + step) % ring.len()).copied())
            .collect();
        placed.push(replicas);
    }
    Ok(placed)
}

/// The partitions whose preferred leader is live but not leading: `(topic, partition,
/// preferred leader)`. `leaders` maps each partition to its current leader, if any.
pub fn preferred_leader_moves(
    metadata: &ClusterMetadata,
    leaders: &BTreeMap<(String, i32), Option<u64>>,
    live: &BTreeSet<u64>,
) -> Vec<(String, i32, u64)> {
    let mut moves = Vec::new();
    for topic in metadata.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let Ok(index) = i32::try_from(index) else {
                continue;
            };
            let Some(preferred) = partition.preferred_leader() else {
                continue;
            };
            let current = leaders.get(&(topic.name.clone(), index)).copied().flatten();
            if live.contains(&preferred) && current != Some(preferred) {
                moves.push((topic.name.clone(), index, preferred));
            }
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn nodes(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn leaders_are_spread_evenly_within_a_topic() {
        let placed = place_replicas(&nodes(&[1, 2, 3]), &BTreeMap::new(), 12, 3).unwrap();
        let mut leaders: BTreeMap<u64, usize> = BTreeMap::new();
        for replicas in &placed {
            assert_eq!(replicas.len(), 3);
            assert_eq!(nodes(replicas).len(), 3, "no node twice in {replicas:?}");
            *leaders.entry(replicas[0]).or_default() += 1;
        }
        assert_eq!(leaders, BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
    }

    #[test]
    fn single_partition_topics_take_turns_leading() {
        let mut counts = BTreeMap::new();
        let mut leaders = Vec::new();
        for _ in 0..6 {
            let placed = place_replicas(&nodes(&[1, 2, 3]), &counts, 1, 3).unwrap();
            let leader = placed[0][0];
            *counts.entry(leader).or_default() += 1;
            leaders.push(leader);
        }
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn followers_follow_the_ring() {
        let placed = place_replicas(&nodes(&[1, 2, 3, 4, 5]), &BTreeMap::new(), 5, 3).unwrap();
        assert_eq!(
            placed,
            vec![
                vec![1, 2, 3],
                vec![2, 3, 4],
                vec![3, 4, 5],
                vec![4, 5, 1],
                vec![5, 1, 2]
            ]
        );
    }

    #[test]
    fn too_few_nodes_is_refused() {
        assert_eq!(
            place_replicas(&nodes(&[1, 2]), &BTreeMap::new(), 1, 3),
            Err(PlacementError::NotEnoughNodes {
                wanted: 3,
                nodes: 2
            })
        );
        assert_eq!(
            place_replicas(&nodes(&[1]), &BTreeMap::new(), 1, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }
}
