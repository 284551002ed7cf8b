//! `Idempotency-Key` on mutating requests: the first answer to a (client, method, path, key)
//! is kept with a hash of the request body; a retry with the same body gets the kept answer
//! without reaching the service again; the same key with a different body is a client bug
//! and gets 422; a retry while the first is still running gets 409. Server errors (5xx) are
//! not kept, so a retry after one runs again.
//!
//! The records are a replicated state ([`machine`]), a Raft group of their own like a
//! service's, so a retry sent to another node behind a load balancer is recognised: the
//! [`layer`] records `Begin` through the group before the request reaches its handler and
//! `Complete` (or `Abandon`) after. The gateway only calls the engine; the composition root
//! opens it ([`open`]) and replicates it with the services' groups. Answers are kept for a day.

pub mod layer;
#[cfg(test)]
mod layer_tests;
pub mod machine;
#[cfg(test)]
mod machine_tests;

pub use layer::{IDEMPOTENCY_HEADER, layer};
pub use machine::{Command, IdempotencyMachine, Outcome, StoredAnswer, StoredBody};

use commerce_services::platform::record_signature::RecordKeys;
use commerce_services::platform::{Engine, Store, StoreError};
use std::path::Path;
use std::sync::Arc;

/// The engine of the idempotency records, as the gateway is handed it, and the platform's
/// key, which the request bodies' fingerprints are keyed with (a body may hold a card
/// number: its record must not let anyone recover it).
#[derive(Clone)]
pub struct IdempotencyRecords(pub Arc<Engine<IdempotencyMachine>>, pub RecordKeys);

impl std::fmt::Debug for IdempotencyRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyRecords")
            .field("applied_index", &self.0.applied_index())
            .finish()
    }
}

/// Opens the records' engine on its store in `dir` (`<data-dir>/gateway/idempotency`); it
/// takes commands once the composition root has replicated it.
pub fn open(dir: &Path) -> Result<Arc<Engine<IdempotencyMachine>>, StoreError> {
    let store = Arc::new(Store::open(dir)?);
    Engine::open(store, IdempotencyMachine)
}
