//! The payment worker: takes the charges and refunds the state machine left pending, asks the
//! provider with the payment's idempotency key, and submits the answer as a command. It holds
//! no state of its own: what is pending is in the store, so after a crash it simply asks
//! again, and the provider answers a known key without moving money twice.

use super::apply::{PAYMENTS, PENDING, Payments};
use super::commands::Command;
use super::model::{Origin, PendingWork};
use super::provider::{ChargeRequest, PaymentProvider};
use crate::platform::engine::CommandContext;
use crate::platform::{Engine, ReadTx, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Poll even without a wake-up: a command applied by the consumer does not signal us.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Wait after the provider or the store failed.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// A provider call that takes longer is abandoned and asked again (same key: safe).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PaymentWorker<P: PaymentProvider> {
    pub engine: Arc<Engine<Payments>>,
    pub provider: P,
    pub wake: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Provider(String),
}

impl<P: PaymentProvider> PaymentWorker<P> {
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            if *stopped.borrow() {
                return;
            }
            let delay = match self.work_once().await {
                Ok(0) => IDLE_POLL,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "payment worker failed; retrying");
                    RETRY_BACKOFF
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wake.notified() => {}
                _ = stopped.changed() => return,
            }
        }
    }

    /// Works off everything pending now; returns how much.
    pub(crate) async fn work_once(&self) -> Result<usize, WorkError> {
        let store: &dyn ReadTx = self.engine.store().as_ref();
        let pending = PENDING.scan(store)?;
        for work in &pending {
            match work {
                PendingWork::Charge { payment_id } => self.charge(payment_id).await?,
                PendingWork::Refund {
                    payment_id,
                    refund_id,
                } => self.refund(payment_id, refund_id).await?,
            }
        }
        Ok(pending.len())
    }

    async fn charge(&self, payment_id: &str) -> Result<(), WorkError> {
        let store: &dyn ReadTx = self.engine.store().as_ref();
        let Some(payment) = PAYMENTS.get(store, payment_id)? else {
            return Ok(());
        };
        let Some(payment_token) = payment.payment_token.clone() else {
            // No card to charge (the token is dropped only with the answer, in one batch, so
            // this is a payment already answered, or one recorded before cards were
            // tokenized): recording it clears the work item, and apply ignores an answer to
            // a payment that is no longer pending.
            return self
                .record(
                    Command::RecordCharge {
                        payment_id: payment_id.to_string(),
                        outcome: super::model::ChargeOutcome::Declined {
                            reason: super::model::DeclineReason::InvalidCard,
                        },
                    },
                    &payment.origin,
                )
                .await;
        };
        let request = ChargeRequest {
            idempotency_key: payment.idempotency_key.clone(),
            amount: payment.amount.clone(),
            payment_token,
            reference: payment.order_id.clone(),
        };
        let outcome = tokio::time::timeout(CALL_TIMEOUT, self.provider.charge(request))
            .await
            .map_err(|_| WorkError::Provider("the provider did not answer in time".into()))?
            .map_err(|error| WorkError::Provider(error.to_string()))?;
        let command = Command::RecordCharge {
            payment_id: payment_id.to_string(),
            outcome,
        };
        self.record(command, &payment.origin).await
    }

    async fn refund(&self, payment_id: &str, refund_id: &str) -> Result<(), WorkError> {
        let store: &dyn ReadTx = self.engine.store().as_ref();
        let Some(payment) = PAYMENTS.get(store, payment_id)? else {
            return Ok(());
        };
        let Some(refund) = payment
            .refunds
            .iter()
            .find(|refund| refund.refund_id == refund_id)
        else {
            return Ok(());
        };
        let outcome = match &payment.charge_id {
            Some(charge_id) => {
                let call = self.provider.refund(
                    format!("refund:{refund_id}"),
                    charge_id.clone(),
                    refund.amount.clone(),
                );
                tokio::time::timeout(CALL_TIMEOUT, call)
                    .await
                    .map_err(|_| WorkError::Provider("the provider did not answer in time".into()))?
                    .map_err(|error| WorkError::Provider(error.to_string()))?
            }
            None => super::model::RefundOutcome::Refused {
                reason: "not_captured".to_string(),
            },
        };
        let command = Command::RecordRefund {
            payment_id: payment_id.to_string(),
            refund_id: refund_id.to_string(),
            outcome,
        };
        let origin = refund.origin.clone();
        self.record(command, &origin).await
    }

    async fn record(&self, command: Command, origin: &Origin) -> Result<(), WorkError> {
        let context = CommandContext {
            correlation_id: origin.correlation_id.clone(),
            causation_id: origin.causation_id.clone(),
            traceparent: origin.traceparent.clone(),
            consumed_event: None,
        };
        match self.engine.submit(command, context).await? {
            Ok(_) => Ok(()),
            Err(rejection) => {
                // Apply accepts every answer; a rejection here is a bug worth a loud log.
                tracing::error!(%rejection, "the payment worker's answer was rejected");
                Ok(())
            }
        }
    }
}
