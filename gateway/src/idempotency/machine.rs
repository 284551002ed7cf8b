//! The replicated idempotency records: a deterministic state machine over the gateway's own
//! Raft group, so that every node knows which keys are in flight or answered.
//!
//! A key's life, per scope (client + method + path + key):
//!
//! ```text
//!            Begin                  Complete(attempt)
//!   (none) ─────────▶ InFlight ───────────────────▶ Completed ──▶ (none) a day after Begin
//!      ▲                 │  Abandon(attempt),
//!      └─────────────────┘  or its lease ran out (a later Begin takes it over)
//! ```
//!
//! Every time is a command field fixed by the gateway before it submits: a record expires,
//! or an in-flight lease runs out, by the time of the command that looks at it, never by the
//! clock of the replica applying it. `Complete` and `Abandon` name the attempt that began,
//! so a request whose lease ran out and was taken over cannot overwrite its successor.
//!
//! Records are also indexed by the hour they expire in; each `Begin` deletes the records of
//! a few hours that have passed, so the records of keys never used again do not pile up.

use commerce_services::platform::store::Transaction;
use commerce_services::platform::{CommandMeta, Rejection, StateMachine, StoreError, Table};
use serde::{Deserialize, Serialize};

/// How long an answer is replayed, counted from the `Begin` of its request.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// The width of one expiry bucket.
const BUCKET_MS: i64 = 3600 * 1000;
/// Expired buckets one `Begin` may sweep: after a long idle time the sweep catches up over a
/// few commands instead of making one command slow.
const SWEEP_BUCKETS_PER_BEGIN: i64 = 48;

/// scope -> its record.
const RECORDS: Table<Record> = Table::new("record");
/// `<expiry bucket, zero-padded>/<scope>` -> scope.
const EXPIRY: Table<String> = Table::new("expiry");
/// The single entry "next" -> the first expiry bucket not swept yet.
const SWEPT: Table<i64> = Table::new("swept");

/// A command to the idempotency records. Every field is fixed before it is submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A request with a key arrives: start it unless the key is in flight or answered.
    Begin {
        scope: String,
        /// A hash of the request body: the same key with another body is refused.
        fingerprint: u64,
        /// This request's own id, which `Complete` and `Abandon` name.
        attempt: String,
        at_ms: i64,
        /// How long the key stays in flight if neither `Complete` nor `Abandon` come (the
        /// node running the request crashed): after that a retry runs.
        lease_ms: i64,
    },
    /// The request `attempt` got `answer`: replay it to retries.
    Complete {
        scope: String,
        attempt: String,
        answer: StoredAnswer,
    },
    /// The request `attempt` failed without an answer worth keeping: a retry runs again.
    Abandon { scope: String, attempt: String },
}

/// An answer kept for replay: what the client sees again, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: StoredBody,
}

/// The API answers JSON, which is kept as text (a byte array would take four times the room
/// in the Raft log); anything else as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredBody {
    Text(String),
    Bytes(Vec<u8>),
}

impl StoredBody {
    pub fn new(bytes: Vec<u8>) -> StoredBody {
        match String::from_utf8(bytes) {
            Ok(text) => StoredBody::Text(text),
            Err(error) => StoredBody::Bytes(error.into_bytes()),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            StoredBody::Text(text) => text.into_bytes(),
            StoredBody::Bytes(bytes) => bytes,
        }
    }
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `Begin`: the key is this request's; run it.
    Started,
    /// `Begin`: a request with this key and body is running.
    InFlight,
    /// `Begin`: the key was answered; replay this.
    Completed(StoredAnswer),
    /// `Begin`: the key was used with another body.
    Mismatch,
    /// `Complete` / `Abandon`: recorded.
    Recorded,
    /// `Complete` / `Abandon`: the attempt no longer holds the key (its lease ran out and a
    /// retry took it over, or the record expired); nothing changed.
    Superseded,
}

/// A key's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Record {
    InFlight {
        fingerprint: u64,
        attempt: String,
        at_ms: i64,
        until_ms: i64,
    },
    Completed {
        fingerprint: u64,
        answer: StoredAnswer,
        at_ms: i64,
    },
}

impl Record {
    fn begun_at(&self) -> i64 {
        match self {
            Record::InFlight { at_ms, .. } | Record::Completed { at_ms, .. } => *at_ms,
        }
    }

    /// Whether the record still holds its key at `now_ms`.
    fn is_live(&self, now_ms: i64) -> bool {
        let expired = now_ms.saturating_sub(self.begun_at()) >= RETENTION_MS;
        match self {
            Record::InFlight { until_ms, .. } => !expired && now_ms < *until_ms,
            Record::Completed { .. } => !expired,
        }
    }
}

/// The state machine of the gateway's idempotency group.
#[derive(Debug, Default)]
pub struct IdempotencyMachine;

impl StateMachine for IdempotencyMachine {
    type Command = Command;
    type Output = Outcome;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        _meta: &CommandMeta,
    ) -> Result<Result<Outcome, Rejection>, StoreError> {
        let outcome = match command {
            Command::Begin {
                scope,
                fingerprint,
                attempt,
                at_ms,
                lease_ms,
            } => {
                sweep(tx, *at_ms)?;
                begin(tx, scope, *fingerprint, attempt, *at_ms, *lease_ms)?
            }
            Command::Complete {
                scope,
                attempt,
                answer,
            } => settle(tx, scope, attempt, Some(answer))?,
            Command::Abandon { scope, attempt } => settle(tx, scope, attempt, None)?,
        };
        Ok(Ok(outcome))
    }
}

fn begin(
    tx: &mut dyn Transaction,
    scope: &str,
    fingerprint: u64,
    attempt: &str,
    at_ms: i64,
    lease_ms: i64,
) -> Result<Outcome, StoreError> {
    match RECORDS.get(tx, scope)? {
        Some(record) if record.is_live(at_ms) => {
            return Ok(match record {
                // Another body is a client bug whatever state the first request is in.
                Record::InFlight {
                    fingerprint: first, ..
                }
                | Record::Completed {
                    fingerprint: first, ..
                } if first != fingerprint => Outcome::Mismatch,
                Record::InFlight { .. } => Outcome::InFlight,
                Record::Completed { answer, .. } => Outcome::Completed(answer),
            });
        }
        _ => {}
    }
    let record = Record::InFlight {
        fingerprint,
        attempt: attempt.to_string(),
        at_ms,
        until_ms: at_ms.saturating_add(lease_ms.max(0)),
    };
    RECORDS.put(tx, scope, &record)?;
    let bucket = bucket(at_ms.saturating_add(RETENTION_MS));
    EXPIRY.put(tx, &format!("{bucket:020}/{scope}"), &scope.to_string())?;
    Ok(Outcome::Started)
}

/// `Complete` (with an answer) or `Abandon` (without) of `attempt`.
fn settle(
    tx: &mut dyn Transaction,
    scope: &str,
    attempt: &str,
    answer: Option<&StoredAnswer>,
) -> Result<Outcome, StoreError> {
    let Some(Record::InFlight {
        fingerprint,
        attempt: holder,
        at_ms,
        ..
    }) = RECORDS.get(tx, scope)?
    else {
        return Ok(Outcome::Superseded);
    };
    if holder != attempt {
        return Ok(Outcome::Superseded);
    }
    match answer {
        // Kept even if the lease ran out meanwhile: nobody took the key over, and the answer
        // is what a retry must see.
        Some(answer) => RECORDS.put(
            tx,
            scope,
            &Record::Completed {
                fingerprint,
                answer: answer.clone(),
                at_ms,
            },
        )?,
        None => RECORDS.delete(tx, scope),
    }
    Ok(Outcome::Recorded)
}

/// Deletes the records of the expiry buckets that ended before `now_ms` (a few at a time).
fn sweep(tx: &mut dyn Transaction, now_ms: i64) -> Result<(), StoreError> {
    let current = bucket(now_ms);
    // Nothing was indexed before the first Begin, whose records expire a day later.
    let mut next = SWEPT.get(tx, "next")?.unwrap_or(current);
    let last = current.min(next.saturating_add(SWEEP_BUCKETS_PER_BEGIN));
    while next < last {
        let prefix = format!("{next:020}/");
        for scope in EXPIRY.scan_prefix(tx, &prefix)? {
            // The key may have been used again since: only a record past its day goes.
            if let Some(record) = RECORDS.get(tx, &scope)?
                && now_ms.saturating_sub(record.begun_at()) >= RETENTION_MS
            {
                RECORDS.delete(tx, &scope);
            }
            EXPIRY.delete(tx, &format!("{prefix}{scope}"));
        }
        next += 1;
    }
    SWEPT.put(tx, "next", &next)?;
    Ok(())
}

/// The expiry bucket of a time (whole hours since the epoch; negative times are clamped).
fn bucket(at_ms: i64) -> i64 {
    at_ms.max(0) / BUCKET_MS
}
