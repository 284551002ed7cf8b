//! The platform's errors: a store that failed (local, stops the service) versus a command
//! that was rejected (deterministic, the same on every replica, answered to the caller).

use serde::{Deserialize, Serialize};

/// A local storage failure. Under replication this must stop the node, never be treated as
/// the command's answer, or replicas would diverge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("service store failed: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("corrupt record in the service store: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the service store is unusable after an earlier failure")]
    Poisoned,
    #[error("the service store is installing a snapshot")]
    Installing,
    #[error("the store task failed: {0}")]
    Task(String),
    /// The service's command log cannot take or answer the command now (no leader with a
    /// majority, a forward that failed): nothing local is wrong, a retry may succeed.
    #[error("the service's command log is unavailable: {0}")]
    Unavailable(String),
}

/// Why a command (or a request, before it became one) was refused. It carries what the HTTP
/// edge needs for `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub kind: RejectionKind,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectionKind {
    Invalid,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    /// Well-formed but refused as a whole (422), e.g. an `Idempotency-Key` reused with
    /// another request.
    Unprocessable,
}

impl Rejection {
    fn new(kind: RejectionKind, code: &str, message: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            code: code.to_string(),
            message: message.into(),
            field: None,
        }
    }

    /// Bad input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Rejection {
        Rejection {
            field: Some(field.to_string()),
            ..Rejection::new(RejectionKind::Invalid, "validation_failed", message)
        }
    }

    pub fn unauthenticated(code: &str, message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionKind::Unauthenticated, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Rejection {
        Rejection::new(RejectionKind::Forbidden, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Rejection {
        Rejection::new(
            RejectionKind::NotFound,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &str, field: Option<&str>, message: impl Into<String>) -> Rejection {
        Rejection {
            field: field.map(str::to_string),
            ..Rejection::new(RejectionKind::Conflict, code, message)
        }
    }
}
