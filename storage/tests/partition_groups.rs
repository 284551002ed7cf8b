//! A partition group over real loopback TCP: three `RaftNode`s whose Raft log IS the
//! partition's Kafka log. Checks that every replica holds byte-identical batches at
//! identical offsets with the term as partitionLeaderEpoch, and that the offsets count
//! records only (Raft's blank and membership entries take none), through a leader loss,
//! the old leader's restart, and a replica whose data directory was wiped (snapshot + log
//! reset).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_storage::raft::{
    GroupId, GroupStart, PartitionRaftLog, RaftGroupError, RaftNode, RaftNodeConfig,
    SnapshotSource, StateMachine,
};
use commerce_storage::{FlushPolicy, LogConfig, ReadOptions};
use tokio::net::TcpListener;

const TEST_LIMIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(20);
const GROUP: GroupId = GroupId(7);

/// What a partition's state machine keeps here: how many batches and records it applied.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counts {
    batches: u64,
    records: u64,
}

struct CountingMachine {
    counts: Arc<Mutex<Counts>>,
}

impl StateMachine for CountingMachine {
    /// The command is the batch as stored: answers its assigned base offset.
    fn apply(&mut self, _index: u64, batch: &[u8]) -> Vec<u8> {
        let header = Header::parse(batch);
        let mut counts = self.counts.lock().unwrap();
        counts.batches += 1;
        counts.records += header.last_offset_delta as u64 + 1;
        header.base_offset.to_be_bytes().to_vec()
    }

    fn snapshot_to(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(serde_json::to_writer(out, &*self.counts.lock().unwrap())?)
    }

    fn restore_from(
        &mut self,
        snapshot: &mut dyn SnapshotSource,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        *self.counts.lock().unwrap() = serde_json::from_reader(snapshot)?;
        Ok(())
    }
}

/// The v2 batch header fields the test looks at.
#[derive(Debug, Clone, Copy)]
struct Header {
    base_offset: i64,
    size: usize,
    leader_epoch: i32,
    control: bool,
    last_offset_delta: i32,
}

impl Header {
    fn parse(b: &[u8]) -> Header {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        let i32_at = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        Header {
            base_offset: i64_at(0),
            size: 12 + i32_at(8) as usize,
            leader_epoch: i32_at(12),
            control: i16::from_be_bytes([b[21], b[22]]) & 0x20 != 0,
            last_offset_delta: i32_at(23),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A producer's v2 batch of `count` records with values `"<n>:<i>"`: header, records,
/// CRC-32C over attributes..end. Base offset 0 and epoch -1, as a producer sends it.
fn record_batch(n: usize, count: usize) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..count {
        let value = format!("{n}:{i}").into_bytes();
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, 0); // timestampDelta
        put_varint(&mut body, i as i64); // offsetDelta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value.len() as i64);
        body.extend(&value);
        put_varint(&mut body, 0); // headers
        put_varint(&mut records, body.len() as i64);
        records.extend(body);
    }
    let timestamp = 1_700_000_000_000i64 + n as i64;
    let mut b = Vec::new();
    b.extend(0i64.to_be_bytes());
    b.extend(((49 + records.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(0i16.to_be_bytes());
    b.extend((count as i32 - 1).to_be_bytes());
    b.extend(timestamp.to_be_bytes());
    b.extend(timestamp.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend((count as i32).to_be_bytes());
    b.extend(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Every batch in a node's partition log: (header, bytes).
fn batches(log: &PartitionRaftLog) -> Vec<(Header, Vec<u8>)> {
    let log = log.log();
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let read = log
            .read(
                offset,
                ReadOptions {
                    max_bytes: 1 << 20,
                    min_one_batch: true,
                    upper_bound: Some(end),
                },
            )
            .unwrap();
        let mut at = 0;
        while at < read.bytes.len() {
            let header = Header::parse(&read.bytes[at..]);
            out.push((header, read.bytes[at..at + header.size].to_vec()));
            offset = header.base_offset + i64::from(header.last_offset_delta) + 1;
            at += header.size;
        }
    }
    out
}

struct TestNode {
    node: Option<RaftNode>,
    addr: SocketAddr,
    config: RaftNodeConfig,
    log: Option<Arc<PartitionRaftLog>>,
    counts: Arc<Mutex<Counts>>,
}

struct Cluster {
    nodes: Vec<TestNode>,
    members: BTreeMap<u64, String>,
    _dir: tempfile::TempDir,
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        segment_ms: None,
        retention_bytes: None,
        retention_ms: None,
        index_interval_bytes: 1024,
        flush: FlushPolicy::Os,
    }
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let members: BTreeMap<u64, String> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            members,
            _dir: dir,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut config = RaftNodeConfig::new(
                i as u64 + 1,
                cluster._dir.path().join(format!("node-{}", i + 1)),
            );
            config.heartbeat_interval_ms = 50;
            config.election_timeout_min_ms = 300;
            config.election_timeout_max_ms = 600;
            // Frequent snapshots and a short tail (which a partition group ignores: only
            // retention purges its log), so a wiped replica comes back through a snapshot
            // and a log reset once the leader has purged.
            config.snapshot_every = 100;
            config.keep_logs_after_snapshot = 20;
            cluster.nodes.push(TestNode {
                node: None,
                addr: listener.local_addr().unwrap(),
                config,
                log: None,
                counts: Arc::default(),
            });
            cluster
                .run_node(i, listener, GroupStart::Bootstrap(cluster.members.clone()))
                .await;
        }
        cluster
    }

    async fn run_node(&mut self, i: usize, listener: TcpListener, start: GroupStart) {
        let test_node = &mut self.nodes[i];
        let node = RaftNode::start(test_node.config.clone(), listener)
            .await
            .unwrap();
        test_node.counts = Arc::default();
        let log = node
            .open_partition_group(
                GROUP,
                start,
                Box::new(CountingMachine {
                    counts: test_node.counts.clone(),
                }),
                log_config(),
            )
            .await
            .unwrap();
        test_node.log = Some(log);
        test_node.node = Some(node);
    }

    fn node(&self, i: usize) -> &RaftNode {
        self.nodes[i].node.as_ref().unwrap()
    }

    fn log(&self, i: usize) -> &PartitionRaftLog {
        self.nodes[i].log.as_ref().unwrap()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect()
    }

    async fn leader(&self) -> usize {
        loop {
            let running = self.running();
            let seen: Vec<Option<u64>> = running
                .iter()
                .filter_map(|&i| self.node(i).leader(GROUP).ok())
                .collect();
            if let Some(Some(id)) = seen.first()
                && seen.iter().all(|s| *s == Some(*id))
            {
                let index = (*id - 1) as usize;
                if running.contains(&index)
                    && self.node(index).metrics(GROUP).unwrap().state.is_leader()
                {
                    return index;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Proposes batch `n` through the current leader; returns its assigned base offset.
    async fn produce(&self, n: usize) -> i64 {
        let batch = record_batch(n, 1 + n % 4);
        loop {
            let leader = self.leader().await;
            match self.node(leader).propose(GROUP, batch.clone()).await {
                Ok(answer) => return i64::from_be_bytes(answer.try_into().unwrap()),
                Err(RaftGroupError::NotLeader { .. }) => tokio::time::sleep(POLL).await,
                Err(e) => panic!("proposal failed: {e}"),
            }
        }
    }

    async fn produce_many(&self, range: std::ops::Range<usize>) {
        let mut last = -1;
        for n in range {
            let offset = self.produce(n).await;
            assert!(offset > last, "offsets increase: {offset} after {last}");
            last = offset;
        }
    }

    /// Waits until node `i` applied `batches` normal batches and its log ends where the
    /// leader's does.
    async fn await_caught_up(&self, i: usize, batches: u64) {
        let started = std::time::Instant::now();
        let mut reported = 0;
        loop {
            let waited = started.elapsed().as_secs();
            if waited >= 10 && waited / 10 > reported {
                reported = waited / 10;
                self.report(&format!("node {} still catching up to {batches}", i + 1));
            }
            let leader = self.leader().await;
            let applied = self.nodes[i].counts.lock().unwrap().batches;
            if applied >= batches
                && self.log(i).log().log_end_offset() == self.log(leader).log().log_end_offset()
                && self.log(i).high_watermark() == self.log(leader).high_watermark()
            {
                assert_eq!(applied, batches, "node {} applied too many", i + 1);
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every running node holds byte-identical batches at identical offsets over the range
    /// all of them still have, and the same log end, which is the number of records
    /// applied: offsets are dense, Raft's own entries took none. Returns the leader's
    /// batches.
    fn assert_identical_logs(&self) -> Vec<(Header, Vec<u8>)> {
        for i in self.running() {
            let records = self.nodes[i].counts.lock().unwrap().records;
            assert_eq!(
                self.log(i).log().log_end_offset(),
                records as i64,
                "node {}: the log end is the count of records",
                i + 1
            );
        }
        let running = self.running();
        let start = running
            .iter()
            .map(|&i| self.log(i).log().log_start_offset())
            .max()
            .unwrap();
        let all: Vec<Vec<(Header, Vec<u8>)>> = running
            .iter()
            .map(|&i| {
                batches(self.log(i))
                    .into_iter()
                    .filter(|(h, _)| h.base_offset >= start)
                    .collect()
            })
            .collect();
        for (k, node_batches) in all.iter().enumerate().skip(1) {
            assert_eq!(node_batches.len(), all[0].len(), "node {}", running[k] + 1);
            for (a, b) in node_batches.iter().zip(&all[0]) {
                assert_eq!(a.0.base_offset, b.0.base_offset);
                assert!(a.1 == b.1, "batch at {} differs", a.0.base_offset);
            }
        }
        let ends: Vec<i64> = running
            .iter()
            .map(|&i| self.log(i).log().log_end_offset())
            .collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "log ends {ends:?}");
        batches(self.log(self.leader_now()))
    }

    /// Prints every running node's view, for a test that is taking too long.
    fn report(&self, what: &str) {
        eprintln!("{what}:");
        for i in self.running() {
            let m = self.node(i).metrics(GROUP).unwrap();
            let log = self.log(i);
            eprintln!(
                "  node {}: {:?} term {} leader {:?} last_log {:?} applied {:?} purged {:?} snapshot {:?} log [{}, {}) hw {} batches {} indexes {:?}",
                i + 1,
                m.state,
                m.current_term,
                m.current_leader,
                m.last_log_index,
                m.last_applied.map(|id| id.index),
                m.purged.map(|id| id.index),
                m.snapshot.map(|id| id.index),
                log.log().log_start_offset(),
                log.log().log_end_offset(),
                log.high_watermark(),
                self.nodes[i].counts.lock().unwrap().batches,
                log.index_range(),
            );
        }
    }

    fn leader_now(&self) -> usize {
        let i = self.running()[0];
        (self.node(i).leader(GROUP).unwrap().unwrap() - 1) as usize
    }

    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].node.take().unwrap();
        node.shutdown().await;
        self.nodes[i].log = None;
    }

    async fn restart(&mut self, i: usize, start: GroupStart) {
        let listener = loop {
            match TcpListener::bind(self.nodes[i].addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(POLL).await,
            }
        };
        self.run_node(i, listener, start).await;
    }
}

/// Every batch carries the term of the leader that wrote it, so epochs never decrease
/// along the log; and every batch is a record batch: Raft's blank entries (one per term)
/// and membership entries are not in the Kafka log. Offsets follow each other with no gap.
fn assert_epochs_follow_leader_changes(batches: &[(Header, Vec<u8>)]) {
    for pair in batches.windows(2) {
        let (before, after) = (&pair[0].0, &pair[1].0);
        assert!(
            after.leader_epoch >= before.leader_epoch,
            "batch at {} has epoch {} after epoch {}",
            after.base_offset,
            after.leader_epoch,
            before.leader_epoch
        );
        assert_eq!(
            after.base_offset,
            before.base_offset + i64::from(before.last_offset_delta) + 1,
            "a gap before offset {}",
            after.base_offset
        );
    }
    assert!(
        batches.iter().all(|(header, _)| !header.control),
        "a control batch in the log: {:?}",
        batches.iter().find(|(header, _)| header.control)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_hold_identical_batches_with_the_term_as_leader_epoch() {
    tokio::time::timeout(TEST_LIMIT, async {
        let mut cluster = Cluster::start().await;

        // 500 batches of 1 to 4 records.
        cluster.produce_many(0..500).await;
        for i in 0..3 {
            cluster.await_caught_up(i, 500).await;
        }
        let first = cluster.assert_identical_logs();
        assert_epochs_follow_leader_changes(&first);
        let normal: Vec<&Header> = first.iter().map(|b| &b.0).filter(|h| !h.control).collect();
        let old_term = cluster
            .node(cluster.leader().await)
            .metrics(GROUP)
            .unwrap()
            .current_term;
        assert!(
            normal
                .iter()
                .all(|h| i64::from(h.leader_epoch) <= old_term as i64)
        );
        assert_eq!(
            normal.last().unwrap().leader_epoch as u64,
            old_term,
            "the last batch carries the leader's term"
        );
        // Offsets count records: the log of a fresh group starts at 0 and ends at the count
        // of records proposed, though the group's membership and first leader's blank
        // entries came before them.
        let records: u64 = (0..500).map(|n| 1 + n % 4).sum::<usize>() as u64;
        assert_eq!(first[0].0.base_offset, 0);
        assert_eq!(cluster.log(0).log().log_end_offset() as u64, records);
        assert_eq!(cluster.nodes[0].counts.lock().unwrap().records, records);

        // The leader goes; the survivors elect one in a new term, whose batches carry it.
        let old_leader = cluster.leader().await;
        let end_before = cluster.log(old_leader).log().log_end_offset();
        cluster.stop(old_leader).await;
        cluster.produce_many(500..600).await;
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, old_leader);
        let new_term = cluster
            .node(new_leader)
            .metrics(GROUP)
            .unwrap()
            .current_term;
        assert!(new_term > old_term);
        for i in cluster.running() {
            cluster.await_caught_up(i, 600).await;
        }
        let second = cluster.assert_identical_logs();
        assert_epochs_follow_leader_changes(&second);
        let new_batches: Vec<&Header> = second
            .iter()
            .map(|b| &b.0)
            .filter(|h| h.base_offset >= end_before && !h.control)
            .collect();
        // (The new leader may already have purged some of them behind a snapshot; the
        // applied counts above say all 100 arrived.)
        assert!(!new_batches.is_empty());
        assert!(new_batches.iter().all(|h| h.leader_epoch as u64 > old_term));
        assert_eq!(new_batches.last().unwrap().leader_epoch as u64, new_term);
        assert_eq!(
            new_batches[0].base_offset, end_before,
            "the new leader's first batch follows the old leader's last record"
        );

        // The old leader comes back from its directory and catches up.
        cluster
            .restart(old_leader, GroupStart::Bootstrap(cluster.members.clone()))
            .await;
        cluster.await_caught_up(old_leader, 600).await;
        cluster.produce_many(600..650).await;
        for i in 0..3 {
            cluster.await_caught_up(i, 650).await;
        }
        assert_epochs_follow_leader_changes(&cluster.assert_identical_logs());

        // The Raft log is the Kafka log: snapshots (one per 100 entries here) never purge
        // it; only retention does, through `purge_through`.
        let leader = cluster.leader().await;
        for i in 0..3 {
            assert_eq!(
                cluster.log(i).log().log_start_offset(),
                0,
                "node {} purged its log behind a snapshot",
                i + 1
            );
        }
        let middle = cluster.log(leader).log().log_end_offset() / 2;
        let through = cluster.log(leader).last_index_below(middle).unwrap();
        assert!(cluster.log(leader).offset_after(through).unwrap() <= middle);
        let started = std::time::Instant::now();
        while cluster.log(leader).log().log_start_offset() == 0 {
            cluster
                .node(leader)
                .purge_through(GROUP, through)
                .await
                .unwrap();
            if started.elapsed() > Duration::from_secs(10) {
                cluster.report("the leader has not purged yet");
            }
            tokio::time::sleep(POLL * 5).await;
        }
        let start = cluster.log(leader).log().log_start_offset();
        assert!(
            start > 0 && start <= middle,
            "purged to {start}, asked below {middle}"
        );

        // A follower loses its disk. The leader has purged the entries it would need, so
        // the follower comes back through a snapshot: its log restarts empty at the
        // leader's offset for the snapshot's next entry, and the batches after it are
        // replicated.
        let wiped = (0..3).find(|&i| i != leader).unwrap();
        let dir = cluster.nodes[wiped].config.data_dir.clone();
        cluster.stop(wiped).await;
        std::fs::remove_dir_all(&dir).unwrap();
        cluster.restart(wiped, GroupStart::Join).await;
        cluster.produce_many(650..700).await;
        for i in 0..3 {
            cluster.await_caught_up(i, 700).await;
        }
        assert!(
            cluster.log(wiped).log().log_start_offset() > 0,
            "the wiped replica restarted its log at the snapshot's offset"
        );
        let last = cluster.assert_identical_logs();
        assert_epochs_follow_leader_changes(&last);
        let counts = |i: usize| {
            let c = cluster.nodes[i].counts.lock().unwrap();
            (c.batches, c.records)
        };
        assert_eq!(
            counts(wiped),
            counts(leader),
            "state restored from the snapshot"
        );

        for i in cluster.running() {
            cluster.stop(i).await;
        }
    })
    .await
    .expect("test exceeded its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_that_is_not_one_batch_is_refused_and_writes_nothing() {
    tokio::time::timeout(TEST_LIMIT, async {
        let cluster = Cluster::start().await;
        cluster.produce_many(0..3).await;
        let leader = cluster.leader().await;
        let end = cluster.log(leader).log().log_end_offset();
        let mut two = record_batch(1, 1);
        two.extend(record_batch(2, 1));
        for bad in [b"garbage".to_vec(), two] {
            let refused = cluster.node(leader).propose(GROUP, bad).await;
            assert!(
                matches!(refused, Err(RaftGroupError::BadCommand { .. })),
                "{refused:?}"
            );
        }
        assert_eq!(cluster.log(leader).log().log_end_offset(), end);
        cluster.produce_many(3..5).await;
        for i in 0..3 {
            cluster.await_caught_up(i, 5).await;
        }
    })
    .await
    .expect("test exceeded its time limit");
}
