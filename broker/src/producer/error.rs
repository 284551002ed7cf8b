//! Failures of the idempotent producer and transaction checks, each one Kafka error.

use kafka_protocol::ResponseError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer epoch is older than the current one")]
    InvalidProducerEpoch,
    #[error("producer has been fenced by a newer instance with the same transactional id")]
    ProducerFenced,
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("an idempotent produce request must carry exactly one batch per partition")]
    InvalidRecord,
    #[error("transactional id has no producer id, or another one")]
    InvalidProducerIdMapping,
    #[error("operation not valid in the transaction's state: {0}")]
    InvalidTxnState(&'static str),
    #[error("transaction timeout {0} ms is out of range")]
    InvalidTransactionTimeout(i32),
    #[error("a transactional id is required")]
    InvalidTransactionalId,
    #[error("coordinator not available: {0}")]
    CoordinatorNotAvailable(&'static str),
    #[error("a previous operation on this transaction is still completing")]
    ConcurrentTransactions,
    #[error("this node does not coordinate the transactional id")]
    NotCoordinator,
    #[error("the transactional id's state is still loading on this node")]
    CoordinatorLoadInProgress,
}

impl ProducerError {
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            ProducerError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
            ProducerError::ProducerFenced => ResponseError::ProducerFenced,
            ProducerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            ProducerError::InvalidRecord => ResponseError::InvalidRecord,
            ProducerError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            ProducerError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            ProducerError::InvalidTransactionTimeout(_) => ResponseError::InvalidTransactionTimeout,
            ProducerError::InvalidTransactionalId => ResponseError::InvalidRequest,
            ProducerError::CoordinatorNotAvailable(_) => ResponseError::CoordinatorNotAvailable,
            ProducerError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            ProducerError::NotCoordinator => ResponseError::NotCoordinator,
            ProducerError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        }
    }
}
