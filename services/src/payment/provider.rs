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

use super::card_vault::{self, CardToken, FingerprintKey, FingerprintKeyError, VaultedCard};
use super::model::{ChargeOutcome, RefundOutcome};
pub use super::provider_ledger::LedgerCharge;
use super::provider_ledger::{
    Answer, CHARGES, FINGERPRINT_KEY, FINGERPRINT_KEY_ID, LedgerCommand, ProviderLedger,
};
use crate::platform::card::CardNumber;
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
    /// The card, by the token its tokenization answered.
    pub payment_token: String,
    /// Free-form metadata a PSP keeps with the charge (Stripe's `metadata`): the order id.
    pub reference: String,
}

/// A provider failure that says nothing about the charge (unreachable, its store failing):
/// the worker retries with the same key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// No card fingerprint key is installed yet (the node is still starting).
    #[error("the payment provider cannot tokenize cards yet: no fingerprint key is installed")]
    NoFingerprintKey,
    #[error(transparent)]
    FingerprintKey(#[from] FingerprintKeyError),
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

    /// Exchanges a card number for a token (the PSP's tokenization): decides what a charge
    /// of the card comes to, fingerprints it and keeps brand, last four digits, fingerprint
    /// and decision in the vault under a fresh token. The number goes no further.
    pub async fn tokenize(&self, card: &CardNumber) -> Result<CardToken, ProviderError> {
        let fingerprint = self.fingerprint(card)?;
        let token = card_vault::new_token();
        let vaulted = VaultedCard {
            brand: card.brand(),
            last4: card.last4(),
            fingerprint,
            decline: super::provider_ledger::decide(card).err(),
        };
        let command = LedgerCommand::Vault {
            token: token.clone(),
            card: vaulted.clone(),
        };
        match self.submit(command, &token).await? {
            Answer::Recorded => Ok(CardToken {
                token,
                brand: vaulted.brand,
                card_last4: vaulted.last4,
                fingerprint: vaulted.fingerprint,
            }),
            other => Err(unavailable(format!("tokenization answered {other:?}"))),
        }
    }

    /// The card's keyed fingerprint (the same on every node), without recording anything.
    pub fn fingerprint(&self, card: &CardNumber) -> Result<String, ProviderError> {
        let key = FINGERPRINT_KEY
            .get(self.engine.store().as_ref(), FINGERPRINT_KEY_ID)
            .map_err(unavailable)?
            .ok_or(ProviderError::NoFingerprintKey)?;
        Ok(key.fingerprint(card))
    }

    /// At start: installs a card fingerprint key unless the books hold one (the key file of
    /// an earlier start if there is one, else a fresh key; the first installed wins
    /// cluster-wide) and writes the installed key to `keys_dir`. It submits a command, so it
    /// runs once the engine takes commands (in a cluster, after it joined its group).
    pub fn ensure_fingerprint_key(&self, keys_dir: &Path) -> Result<(), ProviderError> {
        // What any node installed before, not only what this replica has applied so far.
        self.engine.read_barrier_blocking().map_err(unavailable)?;
        let installed = match FINGERPRINT_KEY
            .get(self.engine.store().as_ref(), FINGERPRINT_KEY_ID)
            .map_err(unavailable)?
        {
            Some(key) => key,
            None => {
                let offered = match FingerprintKey::read_file(keys_dir)? {
                    Some(key) => key,
                    None => FingerprintKey::generate()?,
                };
                let context = CommandContext {
                    correlation_id: "payment-provider-fingerprint-key".to_string(),
                    ..CommandContext::default()
                };
                self.engine
                    .submit_blocking(
                        LedgerCommand::InstallFingerprintKey { key: offered },
                        context,
                    )
                    .map_err(unavailable)?
                    .map_err(unavailable)?;
                // Not necessarily the key offered: another node's may have been first.
                self.engine.read_barrier_blocking().map_err(unavailable)?;
                FINGERPRINT_KEY
                    .get(self.engine.store().as_ref(), FINGERPRINT_KEY_ID)
                    .map_err(unavailable)?
                    .ok_or(ProviderError::NoFingerprintKey)?
            }
        };
        installed.write_file(keys_dir)?;
        Ok(())
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
            payment_token: request.payment_token,
            reference: request.reference,
        };
        match self.submit(command, &request.idempotency_key).await? {
            Answer::Charge(outcome) => Ok(outcome),
            other => Err(unavailable(format!("a charge answered {other:?}"))),
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
            other => Err(unavailable(format!("a refund answered {other:?}"))),
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
    use crate::payment::model::DeclineReason;

    fn usd(amount: i64) -> Money {
        Money {
            amount,
            currency: "USD".to_string(),
        }
    }

    fn request(key: &str, token: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.to_string(),
            amount: usd(1999),
            payment_token: token.to_string(),
            reference: format!("order-{key}"),
        }
    }

    /// Installs the fingerprint key (a blocking command, so off the runtime's workers).
    async fn install_key(provider: &TestProvider, keys_dir: &Path) {
        let (provider, keys_dir) = (provider.clone(), keys_dir.to_path_buf());
        tokio::task::spawn_blocking(move || provider.ensure_fingerprint_key(&keys_dir))
            .await
            .unwrap()
            .unwrap();
    }

    async fn tokenize(provider: &TestProvider, card: &str) -> CardToken {
        provider
            .tokenize(&CardNumber::parse(card).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_card_is_charged_by_its_token_and_the_vault_keeps_no_number() {
        let dir = tempfile::tempdir().unwrap();
        let provider = TestProvider::open(&dir.path().join("ledger")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, provider.engine()).await;
        assert!(matches!(
            provider
                .tokenize(&CardNumber::parse("4242424242424242").unwrap())
                .await,
            Err(ProviderError::NoFingerprintKey)
        ));
        install_key(&provider, &dir.path().join("keys")).await;

        let good = tokenize(&provider, "4242 4242 4242 4242").await;
        let again = tokenize(&provider, "4242424242424242").await;
        assert_ne!(good.token, again.token, "a token is new each time");
        assert_eq!(good.fingerprint, again.fingerprint, "the card is the same");
        assert_eq!(good.card_last4, "4242");
        let charged = provider.charge(request("k1", &good.token)).await.unwrap();
        assert!(matches!(charged, ChargeOutcome::Captured { .. }));
        for (card, reason) in [
            ("4000000000000002", DeclineReason::CardDeclined),
            ("4000000000009995", DeclineReason::InsufficientFunds),
        ] {
            let token = tokenize(&provider, card).await.token;
            let key = format!("k-{}", &card[12..]);
            let outcome = provider.charge(request(&key, &token)).await.unwrap();
            assert_eq!(outcome, ChargeOutcome::Declined { reason }, "{card}");
        }

        // The books and the vault hold the last four digits, never the number.
        raft.shutdown().await;
        drop(provider);
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            for card in ["4242424242424242", "4000000000000002", "4000000000009995"] {
                assert!(
                    !bytes
                        .windows(card.len())
                        .any(|window| window == card.as_bytes()),
                    "{card} in {}",
                    entry.display()
                );
            }
        }
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[tokio::test]
    async fn the_same_key_charges_once_and_answers_the_same_also_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let provider = TestProvider::open(&dir.path().join("ledger")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, provider.engine()).await;
        install_key(&provider, &dir.path().join("keys")).await;
        let good = tokenize(&provider, "4242424242424242").await.token;
        let first = provider.charge(request("k1", &good)).await.unwrap();
        let again = provider.charge(request("k1", &good)).await.unwrap();
        assert_eq!(first, again);
        assert!(matches!(first, ChargeOutcome::Captured { .. }));
        assert_eq!(provider.charges_for("order-k1").unwrap().len(), 1);
        let declined_card = tokenize(&provider, "4000000000000002").await.token;
        let declined = provider
            .charge(request("k2", &declined_card))
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
        let after = provider.charge(request("k1", &good)).await.unwrap();
        assert_eq!(after, first);
        assert_eq!(provider.charges_for("order-k1").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refund_key_refunds_once_and_never_more_than_charged() {
        let dir = tempfile::tempdir().unwrap();
        let provider = TestProvider::open(&dir.path().join("ledger")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, provider.engine()).await;
        install_key(&provider, &dir.path().join("keys")).await;
        let good = tokenize(&provider, "4242424242424242").await.token;
        let ChargeOutcome::Captured { charge_id } =
            provider.charge(request("k1", &good)).await.unwrap()
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
