//! The payment provider port and the built-in test provider.
//!
//! A provider is what a real PSP (Stripe, Adyen) is to the service: an outside system that
//! moves money, remembers every request by its idempotency key and answers a repeated key
//! with the first answer without charging again. The worker relies on exactly that: after a
//! crash between "charged" and "recorded", it asks again with the same key.
//!
//! [`TestProvider`] follows the well-known test-card convention and keeps its ledger in its
//! own fjall database (`<data-dir>/services/payment-provider`), apart from the service's
//! store, as a PSP's books are apart from the shop's: it survives restarts, and the ledger is
//! what tests read to prove a payment was charged once.

use super::model::{ChargeOutcome, DeclineReason, RefundOutcome, last4, luhn_valid};
use crate::platform::Money;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

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

/// One real charge in the test provider's books.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LedgerCharge {
    pub charge_id: String,
    pub idempotency_key: String,
    /// The charge's reference (the order id).
    pub order_id: String,
    pub amount: Money,
    pub card_last4: String,
    /// Refunded so far, in the charge's currency.
    pub refunded: i64,
    pub at_ms: i64,
}

/// What the provider answered to a key, kept so that the key answers the same forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Answer {
    Charge(ChargeOutcome),
    Refund(RefundOutcome),
}

#[derive(Clone)]
pub struct TestProvider {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    ledger: Keyspace,
    /// Held from "is this key known" to "answer stored": a key is answered once even when
    /// asked twice at the same time.
    books: Mutex<()>,
}

const ANSWER_PREFIX: &str = "answer\0";
const CHARGE_PREFIX: &str = "charge\0";

impl TestProvider {
    pub fn open(path: &Path) -> Result<TestProvider, fjall::Error> {
        let db = Database::builder(path).open()?;
        let ledger = db.keyspace("ledger", KeyspaceCreateOptions::default)?;
        Ok(TestProvider {
            inner: Arc::new(Inner {
                db,
                ledger,
                books: Mutex::new(()),
            }),
        })
    }

    /// The real charges made for `order_id`, oldest first.
    pub fn charges_for(&self, order_id: &str) -> Result<Vec<LedgerCharge>, ProviderError> {
        let mut charges = Vec::new();
        for guard in self.inner.ledger.prefix(CHARGE_PREFIX) {
            let (_, value) = guard.into_inner().map_err(unavailable)?;
            let charge: LedgerCharge = serde_json::from_slice(&value).map_err(unavailable)?;
            if charge.order_id == order_id {
                charges.push(charge);
            }
        }
        charges.sort_by_key(|charge| charge.at_ms);
        Ok(charges)
    }

    /// The decision the test-card convention makes for a card number.
    pub fn decide(card_number: &str) -> Result<(), DeclineReason> {
        match card_number {
            "4242424242424242" => Ok(()),
            "4000000000000002" => Err(DeclineReason::CardDeclined),
            "4000000000009995" => Err(DeclineReason::InsufficientFunds),
            other if luhn_valid(other) => Ok(()),
            _ => Err(DeclineReason::InvalidCard),
        }
    }

    fn charge_now(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderError> {
        let inner = &self.inner;
        let _books = inner.books.lock().map_err(unavailable)?;
        let key = format!("{ANSWER_PREFIX}{}", request.idempotency_key);
        if let Some(Answer::Charge(outcome)) = self.get::<Answer>(&key)? {
            return Ok(outcome);
        }
        let outcome = match TestProvider::decide(&request.card_number) {
            Ok(()) => {
                let charge = LedgerCharge {
                    charge_id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
                    idempotency_key: request.idempotency_key.clone(),
                    order_id: request.reference.clone(),
                    amount: request.amount.clone(),
                    card_last4: last4(&request.card_number),
                    refunded: 0,
                    at_ms: crate::platform::time::now_ms(),
                };
                self.put(&format!("{CHARGE_PREFIX}{}", charge.charge_id), &charge)?;
                ChargeOutcome::Captured {
                    charge_id: charge.charge_id,
                }
            }
            Err(reason) => ChargeOutcome::Declined { reason },
        };
        self.put(&key, &Answer::Charge(outcome.clone()))?;
        // Durable before answering, as a PSP's answer is: the worker may crash right after.
        inner
            .db
            .persist(PersistMode::SyncData)
            .map_err(unavailable)?;
        Ok(outcome)
    }

    fn refund_now(
        &self,
        idempotency_key: &str,
        charge_id: &str,
        amount: &Money,
    ) -> Result<RefundOutcome, ProviderError> {
        let inner = &self.inner;
        let _books = inner.books.lock().map_err(unavailable)?;
        let key = format!("{ANSWER_PREFIX}{idempotency_key}");
        if let Some(Answer::Refund(outcome)) = self.get::<Answer>(&key)? {
            return Ok(outcome);
        }
        let charge_key = format!("{CHARGE_PREFIX}{charge_id}");
        let outcome = match self.get::<LedgerCharge>(&charge_key)? {
            None => RefundOutcome::Refused {
                reason: "no_such_charge".to_string(),
            },
            Some(charge) if charge.amount.currency != amount.currency => RefundOutcome::Refused {
                reason: "currency_mismatch".to_string(),
            },
            Some(charge) if charge.refunded + amount.amount > charge.amount.amount => {
                RefundOutcome::Refused {
                    reason: "amount_exceeds_charge".to_string(),
                }
            }
            Some(mut charge) => {
                charge.refunded += amount.amount;
                self.put(&charge_key, &charge)?;
                RefundOutcome::Refunded {
                    refund_id: format!("re_{}", uuid::Uuid::new_v4().simple()),
                }
            }
        };
        self.put(&key, &Answer::Refund(outcome.clone()))?;
        inner
            .db
            .persist(PersistMode::SyncData)
            .map_err(unavailable)?;
        Ok(outcome)
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ProviderError> {
        match self.inner.ledger.get(key).map_err(unavailable)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(unavailable)?)),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), ProviderError> {
        let bytes = serde_json::to_vec(value).map_err(unavailable)?;
        self.inner.ledger.insert(key, bytes).map_err(unavailable)?;
        Ok(())
    }
}

impl PaymentProvider for TestProvider {
    async fn charge(&self, request: ChargeRequest) -> Result<ChargeOutcome, ProviderError> {
        let provider = self.clone();
        tokio::task::spawn_blocking(move || provider.charge_now(&request))
            .await
            .map_err(unavailable)?
    }

    async fn refund(
        &self,
        idempotency_key: String,
        charge_id: String,
        amount: Money,
    ) -> Result<RefundOutcome, ProviderError> {
        let provider = self.clone();
        tokio::task::spawn_blocking(move || {
            provider.refund_now(&idempotency_key, &charge_id, &amount)
        })
        .await
        .map_err(unavailable)?
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
        let provider = TestProvider::open(dir.path()).unwrap();
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
        drop(provider);

        let provider = TestProvider::open(dir.path()).unwrap();
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
        let provider = TestProvider::open(dir.path()).unwrap();
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
