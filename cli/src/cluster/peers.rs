//! A cluster node's settings: its id, its Raft address and the voters it forms the cluster
//! with (`--peers 1=127.0.0.1:9701,2=127.0.0.1:9702,3=127.0.0.1:9703`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    pub raft_addr: SocketAddr,
    /// Every initial voter's Raft address, this node's included.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Join a running cluster instead of forming it.
    pub join: bool,
    /// Addresses to dial some peers at instead of their Raft addresses (NAT, proxies).
    pub dial: BTreeMap<u64, SocketAddr>,
}

impl ClusterSettings {
    /// `None` without `--peers` (a node on its own). With peers, this node must be one of
    /// them (or be joining) and its `--raft-addr` must agree with its entry.
    pub fn resolve(
        node_id: i32,
        peers: Option<&str>,
        raft_addr: Option<SocketAddr>,
        join: bool,
        dial: Option<&str>,
    ) -> anyhow::Result<Option<ClusterSettings>> {
        let Some(peers) = peers else {
            anyhow::ensure!(
                raft_addr.is_none() && !join && dial.is_none(),
                "--raft-addr, --raft-dial and --join need --peers"
            );
            return Ok(None);
        };
        let node_id = u64::try_from(node_id)
            .ok()
            .filter(|id| *id >= 1)
            .ok_or_else(|| anyhow::anyhow!("a cluster node's id must be at least 1"))?;
        let peers = parse_peers(peers)?;
        let raft_addr = match (raft_addr, peers.get(&node_id)) {
            (Some(flag), Some(listed)) if flag != *listed => anyhow::bail!(
                "--raft-addr {flag} differs from node {node_id}'s address {listed} in --peers"
            ),
            (Some(addr), _) | (None, Some(&addr)) => addr,
            (None, None) => anyhow::bail!(
                "node {node_id} is not in --peers; give its --raft-addr to join the cluster"
            ),
        };
        anyhow::ensure!(
            join || peers.contains_key(&node_id),
            "node {node_id} is not in --peers: list it, or start it with --join"
        );
        let dial = match dial {
            Some(dial) => parse_peers(dial)?,
            None => BTreeMap::new(),
        };
        Ok(Some(ClusterSettings {
            node_id,
            raft_addr,
            peers,
            join,
            dial,
        }))
    }
}

/// `1=host:port,2=host:port,...` into a map; ids ≥ 1, each once, addresses distinct.
pub fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<u64, SocketAddr>> {
    let mut peers = BTreeMap::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("peer {entry:?} is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 1)
            .ok_or_else(|| anyhow::anyhow!("peer id {id:?} is not a number ≥ 1"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|error| anyhow::anyhow!("peer {id}'s address {addr:?}: {error}"))?;
        anyhow::ensure!(
            peers.insert(id, addr).is_none(),
            "peer {id} is listed twice"
        );
    }
    anyhow::ensure!(!peers.is_empty(), "--peers lists no node");
    let mut addrs: Vec<&SocketAddr> = peers.values().collect();
    addrs.sort();
    addrs.dedup();
    anyhow::ensure!(
        addrs.len() == peers.len(),
        "two peers share one Raft address"
    );
    Ok(peers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const PEERS: &str = "1=127.0.0.1:9701, 2=127.0.0.1:9702,3=127.0.0.1:9703";

    #[test]
    fn a_listed_node_takes_its_address_from_the_peers() {
        let settings = ClusterSettings::resolve(2, Some(PEERS), None, false, None)
            .unwrap()
            .unwrap();
        assert_eq!(settings.raft_addr, "127.0.0.1:9702".parse().unwrap());
        assert_eq!(settings.peers.len(), 3);
        assert!(
            ClusterSettings::resolve(2, None, None, false, None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        for (id, peers, raft) in [
            (4, PEERS, None),
            (0, PEERS, None),
            (2, PEERS, Some("127.0.0.1:1")),
            (1, "1=127.0.0.1:9701,1=127.0.0.1:9702", None),
            (1, "1=127.0.0.1:9701,2=127.0.0.1:9701", None),
            (1, "1=nowhere", None),
            (1, "x=127.0.0.1:9701", None),
            (1, "", None),
        ] {
            let raft = raft.map(|addr: &str| addr.parse().unwrap());
            assert!(
                ClusterSettings::resolve(id, Some(peers), raft, false, None).is_err(),
                "{id} {peers} {raft:?} was accepted"
            );
        }
        assert!(
            ClusterSettings::resolve(1, None, Some("127.0.0.1:1".parse().unwrap()), false, None)
                .is_err()
        );
    }

    #[test]
    fn a_joining_node_gives_its_own_address() {
        let settings = ClusterSettings::resolve(
            4,
            Some(PEERS),
            Some("127.0.0.1:9704".parse().unwrap()),
            true,
            Some("1=127.0.0.1:19701"),
        )
        .unwrap()
        .unwrap();
        assert!(settings.join);
        assert_eq!(settings.dial[&1], "127.0.0.1:19701".parse().unwrap());
        assert_eq!(settings.raft_addr, "127.0.0.1:9704".parse().unwrap());
    }
}
