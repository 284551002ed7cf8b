//! Membership changes as an operator makes them (`commerce cluster add-node` and
//! `remove-node`, signed in as the admin the nodes were started with), and what the nodes'
//! `/cluster/status` says about the groups afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::cli;
use crate::cluster::Cluster;

/// The admin account every node of a membership test is started with.
pub const ADMIN: [(&str, &str); 2] = [
    ("COMMERCE_ADMIN_EMAIL", "ops@example.com"),
    ("COMMERCE_ADMIN_PASSWORD", "cluster-admin-pw"),
];

/// The `--http-addr` and admin flags of a cluster command sent to node `via`.
fn access(cluster: &mut Cluster, via: u64) -> Vec<String> {
    let http = cluster.node(via).http_addr().to_string();
    [
        "--http-addr",
        http.as_str(),
        "--admin-email",
        ADMIN[0].1,
        "--admin-password",
        ADMIN[1].1,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Starts node `id` with `--join` and adds it with `commerce cluster add-node` (through
/// node `via`); returns once the command succeeded.
pub fn add_node(cluster: &mut Cluster, via: u64, id: u64) {
    let raft = cluster.start_joining(id, &ADMIN).to_string();
    let mut args = vec!["cluster".to_string(), "add-node".to_string()];
    args.extend(access(cluster, via));
    args.extend([
        "--node-id".to_string(),
        id.to_string(),
        "--raft-addr".to_string(),
        raft,
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli::run_ok(&args, b"", Duration::from_secs(180));
}

/// `commerce cluster remove-node --node-id <id>` through node `via`; its output.
pub fn remove_node(cluster: &mut Cluster, via: u64, id: u64) -> String {
    let mut args = vec!["cluster".to_string(), "remove-node".to_string()];
    args.extend(access(cluster, via));
    args.extend(["--node-id".to_string(), id.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli::run_ok(&args, b"", Duration::from_secs(600));
    eprintln!("remove-node printed:\n{out}");
    out
}

/// Each group's view from the node that leads it with a majority behind it (the leader
/// of the highest term when two claim), by group id, over the statuses that answered.
pub fn leader_views(statuses: &[(u64, Option<Value>)]) -> BTreeMap<u64, Value> {
    let mut led: BTreeMap<u64, Value> = BTreeMap::new();
    for status in statuses.iter().filter_map(|(_, status)| status.as_ref()) {
        for group in status["groups"].as_array().into_iter().flatten() {
            let leads = group["role"] == "leader" && group["has_majority"] == true;
            let Some(id) = group["group"].as_u64().filter(|_| leads) else {
                continue;
            };
            let newer = led
                .get(&id)
                .is_none_or(|seen| seen["term"].as_u64() < group["term"].as_u64());
            if newer {
                led.insert(id, group.clone());
            }
        }
    }
    led
}

/// How many of the groups `counted` leads each node of `nodes` (listed with 0 when it
/// leads none); `None` while one of them has no leader.
pub fn leader_counts(
    views: &BTreeMap<u64, Value>,
    counted: &BTreeSet<u64>,
    nodes: &[u64],
) -> Option<BTreeMap<u64, usize>> {
    let mut counts: BTreeMap<u64, usize> = nodes.iter().map(|id| (*id, 0)).collect();
    for group in counted {
        let leader = views.get(group)?["leader"].as_u64()?;
        *counts.entry(leader).or_default() += 1;
    }
    Some(counts)
}

/// The partition groups of topics whose names start with `prefix`, over every status.
pub fn partition_groups(statuses: &[(u64, Option<Value>)], prefix: &str) -> BTreeSet<u64> {
    groups_where(statuses, |group| {
        group["partition"]
            .as_str()
            .is_some_and(|name| name.starts_with(prefix))
    })
}

/// The services' groups (neither the controller nor a partition), over every status.
pub fn service_groups(statuses: &[(u64, Option<Value>)]) -> BTreeSet<u64> {
    groups_where(statuses, |group| {
        group["partition"].is_null() && group["group"] != 0
    })
}

fn groups_where(
    statuses: &[(u64, Option<Value>)],
    wanted: impl Fn(&Value) -> bool,
) -> BTreeSet<u64> {
    statuses
        .iter()
        .filter_map(|(_, status)| status.as_ref())
        .flat_map(|status| status["groups"].as_array().into_iter().flatten())
        .filter(|group| wanted(group))
        .filter_map(|group| group["group"].as_u64())
        .collect()
}
