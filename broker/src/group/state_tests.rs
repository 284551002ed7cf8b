//! The group state machine as a specification: each test is one rule of Kafka's classic
//! protocol, driven with explicit times and no runtime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::group::member::{JoinResult, Reply, SyncResult};

const SESSION: i64 = 10_000;
const REBALANCE: i64 = 30_000;

fn join(member_id: &str, protocols: &[&str]) -> JoinGroup {
    JoinGroup {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".into(),
        client_host: String::new(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|name| (name.to_string(), Bytes::from(format!("meta-{name}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn static_join(instance: &str, member_id: &str) -> JoinGroup {
    JoinGroup {
        instance_id: Some(instance.to_string()),
        ..join(member_id, &["range"])
    }
}

fn now<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(value) => value,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T>(reply: Reply<T>) -> tokio::sync::oneshot::Receiver<T> {
    match reply {
        Reply::Later(receiver) => receiver,
        Reply::Now(_) => panic!("expected a parked answer"),
    }
}

/// Joins a dynamic member the v4+ way: MEMBER_ID_REQUIRED, then again with the id.
fn join_new(
    group: &mut Group,
    protocols: &[&str],
    at: i64,
) -> (String, tokio::sync::oneshot::Receiver<JoinResult>) {
    let first = now(group.join(join("", protocols), at));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let id = first.member_id;
    let receiver = later(group.join(join(&id, protocols), at));
    (id, receiver)
}

fn sync(
    group: &mut Group,
    member: &str,
    generation: i32,
    assign: &[(&str, &str)],
) -> Reply<SyncResult> {
    group.sync(
        SyncGroup {
            member_id: member.to_string(),
            instance_id: None,
            generation,
            protocol: None,
            assignments: assign
                .iter()
                .map(|(id, value)| (id.to_string(), Bytes::from(value.to_string())))
                .collect(),
        },
        0,
    )
}

/// Two members joined and synced: (group, leader id, follower id).
fn stable_pair() -> (Group, String, String) {
    let mut group = Group::new("g");
    let (a, mut a_join) = join_new(&mut group, &["range"], 0);
    // The lone member completes generation 1 at once.
    let a_result = a_join.try_recv().unwrap();
    assert_eq!(
        (a_result.generation, a_result.leader.as_str()),
        (1, a.as_str())
    );
    let mut a_sync = later(sync(&mut group, &a, 1, &[(&a, "a:all")]));
    assert_eq!(a_sync.try_recv().unwrap().assignment, Bytes::from("a:all"));
    assert_eq!(group.state, GroupState::Stable);

    let (b, mut b_join) = join_new(&mut group, &["range"], 10);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&a, None, 1, 20),
        Some(ResponseError::RebalanceInProgress)
    );
    let mut a_join = later(group.join(join(&a, &["range"]), 30));
    let a_result = a_join.try_recv().unwrap();
    let b_result = b_join.try_recv().unwrap();
    assert_eq!((a_result.generation, b_result.generation), (2, 2));
    assert_eq!(a_result.leader, a, "the leader stays the leader");
    assert_eq!(a_result.members.len(), 2, "the leader sees every member");
    assert!(b_result.members.is_empty(), "followers see none");

    let mut b_sync = later(sync(&mut group, &b, 2, &[]));
    assert!(b_sync.try_recv().is_err(), "followers wait for the leader");
    let mut a_sync = later(sync(&mut group, &a, 2, &[(&a, "a:0,1"), (&b, "b:2,3")]));
    assert_eq!(a_sync.try_recv().unwrap().assignment, Bytes::from("a:0,1"));
    assert_eq!(b_sync.try_recv().unwrap().assignment, Bytes::from("b:2,3"));
    assert_eq!(group.state, GroupState::Stable);
    (group, a, b)
}

#[test]
fn members_join_sync_and_become_stable() {
    let (mut group, a, b) = stable_pair();
    assert_eq!(group.heartbeat(&a, None, 2, 100), None);
    assert_eq!(group.heartbeat(&b, None, 2, 100), None);
    assert!(group.take_dirty(), "a new generation is persisted");
}

#[test]
fn wrong_member_or_generation_is_refused() {
    let (mut group, a, _) = stable_pair();
    assert_eq!(
        group.heartbeat("nobody", None, 2, 0),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        group.heartbeat(&a, None, 1, 0),
        Some(ResponseError::IllegalGeneration)
    );
    let result = now(sync(&mut group, &a, 7, &[]));
    assert_eq!(result.error, Some(ResponseError::IllegalGeneration));
    let result = now(group.join(join("nobody", &["range"]), 0));
    assert_eq!(result.error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn a_member_without_a_common_protocol_is_refused() {
    let (mut group, _, _) = stable_pair();
    let result = now(group.join(join("", &["roundrobin"]), 0));
    assert_eq!(result.error, Some(ResponseError::InconsistentGroupProtocol));
    let mut other_type = join("", &["range"]);
    other_type.protocol_type = "connect".into();
    let result = now(group.join(other_type, 0));
    assert_eq!(result.error, Some(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn the_protocol_every_member_supports_is_chosen() {
    let mut group = Group::new("g");
    let (a, _a_join) = join_new(&mut group, &["cooperative-sticky", "range"], 0);
    let (b, mut b_join) = join_new(&mut group, &["range"], 0);
    let _a_join = later(group.join(join(&a, &["cooperative-sticky", "range"]), 0));
    let result = b_join.try_recv().unwrap();
    assert_eq!(result.protocol.as_deref(), Some("range"));
    assert_eq!(result.member_id, b);
}

#[test]
fn the_rebalance_timeout_drops_members_that_did_not_rejoin() {
    let (mut group, a, b) = stable_pair();
    let mut b_join = later(group.join(join(&b, &["range", "roundrobin"]), 1_000));
    // a never rejoins; its session is kept alive by heartbeats (which say rejoin).
    for at in [8_000, 16_000, 24_000] {
        assert_eq!(
            group.heartbeat(&a, None, 2, at),
            Some(ResponseError::RebalanceInProgress)
        );
        group.tick(at);
    }
    group.tick(1_000 + REBALANCE - 1);
    assert!(b_join.try_recv().is_err());
    group.tick(1_000 + REBALANCE);
    let result = b_join.try_recv().unwrap();
    assert_eq!(result.generation, 3);
    assert_eq!(
        result.leader, b,
        "the leader left; a remaining member leads"
    );
    assert!(!group.members.contains_key(&a));
}

#[test]
fn an_expired_session_removes_the_member_and_rebalances() {
    let (mut group, a, b) = stable_pair();
    assert_eq!(group.heartbeat(&b, None, 2, SESSION), None);
    group.tick(SESSION + 1);
    assert!(!group.members.contains_key(&a), "a never heartbeated");
    assert_eq!(group.state, GroupState::PreparingRebalance);
    let mut b_join = later(group.join(join(&b, &["range"]), SESSION + 2));
    assert_eq!(b_join.try_recv().unwrap().generation, 3);
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let (mut group, a, b) = stable_pair();
    assert_eq!(group.leave(&a, None, 0), None);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(group.leave(&b, None, 0), None);
    assert_eq!(group.state, GroupState::Empty);
    assert!(group.is_empty());
    assert_eq!(
        group.leave(&b, None, 0),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_static_member_rejoining_unchanged_keeps_its_assignment_without_a_rebalance() {
    let mut group = Group::new("g");
    let mut first = later(group.join(static_join("alpha", ""), 0));
    let first = first.try_recv().unwrap();
    let old_id = first.member_id.clone();
    let mut synced = later(sync(&mut group, &old_id, 1, &[(&old_id, "alpha:all")]));
    assert_eq!(
        synced.try_recv().unwrap().assignment,
        Bytes::from("alpha:all")
    );
    assert_eq!(group.state, GroupState::Stable);

    let again = now(group.join(static_join("alpha", ""), 100));
    assert_eq!(again.error, None);
    assert_ne!(again.member_id, old_id);
    assert_eq!(again.generation, 1, "no new generation");
    assert_eq!(group.state, GroupState::Stable);
    let result = now(sync(&mut group, &again.member_id, 1, &[]));
    assert_eq!(result.assignment, Bytes::from("alpha:all"));

    // The old incarnation is fenced.
    assert_eq!(
        group.heartbeat(&old_id, Some("alpha"), 1, 100),
        Some(ResponseError::FencedInstanceId)
    );
}

#[test]
fn pending_member_ids_expire_unused() {
    let mut group = Group::new("g");
    let first = now(group.join(join("", &["range"]), 0));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(!group.is_empty());
    group.tick(SESSION + 1);
    assert!(group.is_empty());
}

#[test]
fn a_dead_group_answers_coordinator_not_available() {
    let (mut group, a, _) = stable_pair();
    group.mark_dead();
    assert_eq!(
        group.heartbeat(&a, None, 2, 0),
        Some(ResponseError::CoordinatorNotAvailable)
    );
}
