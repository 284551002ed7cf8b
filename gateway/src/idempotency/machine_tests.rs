//! The idempotency records' rules, applied to an in-memory transaction as every replica
//! applies them: each test states one rule of a key's life.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::machine::{
    Command, IdempotencyMachine, Outcome, RETENTION_MS, StoredAnswer, StoredBody,
};
use commerce_services::platform::store::{KeyValue, ReadTx, Transaction};
use commerce_services::platform::{CommandMeta, EventEnvelope, StateMachine, StoreError};
use std::collections::BTreeMap;

const LEASE_MS: i64 = 120_000;
const T0: i64 = 1_800_000_000_000;

/// The replicated state, as a map: `apply`'s writes land in it directly (a command that
/// returns an error is not tested here).
#[derive(Default)]
struct Records {
    state: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ReadTx for Records {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.get(key).cloned())
    }

    fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .state
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

impl Transaction for Records {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.state.insert(key, value);
    }

    fn delete_raw(&mut self, key: Vec<u8>) {
        self.state.remove(&key);
    }

    fn emit(&mut self, _topic: &str, _event: EventEnvelope) {
        panic!("the idempotency records emit no events");
    }
}

impl Records {
    fn apply(&mut self, command: Command) -> Outcome {
        let meta = CommandMeta {
            command_id: "command".to_string(),
            // Deliberately far from the commands' own times: apply must not use it.
            at_ms: 0,
            correlation_id: "test".to_string(),
            causation_id: None,
            traceparent: None,
            consumed_event: None,
        };
        IdempotencyMachine
            .apply(self, &command, &meta)
            .unwrap()
            .unwrap()
    }

    fn begin(&mut self, scope: &str, fingerprint: u64, attempt: &str, at_ms: i64) -> Outcome {
        self.apply(Command::Begin {
            scope: scope.to_string(),
            fingerprint,
            attempt: attempt.to_string(),
            at_ms,
            lease_ms: LEASE_MS,
        })
    }

    fn complete(&mut self, scope: &str, attempt: &str, answer: &StoredAnswer) -> Outcome {
        self.apply(Command::Complete {
            scope: scope.to_string(),
            attempt: attempt.to_string(),
            answer: answer.clone(),
        })
    }

    fn abandon(&mut self, scope: &str, attempt: &str) -> Outcome {
        self.apply(Command::Abandon {
            scope: scope.to_string(),
            attempt: attempt.to_string(),
        })
    }
}

fn created() -> StoredAnswer {
    StoredAnswer {
        status: 201,
        content_type: Some("application/json".to_string()),
        body: StoredBody::new(br#"{"id":"p-1"}"#.to_vec()),
    }
}

const KEY: &str = "user:u-1 POST /api/catalog/products key-1";

#[test]
fn the_first_begin_starts_the_request() {
    let mut records = Records::default();
    assert_eq!(records.begin(KEY, 7, "a", T0), Outcome::Started);
}

#[test]
fn a_second_begin_while_the_first_runs_is_in_flight() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    assert_eq!(records.begin(KEY, 7, "b", T0 + 1_000), Outcome::InFlight);
}

#[test]
fn a_begin_after_complete_replays_the_answer() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    assert_eq!(records.complete(KEY, "a", &created()), Outcome::Recorded);
    assert_eq!(
        records.begin(KEY, 7, "b", T0 + 5_000),
        Outcome::Completed(created())
    );
    // Long after the in-flight lease: an answer lasts a day, not a lease.
    assert_eq!(
        records.begin(KEY, 7, "c", T0 + RETENTION_MS - 1),
        Outcome::Completed(created())
    );
}

#[test]
fn another_body_with_the_same_key_is_a_mismatch_in_flight_or_answered() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    assert_eq!(records.begin(KEY, 8, "b", T0 + 1), Outcome::Mismatch);
    records.complete(KEY, "a", &created());
    assert_eq!(records.begin(KEY, 8, "c", T0 + 2), Outcome::Mismatch);
    // The mismatch changed nothing: the first body still replays.
    assert_eq!(
        records.begin(KEY, 7, "d", T0 + 3),
        Outcome::Completed(created())
    );
}

#[test]
fn the_same_key_on_another_route_or_from_another_client_is_another_key() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    assert_eq!(
        records.begin("user:u-2 POST /api/catalog/products key-1", 7, "b", T0),
        Outcome::Started
    );
    assert_eq!(
        records.begin("user:u-1 POST /api/orders key-1", 8, "c", T0),
        Outcome::Started
    );
}

#[test]
fn an_answer_expires_a_day_after_its_begin_by_the_commands_time() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    records.complete(KEY, "a", &created());
    // A day later, even another body starts afresh: the key is free again.
    assert_eq!(
        records.begin(KEY, 8, "b", T0 + RETENTION_MS),
        Outcome::Started
    );
    assert_eq!(
        records.begin(KEY, 8, "c", T0 + RETENTION_MS + 1),
        Outcome::InFlight
    );
}

#[test]
fn an_abandoned_key_runs_again() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    assert_eq!(records.abandon(KEY, "a"), Outcome::Recorded);
    assert_eq!(records.begin(KEY, 7, "b", T0 + 1), Outcome::Started);
}

#[test]
fn a_key_left_in_flight_is_taken_over_after_its_lease() {
    let mut records = Records::default();
    records.begin(KEY, 7, "crashed", T0);
    assert_eq!(
        records.begin(KEY, 7, "b", T0 + LEASE_MS - 1),
        Outcome::InFlight
    );
    assert_eq!(records.begin(KEY, 7, "c", T0 + LEASE_MS), Outcome::Started);
    // The first attempt, if it was only slow, cannot overwrite its successor.
    assert_eq!(
        records.complete(KEY, "crashed", &created()),
        Outcome::Superseded
    );
    assert_eq!(records.abandon(KEY, "crashed"), Outcome::Superseded);
    assert_eq!(
        records.begin(KEY, 7, "d", T0 + LEASE_MS + 1),
        Outcome::InFlight
    );
    assert_eq!(records.complete(KEY, "c", &created()), Outcome::Recorded);
    assert_eq!(
        records.begin(KEY, 7, "e", T0 + LEASE_MS + 2),
        Outcome::Completed(created())
    );
}

#[test]
fn completing_an_unknown_key_changes_nothing() {
    let mut records = Records::default();
    assert_eq!(records.complete(KEY, "a", &created()), Outcome::Superseded);
    assert_eq!(records.begin(KEY, 7, "b", T0), Outcome::Started);
}

#[test]
fn expired_records_are_swept_by_later_begins() {
    let mut records = Records::default();
    for n in 0..10 {
        let scope = format!("user:u-1 POST /api/orders key-{n}");
        records.begin(&scope, 7, "a", T0 + n);
        records.complete(&scope, "a", &created());
    }
    let live = records.state.len();
    // Two days later another key's Begin deletes the ten records and their index entries.
    records.begin(KEY, 7, "b", T0 + 2 * RETENTION_MS);
    assert!(
        records.state.len() < live - 10,
        "{} entries left of {live}",
        records.state.len()
    );
    let key_9 = "user:u-1 POST /api/orders key-9";
    assert_eq!(
        records.begin(key_9, 8, "c", T0 + 2 * RETENTION_MS),
        Outcome::Started
    );
}

#[test]
fn a_sweep_keeps_a_key_used_again_after_it_expired() {
    let mut records = Records::default();
    records.begin(KEY, 7, "a", T0);
    records.complete(KEY, "a", &created());
    // Used again a day later, then an expiry sweep of the first use's hour runs.
    records.begin(KEY, 7, "b", T0 + RETENTION_MS);
    records.complete(KEY, "b", &created());
    records.begin("another", 1, "c", T0 + RETENTION_MS + 2 * 3600 * 1000);
    assert_eq!(
        records.begin(KEY, 8, "d", T0 + RETENTION_MS + 2 * 3600 * 1000),
        Outcome::Mismatch
    );
}
