//! A cluster of `commerce start` processes formed with `--peers`, and a reader of each
//! node's `/cluster/status`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::link::Link;
use crate::node::{Node, local_listen_addr};

/// A fault [`Cluster::inject`] applies to one node, and repairs.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGKILL, then a restart on the same data.
    Kill,
    /// SIGSTOP, then SIGCONT: a node that stops answering without closing a connection.
    Pause,
    /// Every Raft link to and from the node cut, then healed.
    Isolate,
}

pub struct Cluster {
    /// The `--peers` the cluster was formed with.
    peers: String,
    nodes: Vec<Node>,
    http: reqwest::blocking::Client,
    /// `(from, to)` -> the link node `from` dials node `to` through.
    links: BTreeMap<(u64, u64), Link>,
}

impl Cluster {
    /// `size` nodes (ids 1..=size) forming one cluster; returns once each accepts Kafka
    /// connections (not once the cluster has a leader: see [`Cluster::wait_until`]). Every
    /// node reaches every other through a [`Link`], so tests can partition one.
    pub fn start(size: u64) -> Cluster {
        Cluster::start_with_env(size, &[])
    }

    /// [`Cluster::start`] with environment variables for every node.
    pub fn start_with_env(size: u64, env: &[(&str, &str)]) -> Cluster {
        let raft: Vec<(u64, SocketAddr)> = (1..=size).map(|id| (id, local_listen_addr())).collect();
        let peers = raft
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut links = BTreeMap::new();
        for (from, _) in &raft {
            for (to, addr) in &raft {
                if from != to {
                    links.insert((*from, *to), Link::start(*addr));
                }
            }
        }
        let mut nodes: Vec<Node> = raft
            .iter()
            .map(|(id, addr)| {
                let dial = links
                    .iter()
                    .filter(|((from, _), _)| from == id)
                    .map(|((_, to), link)| format!("{to}={}", link.addr()))
                    .collect::<Vec<_>>()
                    .join(",");
                let args = vec![
                    "--raft-addr".to_string(),
                    addr.to_string(),
                    "--peers".to_string(),
                    peers.clone(),
                    "--raft-dial".to_string(),
                    dial,
                ];
                Node::prepare(*id, &args, env)
            })
            .collect();
        for node in &mut nodes {
            node.launch();
        }
        for node in &mut nodes {
            node.wait_ready();
        }
        Cluster {
            peers,
            nodes,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("cannot build an HTTP client"),
            links,
        }
    }

    /// Starts node `id` with `--join` (not yet a member: `commerce cluster add-node` makes it
    /// one); returns its Raft address.
    pub fn start_joining(&mut self, id: u64, env: &[(&str, &str)]) -> SocketAddr {
        let raft = local_listen_addr();
        let args = vec![
            "--raft-addr".to_string(),
            raft.to_string(),
            "--peers".to_string(),
            self.peers.clone(),
            "--join".to_string(),
            "true".to_string(),
        ];
        let mut node = Node::prepare(id, &args, env);
        node.launch();
        node.wait_ready();
        self.nodes.push(node);
        raft
    }

    /// Cuts every link to and from node `id`: a network partition of that node.
    pub fn isolate(&self, id: u64) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.cut();
            }
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.heal();
        }
    }

    /// Applies `fault` to node `target` for `lasting`, then repairs it (a killed node is
    /// restarted on the same data). Returns once repaired, not once the cluster settled.
    pub fn inject(&mut self, fault: Fault, target: u64, lasting: Duration) {
        match fault {
            Fault::Kill => {
                self.node(target).kill();
                std::thread::sleep(lasting);
                self.node(target).restart();
            }
            Fault::Pause => {
                let pid = self.node(target).pid().expect("the node runs");
                signal("-STOP", pid);
                std::thread::sleep(lasting);
                signal("-CONT", pid);
            }
            Fault::Isolate => {
                self.isolate(target);
                std::thread::sleep(lasting);
                self.heal();
            }
        }
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.node_id() == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// `bootstrap.servers` naming the Kafka listeners of nodes `ids`, in that order.
    pub fn bootstrap_of(&self, ids: impl IntoIterator<Item = u64>) -> String {
        ids.into_iter()
            .map(|id| {
                self.nodes
                    .iter()
                    .find(|node| node.node_id() == id)
                    .unwrap_or_else(|| panic!("no node {id}"))
                    .bootstrap()
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(Node::node_id).collect()
    }

    /// Node `id`'s `/cluster/status`, `None` if it does not answer.
    pub fn status(&self, id: u64) -> Option<Value> {
        let node = self.nodes.iter().find(|node| node.node_id() == id)?;
        let response = self
            .http
            .get(format!("http://{}/cluster/status", node.http_addr()))
            .send()
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().ok()
    }

    /// Polls until `check` holds for the statuses of the nodes in `ids` (None for a node
    /// that does not answer); panics with the last statuses after `limit`.
    pub fn wait_until(
        &self,
        what: &str,
        ids: &[u64],
        limit: Duration,
        check: impl Fn(&[(u64, Option<Value>)]) -> bool,
    ) -> Vec<(u64, Option<Value>)> {
        let deadline = Instant::now() + limit;
        loop {
            let statuses: Vec<(u64, Option<Value>)> =
                ids.iter().map(|id| (*id, self.status(*id))).collect();
            if check(&statuses) {
                return statuses;
            }
            assert!(
                Instant::now() < deadline,
                "not within {limit:?}: {what}; statuses: {statuses:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The controller group (id 0) in a node's status.
pub fn controller(status: &Value) -> Option<&Value> {
    status["groups"]
        .as_array()?
        .iter()
        .find(|group| group["group"] == 0)
}

/// The controller leader every given status agrees on, if they all name the same one.
pub fn agreed_leader(statuses: &[(u64, Option<Value>)]) -> Option<u64> {
    let mut leaders = statuses.iter().map(|(_, status)| {
        status
            .as_ref()
            .and_then(controller)
            .and_then(|group| group["leader"].as_u64())
    });
    let first = leaders.next()??;
    leaders.all(|leader| leader == Some(first)).then_some(first)
}

/// The node ids registered in a status, sorted.
pub fn registered(status: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = status["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|node| node["id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// Sends `which` (`-STOP`, `-CONT`) to process `pid`.
pub fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}
