//! Side effects run once per cluster: a service's outbox relay, consumers and workers run
//! on the leader of the service's Raft group only.
//!
//! The supervisor watches this node's leadership of the group. On becoming leader (with a
//! majority behind it, and once it has applied its whole log, so the relay and workers see
//! every committed command) it starts them; when it stops leading, or the node stops, it
//! stops them. A new leader resumes where its predecessor left off: the relay from the
//! outbox (its progress is recorded in the group's log; the topic's tail covers the rest,
//! and the idempotent producer drops a re-send), consumers from the group's committed
//! offsets (the inbox absorbs a redelivery), workers from the replicated state.

use super::{ServiceEngine, ServiceLog, Task};
use commerce_services::platform::outbox::Relay;
use commerce_services::platform::record_signature::RecordKeys;
use commerce_storage::raft::{GroupId, RaftNode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the supervisor looks at its leadership.
const POLL: Duration = Duration::from_millis(100);
/// A leader whose majority has not answered for this long stops its side effects: it is
/// probably cut off, and another node takes over (the broker's partition leaders use the
/// same lease).
pub const LEASE: Duration = Duration::from_millis(1_600);
/// How long a new leader may take to apply its log before it starts anyway (and retries).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);
/// How long stopping tasks may take.
const STOP_LIMIT: Duration = Duration::from_secs(5);

pub struct LeaderTasks {
    pub service: &'static str,
    pub engine: Arc<dyn ServiceEngine>,
    pub producer_id: Option<i64>,
    pub tasks: Vec<Task>,
    /// The platform's record key the relay signs with.
    pub record_keys: RecordKeys,
}

impl LeaderTasks {
    pub async fn run(
        self,
        raft: Arc<RaftNode>,
        group: GroupId,
        log: Arc<ServiceLog>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            if !wait_until(&mut stopped, || raft.leads(group, LEASE)).await {
                return;
            }
            if let Err(error) = raft.wait_leader_applied(group, CATCH_UP_LIMIT).await {
                tracing::debug!(service = self.service, %error, "leader not caught up yet");
                continue;
            }
            tracing::info!(
                service = self.service,
                "this node leads the service: starting its relay, consumers and workers"
            );
            let (stop_term, term_stopped) = watch::channel(false);
            let handles = self.start(&log, term_stopped);
            let node_stopping = !wait_until(&mut stopped, || !raft.leads(group, LEASE)).await;
            let _ = stop_term.send(true);
            for handle in handles {
                if tokio::time::timeout(STOP_LIMIT, handle).await.is_err() {
                    tracing::warn!(service = self.service, "a leader task did not stop in time");
                }
            }
            if node_stopping {
                return;
            }
            tracing::info!(
                service = self.service,
                "this node no longer leads the service: stopped its relay, consumers and workers"
            );
        }
    }

    fn start(&self, log: &Arc<ServiceLog>, stopped: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        if let Some(producer_id) = self.producer_id {
            let relay = Relay {
                service: self.service,
                store: self.engine.store().clone(),
                log: log.clone(),
                producer_id,
                signal: self.engine.outbox_signal(),
                progress: self.engine.clone(),
                keys: self.record_keys.clone(),
            };
            handles.push(tokio::spawn(relay.run(stopped.clone())));
        }
        for task in &self.tasks {
            handles.push(task(log.clone(), stopped.clone()));
        }
        handles
    }
}

/// Polls `condition` until it holds (true) or the node stops (false).
async fn wait_until(stopped: &mut watch::Receiver<bool>, condition: impl Fn() -> bool) -> bool {
    loop {
        if *stopped.borrow() {
            return false;
        }
        if condition() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopped.changed() => {}
        }
    }
}
