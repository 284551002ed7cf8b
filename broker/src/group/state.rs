//! One classic consumer group as a state machine, as Kafka's `GroupMetadata` +
//! `GroupCoordinator` define it:
//!
//! ```text
//!  Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance
//!    ^                   ^   ^                                      | leader's SyncGroup
//!    | last member left  |   +--- join / leave / expiry ----------- v
//!    +-------------------+------------------------------------- Stable
//! ```
//!
//! `Dead` is a deleted group. Time is passed in (`now_ms`) and nothing here does I/O, so the
//! whole protocol is unit-tested without a runtime. The coordinator persists the group when
//! `take_dirty` says its generation changed.

use super::member::{JoinResult, JoinedMember, Member, Reply, SyncResult};
use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup as the state machine sees it.
#[derive(Debug, Clone, Default)]
pub struct JoinGroup {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// A SyncGroup as the state machine sees it.
#[derive(Debug, Clone, Default)]
pub struct SyncGroup {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    /// (protocol type, protocol name), sent from SyncGroup v5 on.
    pub protocol: Option<(String, String)>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id of the static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire unused.
    pending: BTreeMap<String, i64>,
    /// When the current phase (join collection or waiting for the leader's sync) gives up.
    phase_deadline_ms: i64,
    /// Set when something the coordinator persists (generation, protocol, leader) changed.
    dirty: bool,
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: BTreeMap::new(),
            phase_deadline_ms: 0,
            dirty: false,
        }
    }

    /// A group read back from `__consumer_offsets`: its last generation, no members (they
    /// rejoin: their heartbeats get UNKNOWN_MEMBER_ID).
    pub fn restored(id: &str, generation: i32, protocol_type: Option<String>) -> Group {
        let mut group = Group::new(id);
        group.generation = generation;
        group.protocol_type = protocol_type;
        group
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    pub fn join(&mut self, join: JoinGroup, now_ms: i64) -> Reply<JoinResult> {
        let member_id = join.member_id.clone();
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &member_id,
            ));
        }
        if !self.accepts_protocols(&join) {
            return Reply::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &member_id,
            ));
        }
        if member_id.is_empty() {
            return self.join_unknown(join, now_ms);
        }
        if self.pending.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(join, member_id, now_ms);
        }
        if let Some(error) = self.check_member(&member_id, join.instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(error, &member_id));
        }
        self.join_known(join, now_ms)
    }

    fn join_unknown(&mut self, join: JoinGroup, now_ms: i64) -> Reply<JoinResult> {
        let prefix = join.instance_id.as_deref().unwrap_or(&join.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance_id) = join.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance_id).cloned() {
                return self.replace_static_member(join, &old_id, new_id, now_ms);
            }
            // A new static member needs no MEMBER_ID_REQUIRED round: its identity is the
            // instance id.
            return self.add_member_and_rebalance(join, new_id, now_ms);
        }
        if join.require_known_member_id {
            self.pending.insert(
                new_id.clone(),
                now_ms.saturating_add(join.session_timeout_ms),
            );
            return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id));
        }
        self.add_member_and_rebalance(join, new_id, now_ms)
    }

    /// A static member came back (restart) under a new member id: the old id is fenced. With
    /// unchanged metadata in a stable group it keeps its assignment and nobody rebalances.
    fn replace_static_member(
        &mut self,
        join: JoinGroup,
        old_id: &str,
        new_id: String,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let Some(mut old) = self.members.shift_remove(old_id) else {
            return self.add_member_and_rebalance(join, new_id, now_ms);
        };
        old.reply_join(JoinResult::error(ResponseError::FencedInstanceId, old_id));
        old.reply_sync(SyncResult::error(ResponseError::FencedInstanceId));
        let unchanged = old.protocols == join.protocols;
        let was_leader = self.leader.as_deref() == Some(old_id);
        let assignment = old.assignment.clone();
        let mut member = self.new_member(&join, new_id.clone(), now_ms);
        member.assignment = assignment;
        self.members.insert(new_id.clone(), member);
        if let Some(instance_id) = &join.instance_id {
            self.static_members
                .insert(instance_id.clone(), new_id.clone());
        }
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            // As Kafka (KIP-345): a returning leader gets the members (to run its assignor,
            // whose result the stable group ignores) but no rebalance happens.
            GroupState::Stable if unchanged => {
                let mut result = self.join_result_for(&new_id, was_leader);
                result.skip_assignment = was_leader;
                Reply::Now(result)
            }
            GroupState::PreparingRebalance => self.park_join(&new_id, now_ms),
            _ => {
                self.prepare_rebalance(now_ms);
                self.park_join(&new_id, now_ms)
            }
        }
    }

    fn join_known(&mut self, join: JoinGroup, now_ms: i64) -> Reply<JoinResult> {
        let member_id = join.member_id.clone();
        let changed = self
            .members
            .get(&member_id)
            .is_some_and(|member| member.protocols != join.protocols);
        if let Some(member) = self.members.get_mut(&member_id) {
            member.protocols = join.protocols;
            member.session_timeout_ms = join.session_timeout_ms;
            member.rebalance_timeout_ms = join.rebalance_timeout_ms;
            member.last_heartbeat_ms = now_ms;
        }
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.park_join(&member_id, now_ms),
            // The member lost our answer (or retried): give it the same generation again.
            GroupState::CompletingRebalance if !changed => {
                Reply::Now(self.join_result_for(&member_id, is_leader))
            }
            GroupState::Stable if !changed && !is_leader => {
                Reply::Now(self.join_result_for(&member_id, false))
            }
            _ => {
                self.prepare_rebalance(now_ms);
                self.park_join(&member_id, now_ms)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        join: JoinGroup,
        member_id: String,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let member = self.new_member(&join, member_id.clone(), now_ms);
        if let Some(instance_id) = &join.instance_id {
            self.static_members
                .insert(instance_id.clone(), member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        self.members.insert(member_id.clone(), member);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms);
        }
        self.park_join(&member_id, now_ms)
    }

    fn new_member(&self, join: &JoinGroup, id: String, now_ms: i64) -> Member {
        Member {
            id,
            instance_id: join.instance_id.clone(),
            client_id: join.client_id.clone(),
            client_host: join.client_host.clone(),
            session_timeout_ms: join.session_timeout_ms,
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            protocol_type: join.protocol_type.clone(),
            protocols: join.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            join_waiter: None,
            sync_waiter: None,
        }
    }

    /// Parks the member's JoinGroup; completes the join phase when it was the last one.
    fn park_join(&mut self, member_id: &str, now_ms: i64) -> Reply<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        if let Some(member) = self.members.get_mut(member_id) {
            // A retried JoinGroup replaces the earlier one; the earlier connection gets an
            // error it retries on.
            member.reply_join(JoinResult::error(
                ResponseError::RebalanceInProgress,
                member_id,
            ));
            member.join_waiter = Some(sender);
        }
        self.maybe_complete_join(now_ms);
        Reply::Later(receiver)
    }

    /// Starts a rebalance: every member must rejoin within the longest rebalance timeout.
    fn prepare_rebalance(&mut self, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                member.reply_sync(SyncResult::error(ResponseError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.state = GroupState::PreparingRebalance;
        self.phase_deadline_ms = now_ms.saturating_add(timeout);
    }

    fn maybe_complete_join(&mut self, now_ms: i64) {
        let all_joined = self.members.values().all(Member::awaiting_join);
        if self.state == GroupState::PreparingRebalance && all_joined && self.pending.is_empty() {
            self.complete_join(now_ms);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, a new generation starts,
    /// and every parked JoinGroup is answered (the leader with everyone's metadata).
    fn complete_join(&mut self, now_ms: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|member| !member.awaiting_join())
            .map(|member| member.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.generation = self.generation.saturating_add(1);
        self.dirty = true;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        let leader_is_member = self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader));
        if !leader_is_member {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        // The leader gets a whole rebalance timeout to send the assignment.
        let timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.phase_deadline_ms = now_ms.saturating_add(timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result_for(&id, is_leader);
            if let Some(member) = self.members.get_mut(&id) {
                member.last_heartbeat_ms = now_ms;
                member.reply_join(result);
            }
        }
    }

    fn join_result_for(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    metadata: member.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|name| (*name, 0)).collect();
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name));
            if let Some((name, _)) = choice
                && let Some(entry) = votes.iter_mut().find(|(candidate, _)| *candidate == name)
            {
                entry.1 += 1;
            }
        }
        // max_by_key keeps the last maximum; reverse so ties go to the earlier candidate.
        votes
            .into_iter()
            .rev()
            .max_by_key(|(_, count)| *count)
            .map(|(name, _)| name.clone())
    }

    /// Whether a joining member's protocol type and protocols fit the current members.
    fn accepts_protocols(&self, join: &JoinGroup) -> bool {
        if join.protocol_type.is_empty() || join.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|member| member.id != join.member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(join.protocol_type.as_str()) {
            return false;
        }
        join.protocols
            .iter()
            .any(|(name, _)| others.iter().all(|member| member.supports(name)))
    }

    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID for a member id / instance id pair, if wrong.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        if let Some(instance_id) = instance_id
            && let Some(current) = self.static_members.get(instance_id)
            && current != member_id
        {
            return Some(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        None
    }

    pub fn sync(&mut self, sync: SyncGroup, now_ms: i64) -> Reply<SyncResult> {
        let SyncGroup {
            member_id,
            instance_id,
            generation,
            protocol,
            assignments,
        } = sync;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        if self.state == GroupState::Dead {
            return Reply::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable));
        }
        if let Some(error) = self.check_member(member_id, instance_id) {
            return Reply::Now(SyncResult::error(error));
        }
        if generation != self.generation {
            return Reply::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        if let Some((protocol_type, name)) = protocol
            && (self.protocol_type.as_ref() != Some(&protocol_type)
                || self.protocol.as_ref() != Some(&name))
        {
            return Reply::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {
                Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => Reply::Now(self.sync_result_for(member_id)),
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_heartbeat_ms = now_ms;
                    member.reply_sync(SyncResult::error(ResponseError::RebalanceInProgress));
                    member.sync_waiter = Some(sender);
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.complete_sync(assignments);
                }
                Reply::Later(receiver)
            }
        }
    }

    /// The leader's assignment arrived: the generation is stable; everyone parked learns
    /// its share (members the leader left out get an empty assignment, as in Kafka).
    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        self.dirty = true;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.sync_result_for(&id);
            if let Some(member) = self.members.get_mut(&id) {
                member.reply_sync(result);
            }
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|member| member.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Heartbeat: keeps the session alive and tells the member whether to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(error) = self.check_member(member_id, instance_id) {
            return Some(error);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            _ => None,
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id when the id is empty).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(instance_id)) => match self.static_members.get(instance_id) {
                Some(id) => id.clone(),
                None => return Some(ResponseError::UnknownMemberId),
            },
            _ => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(now_ms);
            return None;
        }
        if let Some(error) = self.check_member(&id, instance_id) {
            return Some(error);
        }
        self.remove_member_and_rebalance(&id, now_ms);
        None
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.shift_remove(member_id) {
            member.reply_join(JoinResult::error(ResponseError::UnknownMemberId, member_id));
            member.reply_sync(SyncResult::error(ResponseError::UnknownMemberId));
            if let Some(instance_id) = &member.instance_id
                && self.static_members.get(instance_id).map(String::as_str) == Some(member_id)
            {
                self.static_members.remove(instance_id);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    fn remove_member_and_rebalance(&mut self, member_id: &str, now_ms: i64) {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms);
                // With nobody left to rejoin the phase completes at once (-> Empty).
                self.maybe_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Session expiry and phase timeouts; the coordinator calls this periodically.
    pub fn tick(&mut self, now_ms: i64) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| member.session_expired(now_ms))
            .map(|member| member.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired; removing member");
            self.remove_member_and_rebalance(&id, now_ms);
        }
        self.pending.retain(|_, expires| *expires > now_ms);
        match self.state {
            GroupState::PreparingRebalance if now_ms >= self.phase_deadline_ms => {
                self.complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::CompletingRebalance if now_ms >= self.phase_deadline_ms => {
                // The leader never sent the assignment: start over without waiting for it.
                tracing::info!(group = %self.id, "leader did not sync in time; rebalancing");
                self.prepare_rebalance(now_ms);
            }
            _ => {}
        }
    }

    /// Marks the group deleted: anyone still parked is told to look for the coordinator again.
    pub fn mark_dead(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            if let Some(member) = self.members.get_mut(&id) {
                member.reply_join(JoinResult::error(
                    ResponseError::CoordinatorNotAvailable,
                    &id,
                ));
                member.reply_sync(SyncResult::error(ResponseError::CoordinatorNotAvailable));
            }
        }
        self.members.clear();
        self.state = GroupState::Dead;
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
