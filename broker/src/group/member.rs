//! A member of a classic consumer group, and the answers the coordinator owes it.
//!
//! A JoinGroup or SyncGroup that cannot be answered yet (the rebalance is still collecting
//! members, or the leader has not sent the assignment) parks a oneshot sender in the member;
//! the state machine fulfils it when the phase completes. The connection handling the request
//! awaits the receiver, which is how Kafka's "delayed join" looks in async Rust.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// What a JoinGroup is answered with (error or the new generation).
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader receives the members and their metadata (to run the assignor).
    pub members: Vec<JoinedMember>,
    /// JoinGroup v9: the leader need not assign (a static leader rejoined a stable group).
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a SyncGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            ..SyncResult::default()
        }
    }
}

/// An answer now, or a receiver the handler awaits until the phase completes.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    pub join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    pub fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    /// A member waiting for a phase to complete is alive by definition (Kafka's
    /// `shouldKeepAlive`): its session only runs while it is not parked on the coordinator.
    pub fn session_expired(&self, now_ms: i64) -> bool {
        self.join_waiter.is_none()
            && self.sync_waiter.is_none()
            && now_ms.saturating_sub(self.last_heartbeat_ms) > self.session_timeout_ms
    }

    /// Answers a parked JoinGroup, if any.
    pub fn reply_join(&mut self, result: JoinResult) {
        if let Some(waiter) = self.join_waiter.take() {
            // The client may have hung up; nothing is owed then.
            let _ = waiter.send(result);
        }
    }

    /// Answers a parked SyncGroup, if any.
    pub fn reply_sync(&mut self, result: SyncResult) {
        if let Some(waiter) = self.sync_waiter.take() {
            let _ = waiter.send(result);
        }
    }
}
