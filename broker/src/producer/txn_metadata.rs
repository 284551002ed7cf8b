//! What the transaction coordinator keeps per transactional id, as stored (JSON in the
//! producer store) and held in memory.

use super::sink::TxnOffset;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnState {
    /// No transaction open (new, or just fenced).
    Empty,
    Ongoing,
    /// Decided, markers being written.
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// What is kept per transactional id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// When the open transaction started (ms since the epoch).
    pub started_ms: i64,
    pub partitions: BTreeSet<(String, i32)>,
    /// Offsets to commit per consumer group when the transaction commits.
    pub offsets: BTreeMap<String, Vec<TxnOffset>>,
}

impl TxnMetadata {
    /// Decided but not all markers written yet.
    pub fn is_completing(&self) -> bool {
        matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}
