//! The cluster's control plane across real processes: three nodes form the controller group
//! from `--peers`, register themselves, elect a new controller leader when the leader is
//! killed or paused, and bring back a restarted or wiped node; `commerce cluster up` and
//! `commerce cluster status` as an operator uses them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use commerce_tests::cluster::{Cluster, agreed_leader, controller, registered};
use commerce_tests::node::local_port_run;
use commerce_tests::{TimeLimit, cli};
use serde_json::Value;

const FORM: Duration = Duration::from_secs(30);

fn term(status: &Option<Value>) -> u64 {
    status
        .as_ref()
        .and_then(controller)
        .and_then(|group| group["term"].as_u64())
        .unwrap_or(0)
}

fn applied(status: &Option<Value>) -> Option<u64> {
    status
        .as_ref()
        .and_then(controller)
        .and_then(|group| group["last_applied_index"].as_u64())
}

/// Waits until `ids` agree on a controller leader and each has the whole cluster registered
/// and has applied the leader's log; returns the leader and its term.
fn wait_formed(cluster: &Cluster, ids: &[u64], all: &[u64], what: &str) -> (u64, u64) {
    let statuses = cluster.wait_until(what, ids, FORM, |statuses| {
        let Some(leader) = agreed_leader(statuses) else {
            return false;
        };
        let leader_last = statuses
            .iter()
            .find(|(id, _)| *id == leader)
            .and_then(|(_, status)| status.as_ref().and_then(controller))
            .and_then(|group| group["last_log_index"].as_u64());
        statuses.iter().all(|(_, status)| {
            status.as_ref().is_some_and(|s| registered(s) == all)
                && applied(status).is_some()
                && applied(status) == leader_last
        })
    });
    let leader = agreed_leader(&statuses).expect("a leader");
    let term = statuses
        .iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, status)| term(status))
        .expect("the leader's status");
    (leader, term)
}

#[test]
fn a_killed_controller_leader_is_replaced_and_rejoins() {
    let _limit = TimeLimit::new(
        "a_killed_controller_leader_is_replaced_and_rejoins",
        Duration::from_secs(180),
    );
    let mut cluster = Cluster::start(3);
    let all = cluster.ids();
    let (leader, first_term) = wait_formed(&cluster, &all, &all, "three nodes form a cluster");

    // The operator's view names every node, up, and the controller group's leader.
    let http = cluster.node(1).http_addr().to_string();
    let printed = cli::run_ok(
        &["cluster", "status", "--http-addr", &http],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(printed.matches(" up").count(), 3, "{printed}");
    assert!(printed.contains("controller"), "{printed}");

    cluster.node(leader).kill();
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let statuses = cluster.wait_until(
        "the survivors elect a new controller leader",
        &survivors,
        FORM,
        |statuses| agreed_leader(statuses).is_some_and(|new| new != leader),
    );
    assert!(
        statuses.iter().all(|(_, status)| term(status) > first_term),
        "a new leader means a new term: {statuses:#?}"
    );
    let printed = cli::run_ok(
        &[
            "cluster",
            "status",
            "--http-addr",
            &http_of(&mut cluster, survivors[0]),
        ],
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(printed.matches(" up").count(), 2, "{printed}");
    assert!(printed.contains("unreachable"), "{printed}");

    cluster.node(leader).relaunch();
    cluster.node(leader).wait_ready();
    wait_formed(&cluster, &all, &all, "the restarted node catches up");
}

fn http_of(cluster: &mut Cluster, id: u64) -> String {
    cluster.node(id).http_addr().to_string()
}

#[test]
fn a_paused_leader_loses_leadership_and_follows_after_resuming() {
    let _limit = TimeLimit::new(
        "a_paused_leader_loses_leadership_and_follows_after_resuming",
        Duration::from_secs(180),
    );
    let mut cluster = Cluster::start(3);
    let all = cluster.ids();
    let (leader, first_term) = wait_formed(&cluster, &all, &all, "three nodes form a cluster");
    let pid = cluster.node(leader).pid().expect("running").to_string();
    signal("-STOP", &pid);
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster.wait_until(
            "the survivors elect a new leader while the old one is paused",
            &survivors,
            FORM,
            |statuses| agreed_leader(statuses).is_some_and(|new| new != leader),
        )
    }));
    signal("-CONT", &pid);
    let statuses = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(statuses.iter().all(|(_, status)| term(status) > first_term));
    let (now, _) = wait_formed(
        &cluster,
        &all,
        &all,
        "the resumed node follows the new leader",
    );
    assert_ne!(
        now, leader,
        "the paused node must not lead again on its old term"
    );
}

fn signal(which: &str, pid: &str) {
    let status = Command::new("kill")
        .args([which, pid])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill {which} {pid}");
}

#[test]
fn a_node_whose_data_was_wiped_rejoins() {
    let _limit = TimeLimit::new(
        "a_node_whose_data_was_wiped_rejoins",
        Duration::from_secs(180),
    );
    let mut cluster = Cluster::start(3);
    let all = cluster.ids();
    wait_formed(&cluster, &all, &all, "three nodes form a cluster");
    let node = cluster.node(3);
    node.kill();
    std::fs::remove_dir_all(node.data_dir()).expect("cannot wipe the node's data");
    node.relaunch();
    node.wait_ready();
    // The wiped node knows the registrations again only by replication from the leader.
    wait_formed(&cluster, &all, &all, "the wiped node is caught up");
}

#[test]
fn a_node_not_in_its_peers_is_refused() {
    let output = cli::run(
        &[
            "start",
            "--node-id",
            "4",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
        ],
        b"",
        Duration::from_secs(20),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not in --peers"), "{stderr}");
}

#[test]
fn cluster_up_runs_three_nodes_until_stopped() {
    let _limit = TimeLimit::new(
        "cluster_up_runs_three_nodes_until_stopped",
        Duration::from_secs(180),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (kafka, http, raft) = (local_port_run(3), local_port_run(3), local_port_run(3));
    let mut up = Command::new(commerce_tests::commerce_bin())
        .args(["cluster", "up", "--nodes", "3", "--data-dir"])
        .arg(dir.path())
        .args(["--kafka-port", &kafka.to_string()])
        .args(["--http-port", &http.to_string()])
        .args(["--raft-port", &raft.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run commerce cluster up");
    let deadline = Instant::now() + FORM;
    let printed = loop {
        let output = cli::run(
            &[
                "cluster",
                "status",
                "--http-addr",
                &format!("127.0.0.1:{http}"),
            ],
            b"",
            Duration::from_secs(20),
        );
        let printed = String::from_utf8_lossy(&output.stdout).to_string();
        if output.status.success()
            && printed.matches(" up").count() == 3
            && !printed.contains("none")
        {
            break printed;
        }
        if Instant::now() > deadline {
            let _ = up.kill();
            panic!("cluster up did not form a cluster; last status:\n{printed}");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        printed.contains(&format!("127.0.0.1:{}", kafka + 2)),
        "{printed}"
    );
    signal("-TERM", &up.id().to_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = up.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "cluster up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "cluster up exited with {status}");
    for id in 1..=3 {
        let log =
            std::fs::read_to_string(dir.path().join(format!("node-{id}.log"))).expect("node log");
        assert!(
            log.contains(&format!("commerce node {id} stopped")),
            "node {id} did not stop cleanly:\n{log}"
        );
    }
}

#[test]
fn a_partitioned_leader_is_replaced_and_follows_after_healing() {
    let _limit = TimeLimit::new(
        "a_partitioned_leader_is_replaced_and_follows_after_healing",
        Duration::from_secs(180),
    );
    let cluster = Cluster::start(3);
    let all = cluster.ids();
    let (leader, first_term) = wait_formed(&cluster, &all, &all, "three nodes form a cluster");
    cluster.isolate(leader);
    let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let statuses = cluster.wait_until(
        "the majority side elects a new leader",
        &survivors,
        FORM,
        |statuses| agreed_leader(statuses).is_some_and(|new| new != leader),
    );
    assert!(statuses.iter().all(|(_, status)| term(status) > first_term));
    // The cut-off node cannot commit anything: its term is stale or it is a candidate.
    let isolated = cluster
        .status(leader)
        .expect("the isolated node still serves HTTP");
    let group = controller(&isolated).expect("controller group");
    assert!(
        group["role"] != "leader" || group["term"].as_u64() == Some(first_term),
        "the isolated node leads a new term alone: {group}"
    );
    cluster.heal();
    let (now, _) = wait_formed(&cluster, &all, &all, "the healed node follows again");
    assert_ne!(now, leader);
}

fn voters(status: &Option<Value>) -> Vec<u64> {
    status
        .as_ref()
        .and_then(controller)
        .and_then(|group| group["voters"].as_array().cloned())
        .map(|voters| voters.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[test]
fn a_fourth_node_is_added_and_then_removed() {
    let _limit = TimeLimit::new(
        "a_fourth_node_is_added_and_then_removed",
        Duration::from_secs(180),
    );
    let admin = [
        ("COMMERCE_ADMIN_EMAIL", "ops@example.com"),
        ("COMMERCE_ADMIN_PASSWORD", "cluster-admin-pw"),
    ];
    let mut cluster = Cluster::start_with_env(3, &admin);
    let three = cluster.ids();
    wait_formed(&cluster, &three, &three, "three nodes form a cluster");
    let raft = cluster.start_joining(4, &admin);
    let http = http_of(&mut cluster, 1);
    let access = [
        "--http-addr",
        &http,
        "--admin-email",
        "ops@example.com",
        "--admin-password",
        "cluster-admin-pw",
    ];

    let wrong = cli::run(
        &[
            "cluster",
            "add-node",
            "--http-addr",
            &http,
            "--admin-email",
            "ops@example.com",
            "--admin-password",
            "not-the-password",
            "--node-id",
            "4",
            "--raft-addr",
            &raft.to_string(),
        ],
        b"",
        Duration::from_secs(30),
    );
    assert!(
        !wrong.status.success(),
        "a wrong password must not add a node"
    );

    let mut add = vec!["cluster", "add-node"];
    add.extend_from_slice(&access);
    let raft = raft.to_string();
    add.extend_from_slice(&["--node-id", "4", "--raft-addr", &raft]);
    cli::run_ok(&add, b"", Duration::from_secs(120));
    let four = cluster.ids();
    let statuses = cluster.wait_until(
        "four voters, four registered nodes",
        &four,
        FORM,
        |statuses| {
            statuses.iter().all(|(_, status)| {
                voters(status) == [1, 2, 3, 4]
                    && status
                        .as_ref()
                        .is_some_and(|s| registered(s) == [1, 2, 3, 4])
            })
        },
    );
    assert!(agreed_leader(&statuses).is_some());

    let mut remove = vec!["cluster", "remove-node"];
    remove.extend_from_slice(&access);
    remove.extend_from_slice(&["--node-id", "4"]);
    cli::run_ok(&remove, b"", Duration::from_secs(60));
    cluster.wait_until(
        "three voters, three registered nodes",
        &three,
        FORM,
        |statuses| {
            statuses.iter().all(|(_, status)| {
                voters(status) == [1, 2, 3]
                    && status.as_ref().is_some_and(|s| registered(s) == [1, 2, 3])
            })
        },
    );
}
