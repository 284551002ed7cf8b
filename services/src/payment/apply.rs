//! The payment state machine. The provider is outside it: `Process` only records a pending
//! payment (and PaymentInitiated); the worker calls the provider and brings the answer back as
//! `RecordCharge`, which is what emits PaymentProcessed or PaymentFailed. So every replica
//! applies the same answers, and a charge that happened before a crash is recorded after it
//! from the provider's own idempotent memory, never charged again.

use super::commands::Command;
use super::events::{self, TOPIC};
use super::model::{
    ChargeOutcome, Origin, Payment, PaymentStatus, PendingWork, Refund, RefundOutcome,
    RefundRequest,
};
use crate::platform::store::{Table, Transaction, UniqueIndex};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};

pub const PAYMENTS: Table<Payment> = Table::new("payment");
/// idempotency key -> payment id.
pub const BY_KEY: UniqueIndex = UniqueIndex::new("idempotency_key");
/// order id -> payment id (one payment per order).
pub const BY_ORDER: UniqueIndex = UniqueIndex::new("order");
/// What the worker still has to ask the provider.
pub const PENDING: Table<PendingWork> = Table::new("pending");

pub fn charge_work_id(payment_id: &str) -> String {
    format!("charge/{payment_id}")
}

pub fn refund_work_id(payment_id: &str, refund_id: &str) -> String {
    format!("refund/{payment_id}/{refund_id}")
}

pub struct Payments;

impl StateMachine for Payments {
    type Command = Command;
    /// The payment after the command; None when the command concerned no payment.
    type Output = Option<Payment>;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        meta: &CommandMeta,
    ) -> Result<Result<Option<Payment>, Rejection>, StoreError> {
        match command {
            Command::Process {
                payment_id,
                order_id,
                customer_id,
                amount,
                payment_token,
                card_last4,
                idempotency_key,
            } => {
                // A key (or an order) seen before: answer from what was done, do nothing new.
                let existing = match BY_KEY.get(tx, idempotency_key)? {
                    Some(id) => Some(id),
                    None => BY_ORDER.get(tx, order_id)?,
                };
                if let Some(id) = existing {
                    return Ok(Ok(PAYMENTS.get(tx, &id)?));
                }
                let payment = Payment {
                    payment_id: payment_id.clone(),
                    order_id: order_id.clone(),
                    customer_id: customer_id.clone(),
                    amount: amount.clone(),
                    payment_token: Some(payment_token.clone()),
                    card_last4: card_last4.clone(),
                    idempotency_key: idempotency_key.clone(),
                    status: PaymentStatus::Pending,
                    failure_reason: None,
                    charge_id: None,
                    refunds: Vec::new(),
                    refund_requested: None,
                    origin: origin(meta),
                    created_at_ms: meta.at_ms,
                    updated_at_ms: meta.at_ms,
                };
                PAYMENTS.put(tx, payment_id, &payment)?;
                BY_KEY.put(tx, idempotency_key, payment_id);
                BY_ORDER.put(tx, order_id, payment_id);
                PENDING.put(
                    tx,
                    &charge_work_id(payment_id),
                    &PendingWork::Charge {
                        payment_id: payment_id.clone(),
                    },
                )?;
                let data = events::PaymentInitiated {
                    payment_id,
                    order_id,
                    customer_id,
                    amount,
                };
                tx.emit(
                    TOPIC,
                    meta.event(events::PAYMENT_INITIATED, order_id, 1, data)?,
                );
                Ok(Ok(Some(payment)))
            }
            Command::RecordCharge {
                payment_id,
                outcome,
            } => {
                PENDING.delete(tx, &charge_work_id(payment_id));
                let Some(mut payment) = PAYMENTS.get(tx, payment_id)? else {
                    return Ok(Ok(None));
                };
                if payment.status != PaymentStatus::Pending {
                    // Recorded before (a worker retry after a crash): nothing new.
                    return Ok(Ok(Some(payment)));
                }
                // The charge is answered: the card is never charged again.
                payment.payment_token = None;
                payment.updated_at_ms = meta.at_ms;
                match outcome {
                    ChargeOutcome::Captured { charge_id } => {
                        payment.status = PaymentStatus::Captured;
                        payment.charge_id = Some(charge_id.clone());
                        let data = events::PaymentProcessed {
                            payment_id,
                            order_id: &payment.order_id,
                            customer_id: &payment.customer_id,
                            amount: &payment.amount,
                            card_last4: &payment.card_last4,
                        };
                        tx.emit(
                            TOPIC,
                            meta.event(events::PAYMENT_PROCESSED, &payment.order_id, 1, data)?,
                        );
                        if let Some(request) = payment.refund_requested.take() {
                            start_refund(tx, &mut payment, request, meta.at_ms)?;
                        }
                    }
                    ChargeOutcome::Declined { reason } => {
                        payment.status = PaymentStatus::Failed;
                        payment.failure_reason = Some(*reason);
                        // Nothing was taken, so nothing to refund.
                        payment.refund_requested = None;
                        let data = events::PaymentFailed {
                            payment_id,
                            order_id: &payment.order_id,
                            customer_id: &payment.customer_id,
                            amount: &payment.amount,
                            reason: reason.as_str(),
                        };
                        tx.emit(
                            TOPIC,
                            meta.event(events::PAYMENT_FAILED, &payment.order_id, 1, data)?,
                        );
                    }
                }
                PAYMENTS.put(tx, payment_id, &payment)?;
                Ok(Ok(Some(payment)))
            }
            Command::Refund {
                order_id,
                refund_id,
                reason,
            } => {
                let Some(id) = BY_ORDER.get(tx, order_id)? else {
                    // Nothing was charged for this order: nothing to refund.
                    return Ok(Ok(None));
                };
                let Some(mut payment) = PAYMENTS.get(tx, &id)? else {
                    return Ok(Ok(None));
                };
                let request = RefundRequest {
                    refund_id: refund_id.clone(),
                    reason: reason.clone(),
                    origin: origin(meta),
                };
                let already = !payment.refunds.is_empty() || payment.refund_requested.is_some();
                match payment.status {
                    // Once per order: a second request refunds nothing.
                    _ if already => return Ok(Ok(Some(payment))),
                    PaymentStatus::Pending => payment.refund_requested = Some(request),
                    PaymentStatus::Captured => {
                        start_refund(tx, &mut payment, request, meta.at_ms)?;
                    }
                    PaymentStatus::Failed | PaymentStatus::Refunded => {
                        return Ok(Ok(Some(payment)));
                    }
                }
                payment.updated_at_ms = meta.at_ms;
                PAYMENTS.put(tx, &id, &payment)?;
                Ok(Ok(Some(payment)))
            }
            Command::RecordRefund {
                payment_id,
                refund_id,
                outcome,
            } => {
                PENDING.delete(tx, &refund_work_id(payment_id, refund_id));
                let Some(mut payment) = PAYMENTS.get(tx, payment_id)? else {
                    return Ok(Ok(None));
                };
                let Some(refund) = payment
                    .refunds
                    .iter_mut()
                    .find(|refund| refund.refund_id == *refund_id && refund.status == "pending")
                else {
                    return Ok(Ok(Some(payment)));
                };
                refund.completed_at_ms = Some(meta.at_ms);
                match outcome {
                    RefundOutcome::Refunded {
                        refund_id: provider_refund_id,
                    } => {
                        refund.status = "refunded".to_string();
                        refund.provider_refund_id = Some(provider_refund_id.clone());
                        payment.status = PaymentStatus::Refunded;
                        let data = events::RefundProcessed {
                            payment_id,
                            order_id: &payment.order_id,
                            customer_id: &payment.customer_id,
                            amount: &payment.amount,
                        };
                        tx.emit(
                            TOPIC,
                            meta.event(events::REFUND_PROCESSED, &payment.order_id, 1, data)?,
                        );
                    }
                    RefundOutcome::Refused { reason } => {
                        refund.status = format!("refused: {reason}");
                    }
                }
                payment.updated_at_ms = meta.at_ms;
                PAYMENTS.put(tx, payment_id, &payment)?;
                Ok(Ok(Some(payment)))
            }
        }
    }
}

/// Records a full refund of a captured payment and queues it for the worker.
fn start_refund(
    tx: &mut dyn Transaction,
    payment: &mut Payment,
    request: RefundRequest,
    at_ms: i64,
) -> Result<(), StoreError> {
    PENDING.put(
        tx,
        &refund_work_id(&payment.payment_id, &request.refund_id),
        &PendingWork::Refund {
            payment_id: payment.payment_id.clone(),
            refund_id: request.refund_id.clone(),
        },
    )?;
    payment.refunds.push(Refund {
        refund_id: request.refund_id,
        amount: payment.amount.clone(),
        reason: request.reason,
        status: "pending".to_string(),
        provider_refund_id: None,
        requested_at_ms: at_ms,
        completed_at_ms: None,
        origin: request.origin,
    });
    Ok(())
}

fn origin(meta: &CommandMeta) -> Origin {
    Origin {
        correlation_id: meta.correlation_id.clone(),
        causation_id: meta.causation_id.clone(),
        traceparent: meta.traceparent.clone(),
    }
}
