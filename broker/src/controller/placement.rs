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
///
/// As Kafka places a topic: the preferred leaders go round the ring, so one topic's
/// partitions spread over every node; the round starts at the node leading fewest, so
/// topics added one after another keep the nodes' leader counts even.
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
    let start = ring
        .iter()
        .enumerate()
        .min_by_key(|(_, id)| (leader_counts.get(id).copied().unwrap_or(0), **id))
        .map_or(0, |(position, _)| position);
    let placed = (0..count)
        .map(|partition| {
            let position = start + partition;
            (0..replication_factor)
                .filter_map(|step| ring.get((position + step) % ring.len()).copied())
                .collect()
        })
        .collect();
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

/// The reassignments that take every replica off node `leaving`: `(topic, partition, new
/// replicas)`. Each replica moves to the remaining node that holds the fewest replicas
/// (lowest id on a tie), appended last so it joins as a follower and the preferred leader
/// stays a replica that has the data. Fails when a partition has nowhere to go without
/// shrinking its replication factor.
pub fn moves_off_node(
    metadata: &ClusterMetadata,
    leaving: u64,
) -> Result<Vec<(String, i32, Vec<u64>)>, PlacementError> {
    let staying: BTreeSet<u64> = metadata
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != leaving)
        .collect();
    let mut load: BTreeMap<u64, usize> = staying.iter().map(|id| (*id, 0)).collect();
    for partition in metadata.topics.values().flat_map(|topic| &topic.partitions) {
        for replica in &partition.replicas {
            if let Some(count) = load.get_mut(replica) {
                *count += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for topic in metadata.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if !partition.replicas.contains(&leaving) {
                continue;
            }
            let Ok(index) = i32::try_from(index) else {
                continue;
            };
            let target = load
                .iter()
                .filter(|(id, _)| !partition.replicas.contains(id))
                .min_by_key(|(id, count)| (**count, **id))
                .map(|(id, _)| *id)
                .ok_or(PlacementError::NotEnoughNodes {
                    wanted: partition.replicas.len(),
                    nodes: staying.len(),
                })?;
            *load.entry(target).or_default() += 1;
            let mut replicas: Vec<u64> = partition
                .replicas
                .iter()
                .copied()
                .filter(|id| *id != leaving)
                .collect();
            replicas.push(target);
            moves.push((topic.name.clone(), index, replicas));
        }
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn nodes(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn cluster(nodes: &[u64], partitions: &[&[u64]]) -> ClusterMetadata {
        use crate::controller::{NodeRecord, PartitionReplicas, TopicMetadata};
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
        metadata.topics.insert(
            "t".to_string(),
            TopicMetadata {
                name: "t".to_string(),
                id: uuid::Uuid::nil(),
                config: Default::default(),
                partitions: partitions
                    .iter()
                    .enumerate()
                    .map(|(group, replicas)| PartitionReplicas {
                        replicas: replicas.to_vec(),
                        group: group as u64 + 1,
                        reassigned: false,
                    })
                    .collect(),
            },
        );
        metadata
    }

    #[test]
    fn a_leaving_node_hands_its_replicas_to_the_least_loaded_node() {
        let metadata = cluster(
            &[1, 2, 3, 4],
            &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[2, 3, 4]],
        );
        let moves = moves_off_node(&metadata, 1).unwrap();
        // Node 4 holds one replica, nodes 2 and 3 hold four: 4 takes the first two moves,
        // then it has three and still the fewest.
        assert_eq!(
            moves,
            vec![
                ("t".to_string(), 0, vec![2, 3, 4]),
                ("t".to_string(), 1, vec![2, 3, 4]),
                ("t".to_string(), 2, vec![3, 2, 4]),
            ]
        );
    }

    #[test]
    fn a_leaving_node_needs_somewhere_to_put_its_replicas() {
        let metadata = cluster(&[1, 2, 3], &[&[1, 2, 3]]);
        assert!(matches!(
            moves_off_node(&metadata, 1),
            Err(PlacementError::NotEnoughNodes {
                wanted: 3,
                nodes: 2
            })
        ));
        assert_eq!(moves_off_node(&metadata, 9).unwrap().len(), 0);
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
    fn a_topic_spreads_over_every_node_from_the_least_loaded_one() {
        // Node 1 leads most already: the new topic starts at node 2, and still has one
        // partition led by each node.
        let counts = BTreeMap::from([(1, 6), (2, 4), (3, 5)]);
        let placed = place_replicas(&nodes(&[1, 2, 3]), &counts, 3, 3).unwrap();
        let leaders: Vec<u64> = placed.iter().map(|replicas| replicas[0]).collect();
        assert_eq!(leaders, vec![2, 3, 1]);
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
