//! Whether this node's replicas of the services' groups have caught up, for readiness: a
//! node that just opened its groups, or one far behind (back after a long absence, or
//! restoring from a snapshot), says so with 503 until it has applied nearly what the
//! leader has committed. Reads are correct regardless (each waits at the read barrier), but
//! a node far behind would make every read wait: a load balancer should send them
//! elsewhere meanwhile.
//!
//! A watcher asks each group's leader for its commit index (a read index, as a read
//! barrier does) once a second and compares it with what this replica has applied.

use commerce_storage::raft::{GroupId, RaftNode};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often each group is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the leader may take to confirm its commit index.
const ASK_LIMIT: Duration = Duration::from_secs(1);
/// Entries a replica may be behind and still take reads: about what one node applies in
/// well under a second.
pub const BEHIND_LIMIT: u64 = 500;

/// Per group: `None` until first checked, then how far behind it was.
#[derive(Default)]
pub struct CatchUp {
    behind: Mutex<BTreeMap<GroupId, Option<u64>>>,
}

impl CatchUp {
    pub fn new(groups: &[GroupId]) -> Arc<CatchUp> {
        let behind = groups.iter().map(|group| (*group, None)).collect();
        Arc::new(CatchUp {
            behind: Mutex::new(behind),
        })
    }

    /// Ready unless `group` was not checked yet or is far behind.
    pub fn check(&self, group: GroupId) -> Result<(), String> {
        let behind = self
            .behind
            .lock()
            .map_err(|_| "the catch-up watcher failed".to_string())?
            .get(&group)
            .copied()
            .flatten();
        match behind {
            None => Err("its replica has not caught up with the leader yet".to_string()),
            Some(entries) if entries > BEHIND_LIMIT => Err(format!(
                "its replica is catching up ({entries} entries behind the leader)"
            )),
            Some(_) => Ok(()),
        }
    }

    fn record(&self, group: GroupId, entries: u64) {
        if let Ok(mut behind) = self.behind.lock() {
            behind.insert(group, Some(entries));
        }
    }

    /// Checks every group once a second until `stopped` turns true. A group whose leader
    /// cannot be asked keeps its last answer: the readiness check's leader test covers it.
    pub async fn watch(
        self: Arc<Self>,
        raft: Arc<RaftNode>,
        groups: Vec<GroupId>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.changed() => return,
            }
            for group in &groups {
                let Ok(committed) = raft.read_index(*group, ASK_LIMIT).await else {
                    continue;
                };
                let applied = raft
                    .metrics(*group)
                    .ok()
                    .and_then(|metrics| metrics.last_applied)
                    .map_or(0, |id| id.index);
                self.record(*group, committed.saturating_sub(applied));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchecked_and_far_behind_groups_are_not_ready() {
        let (near, far) = (GroupId(1), GroupId(2));
        let catch_up = CatchUp::new(&[near, far]);
        assert!(catch_up.check(near).is_err());
        catch_up.record(near, 3);
        catch_up.record(far, BEHIND_LIMIT + 1);
        assert!(catch_up.check(near).is_ok());
        assert!(catch_up.check(far).is_err_and(|why| why.contains("behind")));
    }
}
