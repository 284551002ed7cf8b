//! Node configuration: flags, `COMMERCE_*` environment variables and a TOML file, in that
//! order of precedence, over the embedded defaults. One typed struct comes out
//! (`NodeSettings`); nothing below the CLI reads the environment.

pub use crate::cluster::peers::ClusterSettings;
use anyhow::Context;
use commerce_storage::FlushPolicy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `commerce start` flags. Each is optional so that an unset flag falls through to the
/// environment (clap's `env`), then the config file, then the default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "COMMERCE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where logs, metadata and service data live [default: ./data]
    #[arg(long, env = "COMMERCE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener [default: 127.0.0.1:9092]
    #[arg(long, env = "COMMERCE_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// Host advertised to Kafka clients [default: the Kafka listener's IP, or 127.0.0.1 for 0.0.0.0]
    #[arg(long, env = "COMMERCE_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// HTTP listener [default: 127.0.0.1:8080]
    #[arg(long, env = "COMMERCE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// This node's id [default: 1]
    #[arg(long, env = "COMMERCE_NODE_ID")]
    pub node_id: Option<i32>,
    /// Partitions of auto-created topics (Kafka's num.partitions) [default: 1]
    #[arg(long, env = "COMMERCE_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Create topics on Metadata requests (Kafka's auto.create.topics.enable) [default: true]
    #[arg(long, env = "COMMERCE_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Log fsync policy: every-batch, interval:<ms> or os [default: interval:1000]
    #[arg(long, env = "COMMERCE_LOG_FLUSH")]
    pub log_flush: Option<String>,
    /// Largest Kafka request frame accepted, in bytes [default: 104857600]
    #[arg(long, env = "COMMERCE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Log filter, as RUST_LOG [default: info]
    #[arg(long, env = "COMMERCE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// HTTP requests per minute per client (token subject, else IP) [default: 100]
    #[arg(long, env = "COMMERCE_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Origins allowed by CORS, comma-separated [default: none]
    #[arg(long, env = "COMMERCE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// An HTTP client must send a request's whole header within this time, else the
    /// connection is closed; also how long an idle keep-alive connection stays open [default: 10000]
    #[arg(long, env = "COMMERCE_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// An HTTP request body must arrive whole within this time, else 408 [default: 10000]
    #[arg(long, env = "COMMERCE_HTTP_BODY_TIMEOUT_MS")]
    pub http_body_timeout_ms: Option<u64>,
    /// Open HTTP connections at most, from all clients; more are closed at once [default:
    /// 1024, or half the open-file limit when lower]
    #[arg(long, env = "COMMERCE_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Open HTTP connections at most from one client IP; more are closed at once [default: 256]
    #[arg(long, env = "COMMERCE_HTTP_MAX_CONNECTIONS_PER_IP")]
    pub http_max_connections_per_ip: Option<usize>,
    /// Email of an admin account created at start unless it exists
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of that admin account
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Raft listener of a cluster node [default: this node's address in --peers]
    #[arg(long, env = "COMMERCE_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// The cluster's voters, `id=host:port` (Raft addresses), comma-separated, this node
    /// included; without it the node runs alone
    #[arg(long, env = "COMMERCE_PEERS")]
    pub peers: Option<String>,
    /// Join a running cluster as a new node (added with `commerce cluster add-node`)
    /// instead of forming it
    #[arg(long, env = "COMMERCE_JOIN")]
    pub join: Option<bool>,
    /// Dial some peers at other addresses than their Raft addresses, `id=host:port`,
    /// comma-separated (NAT, or the fault tests' link-cutting proxies)
    #[arg(long, env = "COMMERCE_RAFT_DIAL")]
    pub raft_dial: Option<String>,
    /// How long an order saga step waits for its reply before it fails and compensates [default: 30000]
    #[arg(long, env = "COMMERCE_SAGA_STEP_TIMEOUT_MS")]
    pub saga_step_timeout_ms: Option<u64>,
    /// A Raft group (controller, partition, service) snapshots its state after this many
    /// entries since its last snapshot [default: 10000]
    #[arg(long, env = "COMMERCE_RAFT_SNAPSHOT_EVERY")]
    pub raft_snapshot_every: Option<u64>,
    /// Entries a group keeps in its log behind a snapshot, so that a briefly lagging
    /// replica catches up from the log rather than by a whole snapshot [default: 1000]
    #[arg(long, env = "COMMERCE_RAFT_LOG_KEPT")]
    pub raft_log_kept: Option<u64>,
}

/// The same settings as read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_addr: Option<SocketAddr>,
    advertised_host: Option<String>,
    http_addr: Option<SocketAddr>,
    node_id: Option<i32>,
    num_partitions: Option<i32>,
    auto_create_topics: Option<bool>,
    log_flush: Option<String>,
    max_request_bytes: Option<usize>,
    log_level: Option<String>,
    rate_limit_per_minute: Option<u32>,
    cors_origins: Option<Vec<String>>,
    http_header_timeout_ms: Option<u64>,
    http_body_timeout_ms: Option<u64>,
    http_max_connections: Option<usize>,
    http_max_connections_per_ip: Option<usize>,
    admin_email: Option<String>,
    admin_password: Option<String>,
    raft_addr: Option<SocketAddr>,
    peers: Option<String>,
    join: Option<bool>,
    raft_dial: Option<String>,
    saga_step_timeout_ms: Option<u64>,
    raft_snapshot_every: Option<u64>,
    raft_log_kept: Option<u64>,
}

/// Resolved settings for one node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub data_dir: PathBuf,
    pub kafka_addr: SocketAddr,
    pub advertised_host: Option<String>,
    pub http_addr: SocketAddr,
    pub node_id: i32,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    pub log_flush: FlushPolicy,
    pub max_request_bytes: usize,
    pub log_level: String,
    pub rate_limit_per_minute: u32,
    pub cors_origins: Vec<String>,
    /// How the HTTP listener treats slow and numerous clients.
    pub http_limits: HttpLimits,
    /// (email, password) of the admin to create at start.
    pub admin: Option<(String, String)>,
    /// Set when the node is a member of a cluster.
    pub cluster: Option<ClusterSettings>,
    /// How long an order saga step waits for its reply.
    pub saga_step_timeout: Duration,
    /// When Raft groups snapshot and how much log they keep.
    pub raft: RaftTuning,
}

/// Slow clients and connection counts on the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl HttpLimits {
    fn resolve(args: &NodeArgs, file: &FileConfig) -> anyhow::Result<HttpLimits> {
        let header_timeout_ms = args
            .http_header_timeout_ms
            .or(file.http_header_timeout_ms)
            .unwrap_or(10_000);
        let body_timeout_ms = args
            .http_body_timeout_ms
            .or(file.http_body_timeout_ms)
            .unwrap_or(10_000);
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(header_timeout_ms),
            body_timeout: Duration::from_millis(body_timeout_ms),
            max_connections: args
                .http_max_connections
                .or(file.http_max_connections)
                .unwrap_or_else(default_max_connections),
            max_connections_per_ip: args
                .http_max_connections_per_ip
                .or(file.http_max_connections_per_ip)
                .unwrap_or(256),
        };
        anyhow::ensure!(
            header_timeout_ms >= 1 && body_timeout_ms >= 1,
            "http-header-timeout-ms and http-body-timeout-ms must be at least 1"
        );
        anyhow::ensure!(
            limits.max_connections >= 1 && limits.max_connections_per_ip >= 1,
            "http-max-connections and http-max-connections-per-ip must be at least 1"
        );
        Ok(limits)
    }
}

/// The default cap on open HTTP connections: 1024, or half the process's open-file limit
/// when that is lower, so that HTTP clients alone cannot use up the descriptors the logs,
/// stores and Kafka clients need (the failure this cap exists for: `Too many open files`).
fn default_max_connections() -> usize {
    const DEFAULT: usize = 1024;
    open_file_limit().map_or(DEFAULT, |limit| DEFAULT.min(limit / 2).max(1))
}

/// The soft `Max open files` limit from /proc/self/limits (Linux); `None` where there is none.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When this node's Raft groups snapshot, and how much log they keep behind a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct RaftTuning {
    pub snapshot_every: u64,
    pub log_kept: u64,
}

impl RaftTuning {
    pub fn apply(&self, config: &mut commerce_storage::raft::RaftNodeConfig) {
        config.snapshot_every = self.snapshot_every;
        config.keep_logs_after_snapshot = self.log_kept;
    }
}

impl NodeSettings {
    pub fn resolve(args: NodeArgs) -> anyhow::Result<NodeSettings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let http_limits = HttpLimits::resolve(&args, &file)?;
        let log_flush = args
            .log_flush
            .or(file.log_flush)
            .unwrap_or_else(|| "interval:1000".to_string());
        let num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
        let rate_limit_per_minute = args
            .rate_limit_per_minute
            .or(file.rate_limit_per_minute)
            .unwrap_or(100);
        anyhow::ensure!(
            rate_limit_per_minute >= 1,
            "rate-limit-per-minute must be at least 1"
        );
        let admin = match (
            args.admin_email.or(file.admin_email),
            args.admin_password.or(file.admin_password),
        ) {
            (Some(email), Some(password)) => Some((email, password)),
            (None, None) => None,
            _ => anyhow::bail!("admin-email and admin-password go together"),
        };
        let saga_step_timeout_ms = args
            .saga_step_timeout_ms
            .or(file.saga_step_timeout_ms)
            .unwrap_or(30_000);
        anyhow::ensure!(
            saga_step_timeout_ms >= 1,
            "saga-step-timeout-ms must be at least 1"
        );
        let raft = RaftTuning {
            snapshot_every: args
                .raft_snapshot_every
                .or(file.raft_snapshot_every)
                .unwrap_or(10_000),
            log_kept: args.raft_log_kept.or(file.raft_log_kept).unwrap_or(1_000),
        };
        anyhow::ensure!(
            raft.snapshot_every >= 1,
            "raft-snapshot-every must be at least 1"
        );
        anyhow::ensure!(
            num_partitions >= 1,
            "num-partitions must be at least 1, got {num_partitions}"
        );
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        let cluster = ClusterSettings::resolve(
            node_id,
            args.peers.or(file.peers).as_deref(),
            args.raft_addr.or(file.raft_addr),
            args.join.or(file.join).unwrap_or(false),
            args.raft_dial.or(file.raft_dial).as_deref(),
        )?;
        Ok(NodeSettings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            kafka_addr: args
                .kafka_addr
                .or(file.kafka_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092))),
            advertised_host: args.advertised_host.or(file.advertised_host),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            node_id,
            num_partitions,
            auto_create_topics: args
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(true),
            log_flush: log_flush
                .parse()
                .map_err(|error| anyhow::anyhow!("invalid log-flush {log_flush:?}: {error}"))?,
            max_request_bytes: args
                .max_request_bytes
                .or(file.max_request_bytes)
                .unwrap_or(100 * 1024 * 1024),
            log_level: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_string()),
            rate_limit_per_minute,
            cors_origins: args
                .cors_origins
                .or(file.cors_origins)
                .unwrap_or_default()
                .into_iter()
                .map(|origin| origin.trim().to_string())
                .filter(|origin| !origin.is_empty())
                .collect(),
            http_limits,
            admin,
            cluster,
            saga_step_timeout: Duration::from_millis(saga_step_timeout_ms),
            raft,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node_id = 7\nhttp_addr = \"127.0.0.1:9999\"\nnum_partitions = 3\n",
        )
        .unwrap();
        let args = NodeArgs {
            config: Some(path),
            node_id: Some(2),
            ..NodeArgs::default()
        };
        let settings = NodeSettings::resolve(args).unwrap();
        assert_eq!(settings.node_id, 2);
        assert_eq!(settings.http_addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(settings.num_partitions, 3);
        assert_eq!(settings.kafka_addr, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn the_default_connection_cap_leaves_descriptors_for_the_rest() {
        let cap = default_max_connections();
        assert!((1..=1024).contains(&cap), "{cap}");
        if let Some(limit) = open_file_limit() {
            assert!(cap <= limit / 2 || cap == 1, "{cap} of {limit}");
        }
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "nod_id = 7\n").unwrap();
        let args = NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        };
        assert!(NodeSettings::resolve(args).is_err());
        let args = NodeArgs {
            log_flush: Some("sometimes".into()),
            ..NodeArgs::default()
        };
        assert!(NodeSettings::resolve(args).is_err());
    }
}
