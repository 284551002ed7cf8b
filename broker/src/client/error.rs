//! What can go wrong talking to a cluster, and which of it is worth another try.

use kafka_protocol::error::ResponseError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no bootstrap broker given")]
    NoBootstrap,
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the connection to {addr} failed: {reason}")]
    Connection { addr: String, reason: String },
    #[error("{api} to {addr} got no answer within {timeout:?}")]
    RequestTimeout {
        api: String,
        addr: String,
        timeout: Duration,
    },
    #[error("cannot encode or decode {api} v{version}: {reason}")]
    Codec {
        api: String,
        version: i16,
        reason: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{operation} on {resource}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        operation: &'static str,
        resource: String,
        error: ResponseError,
        message: Option<String>,
    },
    #[error("{topic}-{partition} has no leader in the cluster's metadata")]
    NoLeader { topic: String, partition: i32 },
    #[error("topic {topic} has no partition {partition}")]
    NoSuchPartition { topic: String, partition: i32 },
    #[error("the {api} response does not answer what was asked: {reason}")]
    UnexpectedResponse { api: &'static str, reason: String },
    #[error("{operation} gave up after {after:?}; last error: {last}")]
    GaveUp {
        operation: String,
        after: Duration,
        last: Box<ClientError>,
    },
}

impl ClientError {
    pub(crate) fn broker(
        operation: &'static str,
        resource: impl Into<String>,
        code: i16,
        message: Option<String>,
    ) -> ClientError {
        ClientError::Broker {
            operation,
            resource: resource.into(),
            error: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            message,
        }
    }

    /// The Kafka error the broker answered with, if that is what this is (also through
    /// [`ClientError::GaveUp`]).
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            ClientError::Broker { error, .. } => Some(*error),
            ClientError::GaveUp { last, .. } => last.kafka_error(),
            _ => None,
        }
    }

    /// Worth another try within the operation's deadline: the cluster is moving (a leader or
    /// coordinator changing, a node going down) rather than refusing the request itself.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Connection { .. }
            | ClientError::RequestTimeout { .. }
            | ClientError::NoLeader { .. } => true,
            ClientError::Broker { error, .. } => {
                error.is_retriable()
                    || matches!(
                        error,
                        // Kafka calls these retriable where a client refreshes what it knows
                        // of the cluster first, which the callers here do.
                        ResponseError::NotController | ResponseError::UnknownTopicOrPartition
                    )
            }
            _ => false,
        }
    }

    /// Whether what the client knows of partition leaders is stale after this error.
    pub(crate) fn stale_leader(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Connection { .. }
            | ClientError::RequestTimeout { .. }
            | ClientError::NoLeader { .. } => true,
            ClientError::Broker { error, .. } => matches!(
                error,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotController
            ),
            _ => false,
        }
    }

    /// Whether the group's coordinator must be looked up again after this error.
    pub(crate) fn stale_coordinator(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Connection { .. }
            | ClientError::RequestTimeout { .. } => true,
            ClientError::Broker { error, .. } => matches!(
                error,
                ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
            ),
            _ => false,
        }
    }
}
