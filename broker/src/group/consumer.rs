//! A KIP-848 consumer group (`group.protocol=consumer`): the coordinator computes the
//! assignment (range, per topic) and hands it out through ConsumerGroupHeartbeat; members
//! never talk to each other.
//!
//! Reconciliation follows the model librdkafka's own mock coordinator implements (and is
//! tested against): every membership or subscription change bumps the group epoch and gives
//! every member a target assignment at that epoch. A member first gives up what its target no
//! longer holds (it is answered with `owned ∩ target` and keeps its epoch); once nothing is
//! left to revoke it is given its whole target and moves to the group epoch — but only when
//! none of those partitions is still held by another member, so no partition ever has two
//! owners. Time is passed in; nothing here does I/O.
//!
//! Not kept across restarts (members rejoin with epoch 0 after UNKNOWN_MEMBER_ID); regex
//! subscriptions are not supported (only topic names).

use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// A partition by topic id, as the protocol names them.
pub type TopicPartition = (Uuid, i32);
pub type Assignment = BTreeSet<TopicPartition>;

/// Kafka's group.consumer.session.timeout.ms default.
pub const SESSION_TIMEOUT_MS: i64 = 45_000;
/// How often members heartbeat. Kafka's default is 5 s; reconciliation takes a heartbeat
/// round per step, so a shorter interval makes rebalances finish sooner.
pub const HEARTBEAT_INTERVAL_MS: i32 = 2_000;

/// Member epochs with a meaning of their own.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// One ConsumerGroupHeartbeat as the group sees it.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// What the member owns now; `None`: unchanged.
    pub owned: Option<Assignment>,
}

/// The answer: the member's id and epoch, and its new assignment if it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub subscribed: BTreeSet<String>,
    pub target: Assignment,
    pub target_epoch: i32,
    pub current_epoch: i32,
    /// What the member last said it owns.
    pub owned: Option<Assignment>,
    /// What we last answered it with.
    pub returned: Option<Assignment>,
    pub last_seen_ms: i64,
    /// A static member that left temporarily (epoch -2) keeps its place until its session
    /// runs out.
    pub left_static: bool,
}

#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    pub members: IndexMap<String, ConsumerMember>,
}

/// Topic name -> (topic id, partition count): what the assignor distributes.
pub type Topics = BTreeMap<String, (Uuid, i32)>;

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            ..ConsumerGroup::default()
        }
    }

    /// Kafka's consumer-group states, for ListGroups and DescribeGroups.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self
            .members
            .values()
            .all(|member| member.current_epoch == self.epoch)
        {
            "Stable"
        } else {
            "Reconciling"
        }
    }

    pub fn heartbeat(
        &mut self,
        request: Heartbeat,
        topics: &Topics,
        now_ms: i64,
    ) -> Result<HeartbeatAnswer, ResponseError> {
        if request.member_epoch == LEAVE_EPOCH || request.member_epoch == STATIC_LEAVE_EPOCH {
            self.leave(&request.member_id, request.member_epoch, topics);
            return Ok(HeartbeatAnswer {
                member_id: request.member_id,
                member_epoch: request.member_epoch,
                assignment: None,
            });
        }
        let id = self.admit(&request, topics, now_ms)?;
        let Some(member) = self.members.get(&id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if request.member_epoch > 0 && request.member_epoch != member.current_epoch {
            return Err(ResponseError::FencedMemberEpoch);
        }
        let assignment = self.next_assignment(&id, request.owned, request.member_epoch);
        let epoch = self
            .members
            .get(&id)
            .map_or(LEAVE_EPOCH, |member| member.current_epoch);
        Ok(HeartbeatAnswer {
            member_id: id,
            member_epoch: epoch,
            assignment,
        })
    }

    /// Finds or adds the member; recomputes the targets when membership or subscriptions
    /// changed. Returns the member id.
    fn admit(
        &mut self,
        request: &Heartbeat,
        topics: &Topics,
        now_ms: i64,
    ) -> Result<String, ResponseError> {
        let mut changed = false;
        let mut id = request.member_id.clone();
        if !self.members.contains_key(&id) {
            let by_instance = request.instance_id.as_ref().and_then(|instance| {
                self.members
                    .values()
                    .find(|member| member.instance_id.as_ref() == Some(instance))
                    .map(|member| (member.id.clone(), member.left_static))
            });
            match by_instance {
                // The old incarnation is still active: this one may not take its place.
                Some((_, false)) => return Err(ResponseError::UnreleasedInstanceId),
                Some((old_id, true)) => {
                    // A static member back under a new member id keeps its place.
                    if let Some(mut member) = self.members.shift_remove(&old_id) {
                        if id.is_empty() {
                            id = old_id;
                        }
                        member.id = id.clone();
                        member.left_static = false;
                        self.members.insert(id.clone(), member);
                    }
                }
                None => {
                    if request.member_epoch != JOIN_EPOCH || request.subscribed_topics.is_none() {
                        return Err(ResponseError::UnknownMemberId);
                    }
                    if id.is_empty() {
                        // ConsumerGroupHeartbeat v0: the coordinator names the member.
                        id = Uuid::new_v4().to_string();
                    }
                    self.members.insert(
                        id.clone(),
                        ConsumerMember {
                            id: id.clone(),
                            instance_id: request.instance_id.clone(),
                            client_id: request.client_id.clone(),
                            subscribed: BTreeSet::new(),
                            target: Assignment::new(),
                            target_epoch: self.epoch,
                            current_epoch: 0,
                            owned: None,
                            returned: None,
                            last_seen_ms: now_ms,
                            left_static: false,
                        },
                    );
                    tracing::info!(group = %self.id, member = %id, "member joined a consumer-protocol group");
                    changed = true;
                }
            }
        }
        if let Some(member) = self.members.get_mut(&id) {
            member.left_static = false;
            member.last_seen_ms = now_ms;
            if let Some(topics) = &request.subscribed_topics {
                let subscribed: BTreeSet<String> = topics.iter().cloned().collect();
                if subscribed != member.subscribed {
                    member.subscribed = subscribed;
                    tracing::info!(group = %self.id, member = %id, "member joined a consumer-protocol group");
                    changed = true;
                }
            }
        }
        if changed {
            self.recompute(topics);
        }
        Ok(id)
    }

    fn leave(&mut self, member_id: &str, epoch: i32, topics: &Topics) {
        let is_static = self
            .members
            .get(member_id)
            .is_some_and(|member| member.instance_id.is_some());
        if is_static && epoch == STATIC_LEAVE_EPOCH {
            if let Some(member) = self.members.get_mut(member_id) {
                member.left_static = true;
                member.returned = None;
            }
            return;
        }
        if self.members.shift_remove(member_id).is_some() {
            self.recompute(topics);
        }
    }

    /// Removes members whose session ran out; true if any was.
    pub fn expire(&mut self, topics: &Topics, now_ms: i64) -> bool {
        let before = self.members.len();
        self.members
            .retain(|_, member| now_ms.saturating_sub(member.last_seen_ms) <= SESSION_TIMEOUT_MS);
        let expired = self.members.len() != before;
        if expired {
            self.recompute(topics);
        }
        expired
    }

    /// A new group epoch with a range assignment of every subscribed topic's partitions
    /// among the members subscribing to it, in member order.
    pub fn recompute(&mut self, topics: &Topics) {
        self.epoch = self.epoch.saturating_add(1);
        let mut targets: IndexMap<String, Assignment> = self
            .members
            .keys()
            .map(|id| (id.clone(), Assignment::new()))
            .collect();
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|member| member.subscribed.iter())
            .collect();
        for name in subscribed {
            let Some(&(topic_id, partitions)) = topics.get(name) else {
                continue;
            };
            let members: Vec<&String> = self
                .members
                .values()
                .filter(|member| member.subscribed.contains(name))
                .map(|member| &member.id)
                .collect();
            let count = i32::try_from(members.len()).unwrap_or(i32::MAX).max(1);
            let (common, one_more) = (partitions / count, partitions % count);
            let mut next = 0;
            for (index, id) in members.into_iter().enumerate() {
                let extra = i32::from(i32::try_from(index).unwrap_or(i32::MAX) < one_more);
                let share = common + extra;
                if let Some(target) = targets.get_mut(id) {
                    target.extend((next..next + share).map(|partition| (topic_id, partition)));
                }
                next += share;
            }
        }
        for (id, target) in targets {
            if let Some(member) = self.members.get_mut(&id) {
                member.target = target;
                member.target_epoch = self.epoch;
            }
        }
    }

    /// The assignment to send the member now (`None`: unchanged), moving its epoch forward
    /// when it may have its whole target.
    fn next_assignment(
        &mut self,
        id: &str,
        owned: Option<Assignment>,
        request_epoch: i32,
    ) -> Option<Assignment> {
        let held_by_others = self.held_by_others(id);
        let member = self.members.get_mut(id)?;
        if let Some(owned) = owned {
            member.owned = Some(owned);
        }
        let answer = if request_epoch != member.current_epoch
            || member.current_epoch != member.target_epoch
        {
            let keep: Option<Assignment> = member.owned.as_ref().and_then(|owned| {
                let kept: Assignment = owned.intersection(&member.target).copied().collect();
                (kept.len() < owned.len()).then_some(kept)
            });
            match keep {
                // Revoke first; the epoch stays until the member confirms.
                Some(kept) => Some(kept),
                None if member.target.is_disjoint(&held_by_others) => {
                    member.current_epoch = member.target_epoch;
                    Some(member.target.clone())
                }
                // Partitions of the target are still someone else's: wait.
                None => None,
            }
        } else if member.returned.is_none() {
            Some(member.target.clone())
        } else {
            None
        };
        match answer {
            Some(assignment) if member.returned.as_ref() != Some(&assignment) => {
                member.returned = Some(assignment.clone());
                Some(assignment)
            }
            _ => None,
        }
    }

    /// Partitions other members hold or are about to get: while one is revoking, what it
    /// still owns; otherwise what it was last given.
    fn held_by_others(&self, id: &str) -> Assignment {
        let mut held = Assignment::new();
        for member in self.members.values().filter(|member| member.id != id) {
            let owned = member.owned.as_ref().map_or(0, BTreeSet::len);
            let returned = member.returned.as_ref().map_or(0, BTreeSet::len);
            if owned > 0 && owned > returned {
                held.extend(member.owned.iter().flatten().copied());
            } else {
                held.extend(member.returned.iter().flatten().copied());
            }
        }
        held
    }

    /// Whether `member_id` may commit with `epoch` (OffsetCommit from a KIP-848 member).
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Option<ResponseError> {
        let simple = member_id.is_empty() && epoch < 0;
        if simple && self.members.is_empty() {
            return None;
        }
        match self.members.get(member_id) {
            None => Some(ResponseError::UnknownMemberId),
            Some(member) if member.current_epoch != epoch => Some(ResponseError::StaleMemberEpoch),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn topics() -> Topics {
        [("orders".to_string(), (Uuid::from_u128(7), 4))].into()
    }

    fn tp(partitions: &[i32]) -> Assignment {
        partitions
            .iter()
            .map(|p| (Uuid::from_u128(7), *p))
            .collect()
    }

    fn beat(
        group: &mut ConsumerGroup,
        id: &str,
        epoch: i32,
        owned: Option<&[i32]>,
    ) -> HeartbeatAnswer {
        let request = Heartbeat {
            member_id: id.to_string(),
            member_epoch: epoch,
            instance_id: None,
            subscribed_topics: (epoch == 0).then(|| vec!["orders".to_string()]),
            owned: owned.map(tp),
            ..Heartbeat::default()
        };
        group.heartbeat(request, &topics(), 0).unwrap()
    }

    #[test]
    fn partitions_move_only_after_their_owner_revoked_them() {
        let mut group = ConsumerGroup::new("g");
        let a = beat(&mut group, "a", 0, None);
        assert_eq!(a.assignment, Some(tp(&[0, 1, 2, 3])));
        let a_epoch = a.member_epoch;
        assert_eq!(
            beat(&mut group, "a", a_epoch, Some(&[0, 1, 2, 3])).assignment,
            None
        );

        // b joins: its share is still a's, so it waits at epoch 0.
        let b = beat(&mut group, "b", 0, None);
        assert_eq!(b.assignment, None);
        assert_eq!(b.member_epoch, 0);
        // a is told to give up 2 and 3 and keeps its epoch until it did.
        let a = beat(&mut group, "a", a_epoch, None);
        assert_eq!(a.assignment, Some(tp(&[0, 1])));
        assert_eq!(a.member_epoch, a_epoch);
        assert_eq!(beat(&mut group, "b", 0, None).assignment, None);
        // a confirms; it moves to the new epoch, and b gets 2 and 3.
        let a = beat(&mut group, "a", a_epoch, Some(&[0, 1]));
        assert_eq!(a.member_epoch, group.epoch);
        let b = beat(&mut group, "b", 0, None);
        assert_eq!(b.assignment, Some(tp(&[2, 3])));
        assert_eq!(b.member_epoch, group.epoch);
        assert_eq!(group.state_name(), "Stable");
    }

    #[test]
    fn stale_epochs_are_fenced_and_commits_checked() {
        let mut group = ConsumerGroup::new("g");
        let a = beat(&mut group, "a", 0, None);
        let request = Heartbeat {
            member_id: "a".into(),
            member_epoch: a.member_epoch + 5,
            ..Heartbeat::default()
        };
        assert_eq!(
            group.heartbeat(request, &topics(), 0),
            Err(ResponseError::FencedMemberEpoch)
        );
        assert_eq!(group.check_commit("a", a.member_epoch), None);
        assert_eq!(
            group.check_commit("a", a.member_epoch - 1),
            Some(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(
            group.check_commit("x", 1),
            Some(ResponseError::UnknownMemberId)
        );
        let unknown = Heartbeat {
            member_id: "x".into(),
            member_epoch: 3,
            ..Heartbeat::default()
        };
        assert_eq!(
            group.heartbeat(unknown, &topics(), 0),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn leaving_and_expiry_hand_partitions_back() {
        let mut group = ConsumerGroup::new("g");
        beat(&mut group, "a", 0, None);
        beat(&mut group, "b", 0, None);
        assert_eq!(group.members.len(), 2);
        beat(&mut group, "b", LEAVE_EPOCH, None);
        assert_eq!(group.members.len(), 1);
        assert_eq!(group.members.get("a").unwrap().target, tp(&[0, 1, 2, 3]));
        assert!(group.expire(&topics(), SESSION_TIMEOUT_MS + 1));
        assert_eq!(group.state_name(), "Empty");
    }
}
