//! The payment provider port and the built-in test provider.
//!
//! A provider is what a real PSP (Stripe, Adyen) is to the service: an outside system that
//! moves money, remembers every request by its idempotency key and answers a repeated key
//! with the first answer without charging again. The worker relies on exactly that: after a
//! crash between "charged" and "recorded", it asks again with the same key.
//!
//! [`TestProvider`] follows the well-known test-card convention. Its books are an engine of
//! their own ([`super::provider_ledger`], its store in `<data-dir>/services/payment-provider`),
//! apart from the service's store, as a PSP's books are apart from the shop's: in a cluster
//! that engine is replicated, so every node charges into the same books and a key repeated
//! on another node answers the first outcome. The ledger is what tests read to prove a
//! payment was charged once.

use super::model::{ChargeOutcome, DeclineReason, RefundOutcome};
pub use super::provider_ledger::LedgerCharge;
use super::provider_ledger::{Answer, CHARGES, LedgerCommand, ProviderLedger};
use crate::platform::engine::CommandContext;
use crate::platform::{Engine, Money, Store, StoreError};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// A charge as the service asks for it.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub amount: Money,
    pub card_number: String,
    /// Free-form metadata a PSP keeps with the charge (Stripe's `metadata`): the order id.
    pub reference: String,
}

/// A provider failure that says nothing about the charge (unreachable, its store failing):
/// the worker retries with the same key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

pub trait PaymentProvider: Send + Sync + 'static {
    fn charge(
        &self,
        request: ChargeRequest,
    ) -> impl Future<Output = Result<ChargeOutcome, ProviderError>> + Send;

    fn refund(
        &self,
        idempotency_key: String,
        charge_id: String,
        amount: Money,
    ) -> impl Future<Output = Result<RefundOutcome, ProviderError>> + Send;
}

#[derive(Clone)]
pub struct TestProvider {
    engine: Arc<Engine<ProviderLedger>>,
}

impl TestProvider {
    /// Opens the provider's books in `path` (their own store).
    pub fn open(path: &Path) -> Result<TestProvider, StoreError> {
        let store = Arc::new(Store::open(path)?);
        Ok(TestProvider {
            engine: Engine::open(store, ProviderLedger)?,
        })
    }

    /// The books' engine, for the composition root to replicate like every service's. It
    /// emits no events: there is no outbox to relay.
    pub fn engine(&self) -> &Arc<Engine<ProviderLedger>> {
        &self.engine
    }

    /// The real charges made for `order_id`, oldest first.
    pub fn charges_for(&self, order_id: &str) -> Result<Vec<LedgerCharge>, ProviderError> {
        let mut charges: Vec<LedgerCharge> = CHARGES
            .scan(self.engine.store().as_ref())
            .map_err(unavailable)?
            .into_iter()
            .filter(|charge| charge.order_id == order_id)
            .collect();
        charges.sort_by_key(|charge| charge.at_ms);
        Ok(charges)
    }

    /// The decision the test-card convention makes for a card number.
    pub fn decide(card_number: &str) -> Result<(), DeclineReason> {
        super::provider_ledger::decide(card_number)
    }

    /// Submits to the books; the command's log entry is synced before it is applied, so the
    /// answer is durable before it is given, as a PSP's is (the worker may crash right
    /// after).
    async fn submit(&self, command: LedgerCommand, key: &str) -> Result<Answer, ProviderError> {
        let context = CommandContext {
            correlation_id: key.to_string(),
            ..CommandContext::default()
        };
        // Apply answers every command; a rejection would be a bug, reported as unavailable
        // so the worker asks again rather than record a made-up outcome.
        self.engine
            .submit(command, context)
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }
}

impl PaymentProvider for TestProvider {
    async fn charge(&self, request: ChargeRequest) -> Result<ChargeOutcome, ProviderError> {
        let command = LedgerCommand::Charge {
            charge_id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            idempotency_key: request.idempotency_key.clone(),
            amount: request.amount,
            card_number: request.card_number,
            reference: request.reference,
        };
        match self.submit(command, &request.idempotency_key).await? {
            Answer::Charge(outcome) => Ok(outcome),
            Answer::Refund(_) => Err(unavailable("a charge answered as a refund")),
        }
    }

    async fn refund(
        &self,
        idempotency_key: String,
        charge_id: String,
        amount: Money,
    ) -> Result<RefundOutcome, ProviderError> {
        let command = LedgerCommand::Refund {
            refund_id: format!("re_{}", uuid::Uuid::new_v4().simple()),
            idempotency_key: idempotency_key.clone(),
            charge_id,
            amount,
        };
        match self.submit(command, &idempotency_key).await? {
            Answer::Refund(outcome) => Ok(outcome),
            Answer::Charge(_) => Err(unavailable("a refund answered as a charge")),
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(error.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn usd(amount: i64) -> Money {
        Money {
            amount,
            currency: "USD".to_string(),
        }
    }

    fn request(key: &str, card: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.to_string(),
            amount: usd(1999),
            card_number: card.to_string(),
            reference: format!("order-{key}"),
        }
    }

    #[test]
    fn test_cards_follow_the_convention() {
        assert_eq!(TestProvider::decide("4242424242424242"), Ok(()));
        assert_eq!(
            TestProvider::decide("4000000000000002"),
            Err(DeclineReason::CardDeclined)
        );
        assert_eq!(
            TestProvider::decide("4000000000009995"),
            Err(DeclineReason::InsufficientFunds)
        );
        assert_eq!(TestProvider::decide("5555555555554444"), Ok(()));
        assert_eq!(
            TestProvider::decide("4242424242424241"),
            Err(DeclineReason::InvalidCard)
        );
        assert_eq!(TestProvider::decide("42"), Err(DeclineReason::InvalidCard));
    }

    #[tokio::test]
    async fn the_same_key_charges_once_and_answers_the_same_also_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let provider = TestProvider::open(&dir.path().join("ledger")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, provider.engine()).await;
        let first = provider
            .charge(request("k1", "4242424242424242"))
            .await
            .unwrap();
        let again = provider
            .charge(request("k1", "4242424242424242"))
            .await
            .unwrap();
        assert_eq!(first, again);
        assert!(matches!(first, ChargeOutcome::Captured { .. }));
        assert_eq!(provider.charges_for("order-k1").unwrap().len(), 1);
        let declined = provider
            .charge(request("k2", "4000000000000002"))
            .await
            .unwrap();
        assert_eq!(
            declined,
            ChargeOutcome::Declined {
                reason: DeclineReason::CardDeclined
            }
        );
        assert!(provider.charges_for("order-k2").unwrap().is_empty());
        raft.shutdown().await;
        drop(provider);

        let provider = TestProvider::open(&dir.path().join("ledger")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, provider.engine()).await;
        let after = provider
            .charge(request("k1", "4242424242424242"))
            .await
            .unwrap();
        assert_eq!(after, first);
        assert_eq!(provider.charges_for("order-k1").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refund_key_refunds_once_and_never_more_than_charged() {
        let dir = tempfile::tempdir().unwrap();
        let provider = TestProvider::open(&dir.path().join("ledger")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, provider.engine()).await;
        let ChargeOutcome::Captured { charge_id } = provider
            .charge(request("k1", "4242424242424242"))
            .await
            .unwrap()
        else {
            panic!("the good card is captured");
        };
        let refund = |key: &str| provider.refund(key.to_string(), charge_id.clone(), usd(1999));
        let first = refund("r1").await.unwrap();
        assert!(matches!(first, RefundOutcome::Refunded { .. }));
        assert_eq!(refund("r1").await.unwrap(), first);
        assert_eq!(provider.charges_for("order-k1").unwrap()[0].refunded, 1999);
        assert!(matches!(
            refund("r2").await.unwrap(),
            RefundOutcome::Refused { .. }
        ));
    }
}
