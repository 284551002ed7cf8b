//! The reconciler: makes this node's topics and partition groups match the controller's
//! metadata as applied here. It runs after every applied controller command (and retries
//! what failed), so a node that was down catches up on start: it opens every partition it
//! holds a replica of, and the groups' leaders bring each one up to date (or send a
//! snapshot when the log it needs is gone).

use super::{MarkerObserver, PartitionMachine, Replica, Replication};
use crate::broker::{Broker, Topic};
use crate::controller::{ClusterMetadata, PartitionReplicas, TopicMetadata};
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::producer::partition_state::ProducerState;
use crate::topic_name::TopicName;
use commerce_storage::raft::{GroupId, GroupStart, RaftGroupError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Wait before retrying a reconcile that could not open or close something.
const RETRY: Duration = Duration::from_secs(1);
/// How long the other replicas of a new partition wait for its preferred replica to
/// start the group before one of them does.
const ORPHAN_WAIT: Duration = Duration::from_secs(3);

/// Runs until `stopped` turns true. Does nothing on a single node.
pub async fn run_reconciler(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let Some(replication) = broker.replication().cloned() else {
        return;
    };
    let mut changes = replication.metadata.changes();
    loop {
        changes.borrow_and_update();
        let settled = reconcile(&broker, &replication).await;
        let retry = async {
            if settled {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(RETRY).await;
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = retry => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One pass; false if something failed and the pass should be retried.
async fn reconcile(broker: &Broker, replication: &Arc<Replication>) -> bool {
    let metadata = replication.metadata.current();
    let mut settled = true;
    for topic in broker.topics() {
        let wanted = metadata.topics.get(topic.name.as_str());
        if wanted.is_none_or(|wanted| wanted.id != topic.id) {
            close_topic(broker, replication, &topic).await;
        }
    }
    for wanted in metadata.topics.values() {
        let result = match broker.topic(&wanted.name) {
            Some(existing) => update_topic(broker, replication, &metadata, &existing, wanted).await,
            None => open_topic(broker, replication, &metadata, wanted, Vec::new())
                .await
                .map(|()| false),
        };
        if let Ok(true) = result {
            settled = false;
        }
        if let Err(error) = result {
            tracing::warn!(topic = %wanted.name, %error, "could not open the topic's partitions; retrying");
            settled = false;
        }
    }
    settled
}

/// Opens the partitions of `wanted` this node holds (beyond those in `open` already) and
/// publishes the topic.
async fn open_topic(
    broker: &Broker,
    replication: &Replication,
    metadata: &ClusterMetadata,
    wanted: &TopicMetadata,
    open: Vec<Arc<Partition>>,
) -> Result<()> {
    let name = TopicName::parse(&wanted.name)?;
    let log_config = wanted.config.log_config(broker.config().log_flush);
    let mut partitions = open;
    for (index, replicas) in wanted.partitions.iter().enumerate() {
        let index = i32::try_from(index).map_err(|_| BrokerError::InvalidPartitions(i32::MAX))?;
        let hosted = replicas.replicas.contains(&replication.node_id);
        if !hosted || partitions.iter().any(|p| p.index == index) {
            continue;
        }
        // The group coordinator learns of transaction markers in its offsets partitions.
        let observer = (wanted.name == crate::group::OFFSETS_TOPIC)
            .then(|| broker.groups().marker_observer(index));
        let partition = open_partition(
            replication,
            metadata,
            &name,
            (index, replicas),
            &log_config,
            observer,
        )
        .await?;
        partitions.push(partition);
    }
    partitions.sort_by_key(|partition| partition.index);
    let topic = Topic {
        name,
        id: wanted.id,
        config: RwLock::new(wanted.config.clone()),
        partitions,
    };
    tracing::info!(topic = %topic.name, hosted = topic.partitions.len(), "opened replicated topic");
    broker
        .write_topics()
        .insert(wanted.name.clone(), Arc::new(topic));
    Ok(())
}

/// Applies a config change, drives replica moves this node leads, and opens added (or
/// closes no longer hosted) partitions of a topic this node has open. `Ok(true)` while a
/// replica move is still under way (the reconciler then checks again soon).
async fn update_topic(
    broker: &Broker,
    replication: &Arc<Replication>,
    metadata: &ClusterMetadata,
    existing: &Arc<Topic>,
    wanted: &TopicMetadata,
) -> Result<bool> {
    if existing.config() != wanted.config {
        *existing.config.write().unwrap_or_else(|p| p.into_inner()) = wanted.config.clone();
        // Retention and segment settings take effect on the logs at once.
        let log_config = wanted.config.log_config(broker.config().log_flush);
        for partition in &existing.partitions {
            partition.log().set_config(log_config.clone());
        }
    }
    let me = replication.node_id;
    let hosted: BTreeSet<i32> = wanted
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.replicas.contains(&me))
        .filter_map(|(index, _)| i32::try_from(index).ok())
        .collect();
    let mut moving = false;
    let mut leading = BTreeSet::new();
    for partition in &existing.partitions {
        let placed = usize::try_from(partition.index)
            .ok()
            .and_then(|index| wanted.partitions.get(index));
        if let (Some(replica), Some(placed)) = (partition.replica(), placed) {
            let status = replica.status();
            let voters: BTreeSet<u64> = status
                .as_ref()
                .map(|s| s.voters.iter().copied().collect())
                .unwrap_or_default();
            let wanted_voters: BTreeSet<u64> = placed.replicas.iter().copied().collect();
            if voters != wanted_voters {
                // Until the group's voters match, keep checking: the leader that drives
                // the change may be a new one by the next pass.
                moving = true;
            }
            if status.is_some_and(|s| s.leader == Some(me)) {
                leading.insert(partition.index);
            }
            super::membership::drive(replication, metadata, replica.group(), &placed.replicas);
        }
    }
    let open: BTreeSet<i32> = existing.partitions.iter().map(|p| p.index).collect();
    if hosted == open {
        return Ok(moving);
    }
    // A replica moved off this node closes, unless it leads the group: the leader first
    // brings the new replica in and removes itself (stepping down), then closes.
    let (keep, dropped): (Vec<_>, Vec<_>) =
        existing.partitions.iter().cloned().partition(|partition| {
            hosted.contains(&partition.index) || leading.contains(&partition.index)
        });
    for partition in &dropped {
        // This node no longer holds a replica (moved off it): the group's leader removes
        // it from the voters, and the other replicas keep a majority meanwhile.
        tracing::info!(topic = %existing.name, partition = partition.index, "no longer a replica here; closing");
        close_partition(replication, partition).await;
    }
    open_topic(broker, replication, metadata, wanted, keep).await?;
    Ok(moving || !leading.is_disjoint(&open.difference(&hosted).copied().collect()))
}

async fn open_partition(
    replication: &Replication,
    metadata: &ClusterMetadata,
    name: &TopicName,
    (index, replicas): (i32, &PartitionReplicas),
    log_config: &commerce_storage::LogConfig,
    observer: Option<MarkerObserver>,
) -> Result<Arc<Partition>> {
    if replicas.group == 0 {
        return Err(BrokerError::Replication(format!(
            "{name}-{index} has no partition group id"
        )));
    }
    let group = GroupId(replicas.group);
    let members: BTreeMap<u64, String> = replicas
        .replicas
        .iter()
        .filter_map(|id| metadata.raft_addr(*id).map(|addr| (*id, addr)))
        .collect();
    let producers = Arc::new(Mutex::new(ProducerState::default()));
    let (end_offset, _) = watch::channel(0);
    let end_offset = Arc::new(end_offset);
    // The preferred replica bootstraps the group (and so stands for election first, which
    // spreads leaders as placement meant); the others join and wait for it. A replica that
    // already has the group's state (a restart) keeps it either way.
    // A moved partition's new replica always joins: its leader adds it.
    let preferred =
        !replicas.reassigned && replicas.preferred_leader() == Some(replication.node_id);
    let start = if preferred {
        GroupStart::Bootstrap(members.clone())
    } else {
        GroupStart::Join
    };
    let open = |producers: Arc<Mutex<ProducerState>>, end_offset: Arc<watch::Sender<i64>>| {
        replication.raft.open_partition_group(
            group,
            start.clone(),
            Box::new(
                PartitionMachine::new(producers, end_offset).observing_markers(observer.clone()),
            ),
            log_config.clone(),
        )
    };
    let log = match open(producers.clone(), end_offset.clone()).await {
        Err(RaftGroupError::GroupExists(_)) => {
            // Left open by an earlier pass that failed on another partition.
            let _ = replication.raft.close_group(group).await;
            open(producers.clone(), end_offset.clone()).await
        }
        other => other,
    }
    .map_err(|error| BrokerError::Replication(format!("{name}-{index}: {error}")))?;
    let committed = log.high_watermark();
    end_offset.send_if_modified(|end| {
        let moved = committed > *end;
        *end = (*end).max(committed);
        moved
    });
    let fresh = replication
        .raft
        .status(group)
        .is_ok_and(|status| status.term == 0);
    if fresh && !preferred && !replicas.reassigned {
        tokio::spawn(bootstrap_if_orphaned(
            replication.raft.clone(),
            group,
            members,
        ));
    }
    let replica = Replica::new(replication.raft.clone(), group, log);
    Ok(Arc::new(Partition::replicated(
        name.clone(),
        index,
        replica,
        producers,
        end_offset,
        replication.raft.group_data_dir(group),
    )))
}

/// A joining replica of a new group bootstraps it itself when the preferred replica has
/// not brought it in within [`ORPHAN_WAIT`] (it is down): every replica bootstraps with the
/// same members, so whichever does first, they agree.
async fn bootstrap_if_orphaned(
    raft: Arc<commerce_storage::raft::RaftNode>,
    group: GroupId,
    members: BTreeMap<u64, String>,
) {
    tokio::time::sleep(ORPHAN_WAIT).await;
    let orphaned = raft
        .status(group)
        .is_ok_and(|status| status.term == 0 && status.leader.is_none());
    if orphaned {
        tracing::info!(%group, "the preferred replica did not start the group; starting it");
        if let Err(error) = raft.bootstrap(group, members).await {
            tracing::warn!(%group, %error, "could not start an orphaned partition group");
        }
    }
}

/// Forgets a deleted topic here: its groups stop and their data goes.
async fn close_topic(broker: &Broker, replication: &Replication, topic: &Topic) {
    broker.write_topics().remove(topic.name.as_str());
    for partition in &topic.partitions {
        close_partition(replication, partition).await;
    }
    tracing::info!(topic = %topic.name, "closed deleted topic");
}

/// Stops a partition's group here and removes its data.
async fn close_partition(replication: &Replication, partition: &Partition) {
    let Some(replica) = partition.replica() else {
        return;
    };
    let group = replica.group();
    if let Err(error) = replication.raft.close_group(group).await {
        tracing::warn!(%group, %error, "closing a partition's group failed");
    }
    let dir = replication.raft.group_data_dir(group);
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), %error, "could not remove a partition's data");
    }
}
