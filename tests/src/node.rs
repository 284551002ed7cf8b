//! One `commerce start` process on a temporary data directory.
//!
//! The node keeps its ports and data directory across restarts, so clients bootstrapped
//! before a crash reconnect to the restarted process. Its stdout and stderr go to
//! `node.log` in the temporary directory (appended across restarts, each start marked); the
//! log is printed when a test fails while the node is alive.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::limit;

/// How long a node may take to accept Kafka connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Node {
    dir: TempDir,
    kafka_addr: SocketAddr,
    http_addr: SocketAddr,
    child: Option<Child>,
    starts: u32,
    /// Environment given to every start (settings such as COMMERCE_ADVERTISED_HOST).
    env: Vec<(String, String)>,
    node_id: u64,
    /// Extra `commerce start` flags given to every start (a cluster member's `--peers`).
    args: Vec<String>,
}

impl Node {
    /// Starts a single node on a fresh data directory and waits until it accepts Kafka
    /// connections.
    pub fn start() -> Node {
        Node::start_with_env(&[])
    }

    /// `start` with extra environment variables for the node process (kept for restarts).
    pub fn start_with_env(env: &[(&str, &str)]) -> Node {
        Node::start_member(1, &[], env)
    }

    /// A node with id `node_id` and extra `commerce start` flags (kept for restarts).
    pub fn start_member(node_id: u64, args: &[String], env: &[(&str, &str)]) -> Node {
        let mut node = Node::prepare(node_id, args, env);
        node.spawn_on_free_ports();
        node
    }

    /// A node that is not started yet (see [`Node::launch`]): a cluster starts all its
    /// members before waiting for any, since none is ready alone.
    pub fn prepare(node_id: u64, args: &[String], env: &[(&str, &str)]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("commerce-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        Node {
            dir,
            kafka_addr: local_listen_addr(),
            http_addr: local_listen_addr(),
            child: None,
            starts: 0,
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            node_id,
            args: args.to_vec(),
        }
    }

    /// Starts a prepared node without waiting for its listeners.
    pub fn launch(&mut self) {
        self.spawn_process();
    }

    /// Waits until a launched node accepts Kafka connections.
    pub fn wait_ready(&mut self) {
        self.wait_until_accepting();
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Starts the node again on the same ports without waiting (see [`Node::launch`]).
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "relaunch: stop the node first");
        self.spawn_process();
    }

    /// The process id, to pause it with SIGSTOP.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The first start: ports are checked free and released, so another process can take
    /// one before the node binds it. Then the node exits saying so, and the start
    /// is tried again on fresh ports (restarts keep their ports: clients know them).
    fn spawn_on_free_ports(&mut self) {
        const ATTEMPTS: u32 = 5;
        for _ in 1..ATTEMPTS {
            self.spawn_process();
            if self.wait_for_listeners() {
                return;
            }
            self.kafka_addr = local_listen_addr();
            self.http_addr = local_listen_addr();
        }
        self.spawn();
    }

    /// Waits for the Kafka port; false if the node exited because a port was taken.
    fn wait_for_listeners(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child
                    .try_wait()
                    .expect("cannot wait for the node")
                    .is_some()
            {
                if tail(&self.log_path(), 5).contains("Address already in use") {
                    if let Some(child) = self.child.take() {
                        limit::unregister(child.id());
                    }
                    return false;
                }
                self.wait_until_accepting(); // panics with the log
            }
            if TcpStream::connect_timeout(&self.kafka_addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_until_accepting(); // panics with the log
        true
    }

    /// `host:port` of the Kafka listener, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.kafka_addr.to_string()
    }

    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The node's log so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the node is not running");
        let _ = child.kill();
        let _ = child.wait();
        limit::unregister(child.id());
    }

    /// SIGTERM, then waits for the process to exit and returns how it exited. Panics (after a
    /// SIGKILL) if it is still running after the stop timeout.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("terminate: the node is not running");
        // `kill -TERM` rather than a libc/nix dependency: this crate needs no unsafe code
        // and no extra dependency for the one signal std cannot send.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("cannot run `kill`");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("cannot wait for the node") {
                limit::unregister(child.id());
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                limit::unregister(child.id());
                panic!(
                    "the node did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    tail(&self.log_path(), 200)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the node again on the same data directory and ports.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart: stop the node first (kill or terminate)"
        );
        self.spawn();
    }

    /// Panics (with the log) unless the process is still running.
    pub fn assert_running(&mut self) {
        let child = self
            .child
            .as_mut()
            .expect("the node was stopped by the test");
        if let Some(status) = child.try_wait().expect("cannot wait for the node") {
            self.child = None;
            panic!(
                "the node exited unexpectedly ({status}); log:\n{}",
                tail(&self.log_path(), 200)
            );
        }
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_until_accepting();
    }

    fn spawn_process(&mut self) {
        self.starts += 1;
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("cannot open the node log");
        writeln!(log, "===== test harness: start #{} =====", self.starts)
            .expect("cannot write the node log");
        let stderr: File = log.try_clone().expect("cannot clone the node log handle");
        let bin = crate::commerce_bin();
        let mut command = Command::new(&bin);
        command
            .arg("start")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--kafka-addr")
            .arg(self.kafka_addr.to_string())
            .arg("--http-addr")
            .arg(self.http_addr.to_string())
            .arg("--node-id")
            .arg(self.node_id.to_string())
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        command.envs(self.env.iter().map(|(key, value)| (key, value)));
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot start {}: {error} (build it first: cargo build --release -p commerce)",
                bin.display()
            )
        });
        limit::register(child.id(), log_path);
        self.child = Some(child);
    }

    fn wait_until_accepting(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.assert_running();
            if TcpStream::connect_timeout(&self.kafka_addr, Duration::from_millis(500)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not accept Kafka connections on {} within {START_TIMEOUT:?}; log:\n{}",
                self.kafka_addr,
                tail(&self.log_path(), 200)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n--- node log ({}) ---\n{}\n--- end of node log ---",
                self.log_path().display(),
                tail(&self.log_path(), 300)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            limit::unregister(child.id());
        }
        // `COMMERCE_TEST_LOGS=<dir>` keeps every node's whole log there, to study a run.
        if let Some(dir) = std::env::var_os("COMMERCE_TEST_LOGS") {
            let kept = std::path::Path::new(&dir).join(format!(
                "node-{}-{}.log",
                self.node_id,
                self.kafka_addr.port()
            ));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(self.log_path(), kept);
        }
    }
}

/// A free local address for a node listener (Kafka, HTTP or Raft): see [`local_port_run`].
pub fn local_listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], local_port_run(1)))
}

/// The first of `count` consecutive local ports nobody listens on, for node listeners.
///
/// They come from below Linux's ephemeral range (32768 and up), from a counter unique within
/// the test process, each checked free. A port found by `bind(0)` and released is in the
/// ephemeral range, so before the node binds it an outgoing connection (a node dialing a
/// peer, a client) may be given it as its local port: seen in CI as "cannot listen for
/// HTTP ... Address already in use" on a cluster node, whose start cannot simply be retried
/// on other ports because its Raft address is in every member's `--peers`.
pub fn local_port_run(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Test binaries run one after another; a per-process base keeps a rerun from reusing
    // ports a previous run's nodes may still hold in TIME_WAIT.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let count = u32::from(count.max(1));
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(count, Ordering::Relaxed) % SPAN;
        if offset + count > SPAN {
            continue;
        }
        let first = FIRST + offset;
        let all_free = (first..first + count).all(|port| {
            u16::try_from(port).is_ok_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if all_free && let Ok(first) = u16::try_from(first) {
            return first;
        }
    }
    panic!(
        "no {count} consecutive free local ports in {FIRST}..{}",
        FIRST + SPAN
    );
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| format!("(cannot read {}: {error})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
