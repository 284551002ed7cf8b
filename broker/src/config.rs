//! The broker's typed configuration, filled by the CLI from flags, environment and TOML.

use commerce_storage::FlushPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// Where topic metadata and partition logs live.
    pub data_dir: PathBuf,
    /// The Kafka listener's bind address.
    pub listen_addr: SocketAddr,
    /// The host and port advertised in Metadata (the listen address unless set).
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Create topics that clients ask Metadata about (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partition count for auto-created topics and CreateTopics with -1 (`num.partitions`).
    pub num_partitions: i32,
    /// The largest frame a client may send (`socket.request.max.bytes`, Kafka's 100 MiB).
    pub max_request_bytes: usize,
    /// How many client connections are served at once; further accepts wait.
    pub max_connections: usize,
    pub log_flush: FlushPolicy,
}

impl BrokerConfig {
    pub fn single_node(data_dir: PathBuf, listen_addr: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            data_dir,
            listen_addr,
            advertised_host: listen_addr.ip().to_string(),
            advertised_port: listen_addr.port(),
            auto_create_topics: true,
            num_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            max_connections: 4096,
            log_flush: FlushPolicy::Interval(std::time::Duration::from_millis(1000)),
        }
    }
}
