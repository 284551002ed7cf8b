//! Watching a node's replicas move off it, for `commerce cluster remove-node`.
//!
//! The controller only decides where replicas go; each group's leader moves them (a new
//! replica catches up as a learner, becomes a voter, then the leaving node is removed),
//! which takes as long as copying the partition does. An operator who stops the node
//! before that gambles with the data, so the command waits here until, for every group
//! the node was a voter of, the group's leader reports a voter set without it and every
//! voter holding what the leader held when the node left (at least up to that index: later
//! writes do not keep the command waiting). The verdict is taken from the leader's own
//! `/cluster/status` only: the leaving node may never learn that it was removed, and a
//! follower's view of the voters may be behind.

use super::runtime::{GroupView, NodeStatus};
use super::status::group_name;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Why one group is not done yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// No node answering claims to lead it with a majority behind it (an election, or the
    /// leader is down).
    NoLeader,
    /// Its leader still counts the leaving node among the voters.
    StillVoter { leader: u64, voters: Vec<u64> },
    /// A voter holds fewer entries than the leader held once the node was out; `None`
    /// when the leader does not report that voter at all yet.
    Behind { node: u64, entries: Option<u64> },
}

/// One group still moving, named as `commerce cluster status` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moving {
    pub group: u64,
    pub name: String,
    pub pending: Pending,
}

impl fmt::Display for Moving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        match &self.pending {
            Pending::NoLeader => write!(f, "no leader answering"),
            Pending::StillVoter { leader, voters } => {
                let voters: Vec<String> = voters.iter().map(u64::to_string).collect();
                write!(
                    f,
                    "still replicated on the node (voters {}, leader {leader})",
                    voters.join(",")
                )
            }
            Pending::Behind {
                node,
                entries: Some(entries),
            } => write!(f, "node {node} is {entries} entries behind"),
            Pending::Behind {
                node,
                entries: None,
            } => write!(f, "node {node} not replicating yet"),
        }
    }
}

/// What the watch has learnt across rounds of statuses.
pub struct DrainWatch {
    leaving: u64,
    /// Every group (not the controller: the node leaves it last) seen with the node among
    /// its voters.
    watched: BTreeSet<u64>,
    /// Per group, the leader's last log index when it first reported the node gone: what
    /// every remaining voter must hold.
    targets: BTreeMap<u64, u64>,
}

impl DrainWatch {
    pub fn new(leaving: u64) -> DrainWatch {
        DrainWatch {
            leaving,
            watched: BTreeSet::new(),
            targets: BTreeMap::new(),
        }
    }

    /// One round over the nodes' statuses (those that answered): the groups not yet done,
    /// empty once the node holds nothing and every new replica has caught up.
    pub fn pending(&mut self, statuses: &[&NodeStatus]) -> Vec<Moving> {
        let views = || statuses.iter().flat_map(|status| &status.groups);
        // The leaving node's own view counts here: a partition it alone holds is listed
        // nowhere else until the new replica opens it.
        for view in views() {
            if view.group != 0 && view.voters.contains(&self.leaving) {
                self.watched.insert(view.group);
            }
        }
        let mut moving = Vec::new();
        let watched: Vec<u64> = self.watched.iter().copied().collect();
        for group in watched {
            let listed: Vec<&GroupView> = views().filter(|view| view.group == group).collect();
            let Some(first) = listed.first() else {
                // No node answering holds it any more (its topic was deleted).
                continue;
            };
            let leader = listed
                .iter()
                .filter(|view| view.role == "leader" && view.has_majority != Some(false))
                .max_by_key(|view| view.term);
            let pending = match leader {
                None => Some(Pending::NoLeader),
                Some(leader) => self.judge(leader),
            };
            if let Some(pending) = pending {
                let named = leader.copied().unwrap_or(first);
                moving.push(Moving {
                    group,
                    name: group_name(named),
                    pending,
                });
            }
        }
        moving
    }

    /// What keeps `leader`'s group from being done, judged by the leader's own view.
    fn judge(&mut self, leader: &GroupView) -> Option<Pending> {
        let Some(leader_id) = leader.leader else {
            return Some(Pending::NoLeader);
        };
        if leader.voters.contains(&self.leaving) {
            return Some(Pending::StillVoter {
                leader: leader_id,
                voters: leader.voters.clone(),
            });
        }
        let last = leader.last_log_index.unwrap_or(0);
        let target = *self.targets.entry(leader.group).or_insert(last);
        leader
            .voters
            .iter()
            .filter(|voter| **voter != leader_id)
            .find_map(|voter| match leader.follower_lag.get(voter) {
                None => Some(Pending::Behind {
                    node: *voter,
                    entries: None,
                }),
                Some(lag) => {
                    // The lag counts from the leader's log end: the voter holds entries up
                    // to `last - lag` (numbered from 0, so `last + 1 - lag` of them).
                    let held = (last + 1).saturating_sub(*lag);
                    let needed = target + 1;
                    (held < needed).then(|| Pending::Behind {
                        node: *voter,
                        entries: Some(needed - held),
                    })
                }
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn view(group: u64, role: &str, voters: &[u64], last: u64, lag: &[(u64, u64)]) -> GroupView {
        GroupView {
            group,
            role: role.to_string(),
            term: 3,
            leader: Some(2),
            voters: voters.to_vec(),
            last_log_index: Some(last),
            last_applied_index: Some(last),
            follower_lag: lag.iter().copied().collect(),
            stopped: None,
            partition: Some(format!("orders-{group}")),
            has_majority: (role == "leader").then_some(true),
        }
    }

    fn status(node_id: u64, groups: Vec<GroupView>) -> NodeStatus {
        NodeStatus {
            node_id,
            raft_addr: String::new(),
            groups,
            nodes: Vec::new(),
            topics: 1,
        }
    }

    /// The issue-14 trial: node 1 still a voter, then out but the new replica 1,861 entries
    /// behind, then caught up: only the last round is done.
    #[test]
    fn a_group_is_done_once_the_node_is_out_and_the_new_replica_caught_up() {
        let mut watch = DrainWatch::new(1);
        let before = [
            status(1, vec![view(5, "follower", &[1, 2, 3], 1900, &[])]),
            status(
                2,
                vec![view(
                    5,
                    "leader",
                    &[1, 2, 3],
                    1900,
                    &[(1, 0), (3, 0), (4, 1861)],
                )],
            ),
        ];
        let moving = watch.pending(&before.iter().collect::<Vec<_>>());
        assert_eq!(
            moving[0].pending,
            Pending::StillVoter {
                leader: 2,
                voters: vec![1, 2, 3]
            }
        );

        let out_but_behind = [status(
            2,
            vec![view(5, "leader", &[2, 3, 4], 1900, &[(3, 0), (4, 1861)])],
        )];
        let moving = watch.pending(&out_but_behind.iter().collect::<Vec<_>>());
        assert_eq!(
            moving[0].to_string(),
            "orders-5 (group 5): node 4 is 1861 entries behind"
        );

        // Writes went on: the leader's log grew, node 4 is 5 behind its end but holds
        // everything the leader held when node 1 left.
        let caught_up = [status(
            2,
            vec![view(5, "leader", &[2, 3, 4], 2000, &[(3, 0), (4, 5)])],
        )];
        assert_eq!(watch.pending(&caught_up.iter().collect::<Vec<_>>()), vec![]);
    }

    #[test]
    fn followers_and_leaders_without_a_majority_decide_nothing() {
        let mut watch = DrainWatch::new(1);
        let mut cut_off = view(7, "leader", &[2, 3, 4], 10, &[(3, 0), (4, 0)]);
        cut_off.has_majority = Some(false);
        let statuses = [
            status(1, vec![view(7, "follower", &[1, 2, 3], 10, &[])]),
            status(3, vec![view(7, "follower", &[2, 3, 4], 10, &[])]),
            status(2, vec![cut_off]),
        ];
        let moving = watch.pending(&statuses.iter().collect::<Vec<_>>());
        assert_eq!(moving.len(), 1);
        assert_eq!(moving[0].pending, Pending::NoLeader);
    }

    #[test]
    fn a_voter_the_leader_does_not_report_is_not_caught_up() {
        let mut watch = DrainWatch::new(1);
        let statuses = [
            status(1, vec![view(9, "follower", &[1, 2, 3], 10, &[])]),
            status(2, vec![view(9, "leader", &[2, 3, 4], 10, &[(3, 0)])]),
        ];
        let moving = watch.pending(&statuses.iter().collect::<Vec<_>>());
        assert_eq!(
            moving[0].pending,
            Pending::Behind {
                node: 4,
                entries: None
            }
        );
    }

    #[test]
    fn groups_the_node_never_held_are_not_waited_for() {
        let mut watch = DrainWatch::new(1);
        let statuses = [status(
            2,
            vec![view(3, "leader", &[2, 3, 4], 10, &[(3, 0), (4, 900)])],
        )];
        assert_eq!(watch.pending(&statuses.iter().collect::<Vec<_>>()), vec![]);
    }
}
