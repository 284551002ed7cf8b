//! Payment: charges and refunds for orders through a [`provider::PaymentProvider`], answering
//! ProcessPayment and RefundPayment from `payment-commands` with events on `payment-events`.
//!
//! The provider is outside the deterministic state machine: a command records a pending
//! payment, the [`worker::PaymentWorker`] calls the provider with the payment's idempotency
//! key and submits the answer as a command. A retried or replayed command, or a crash between
//! charge and record, therefore never charges twice: the state machine answers a known key
//! from its state, and the provider answers a known key from its books.
//!
//! No card number reaches this service: the edge exchanges it for the provider's token
//! ([`provider::TestProvider::tokenize`], [`card_vault`]) before any command is built, and
//! ProcessPayment carries that token and the last four digits.

pub mod apply;
pub mod card_vault;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod model;
pub mod provider;
pub mod provider_ledger;
pub mod routes;
pub mod worker;

#[cfg(test)]
mod tests;

use crate::platform::{Engine, Store, StoreError};
use apply::Payments;
use provider::TestProvider;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

/// The producer id payment's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0005;

pub struct PaymentService {
    pub engine: Arc<Engine<Payments>>,
    pub provider: TestProvider,
    /// Wakes the worker after a route queued work (the consumer's work is found by polling).
    pub wake: Arc<Notify>,
    /// Where this node keeps its copy of the card fingerprint key.
    provider_keys_dir: PathBuf,
}

impl PaymentService {
    pub fn open(services_dir: &Path) -> Result<Arc<PaymentService>, StoreError> {
        let store = Arc::new(Store::open(&services_dir.join("payment"))?);
        let engine = Engine::open(store, Payments)?;
        let provider = TestProvider::open(&services_dir.join("payment-provider"))?;
        Ok(Arc::new(PaymentService {
            engine,
            provider,
            wake: Arc::new(Notify::new()),
            provider_keys_dir: services_dir.join("payment-provider-keys"),
        }))
    }

    /// At start: makes sure the provider can tokenize cards (a fingerprint key installed in
    /// its replicated books, the first node's winning) and copies the key to
    /// `<services_dir>/payment-provider-keys/`. Blocks on the group's answers.
    pub fn ensure_fingerprint_key(&self) -> Result<(), provider::ProviderError> {
        self.provider
            .ensure_fingerprint_key(&self.provider_keys_dir)
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// The worker that calls the provider, to run as a background task.
    pub fn worker(&self) -> worker::PaymentWorker<TestProvider> {
        worker::PaymentWorker {
            engine: self.engine.clone(),
            provider: self.provider.clone(),
            wake: self.wake.clone(),
        }
    }
}
