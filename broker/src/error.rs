//! The broker's one error type. Each variant maps once, at the protocol edge, to a Kafka
//! error code (`BrokerError::kafka_code`), so handlers never pick codes by hand.

use commerce_storage::LogError;
use kafka_protocol::ResponseError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("invalid replication factor {0}: this node runs without replication")]
    InvalidReplicationFactor(i16),
    /// Cluster mode: more replicas asked for than there are registered nodes.
    #[error("replication factor {wanted} is larger than the {nodes} registered nodes")]
    ReplicationFactorTooLarge { wanted: usize, nodes: usize },
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config {key}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("invalid required acks {0}")]
    InvalidRequiredAcks(i16),
    /// A batch the broker refuses as a whole, whatever its framing (INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    InvalidRecord(&'static str),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("metadata store: {0}")]
    Metadata(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Producer(#[from] crate::producer::ProducerError),
    /// Cluster mode: this node does not lead the partition (or lost its majority); the
    /// client refreshes its metadata and follows the leader.
    #[error("not the leader of {0}")]
    NotLeaderOrFollower(String),
    /// Cluster mode: the write was not committed in time. It may still commit; a retry of
    /// an idempotent producer's batch is deduplicated either way.
    #[error("request timed out: {0}")]
    RequestTimedOut(String),
    /// Cluster mode: the controller refused a metadata change, with this Kafka error code.
    #[error("{message}")]
    Controller { error_code: i16, message: String },
    /// Cluster mode: the controller or a partition group could not be reached.
    #[error("replication: {0}")]
    Replication(String),
    #[error("{0} is not supported in cluster mode yet")]
    NotInClusterMode(&'static str),
}

impl BrokerError {
    /// The Kafka error this failure is reported as.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            BrokerError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
            BrokerError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
            BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            BrokerError::InvalidReplicationFactor(_)
            | BrokerError::ReplicationFactorTooLarge { .. } => {
                ResponseError::InvalidReplicationFactor
            }
            BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            BrokerError::InvalidConfig { .. } => ResponseError::InvalidConfig,
            BrokerError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            BrokerError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
            BrokerError::InvalidRecord(_) => ResponseError::InvalidRecord,
            BrokerError::Log(LogError::CorruptBatch { .. }) => ResponseError::CorruptMessage,
            BrokerError::Log(LogError::UnsupportedMagic { .. }) => {
                ResponseError::UnsupportedForMessageFormat
            }
            BrokerError::Log(LogError::OffsetOutOfRange { .. }) => ResponseError::OffsetOutOfRange,
            BrokerError::Producer(error) => error.kafka_error(),
            BrokerError::NotLeaderOrFollower(_) => ResponseError::NotLeaderOrFollower,
            BrokerError::RequestTimedOut(_) => ResponseError::RequestTimedOut,
            BrokerError::Controller { error_code, .. } => ResponseError::try_from_code(*error_code)
                .unwrap_or(ResponseError::UnknownServerError),
            BrokerError::Replication(_) => ResponseError::NotController,
            BrokerError::NotInClusterMode(_) => ResponseError::InvalidRequest,
            BrokerError::Log(_) | BrokerError::Metadata(_) | BrokerError::Io(_) => {
                ResponseError::KafkaStorageError
            }
        }
    }

    pub fn kafka_code(&self) -> i16 {
        self.kafka_error().code()
    }
}

impl From<redb::Error> for BrokerError {
    fn from(error: redb::Error) -> Self {
        BrokerError::Metadata(error.to_string())
    }
}

macro_rules! redb_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for BrokerError {
            fn from(error: $ty) -> Self {
                BrokerError::Metadata(error.to_string())
            }
        }
    )*};
}
redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

impl From<crate::controller::PlacementError> for BrokerError {
    fn from(error: crate::controller::PlacementError) -> Self {
        use crate::controller::PlacementError;
        match error {
            PlacementError::NotEnoughNodes { wanted, nodes } => {
                BrokerError::ReplicationFactorTooLarge { wanted, nodes }
            }
            PlacementError::ZeroReplicationFactor => BrokerError::InvalidReplicationFactor(0),
        }
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
