//! The order saga as a pure state machine: given where an order stands and what just happened
//! (a participant's reply, a tick of the clock, the customer cancelling), it says where the
//! order goes next and which commands and events that takes. No I/O and no clock: the time of
//! every input is given, so `apply` stays deterministic and the saga tests without a runtime.
//!
//! ```text
//! ReservingInventory --InventoryReserved--> ProcessingPayment --PaymentProcessed-->
//! CreatingShipment --ShipmentCreated--> Confirmed --ShipmentDispatched--> Dispatched
//! --ShipmentDelivered--> Completed
//! ```
//! Any failure, step timeout or customer cancel before dispatch ends in `Cancelled`, after
//! undoing what was done (release the reservation, refund the payment, cancel the shipment).
//! A success that arrives after the order was cancelled is undone the same way.

use super::model::{OrderStatus, Step};
use crate::platform::card::CardPayment;
use crate::platform::time::rfc3339;
use serde::{Deserialize, Serialize};

/// Where the saga stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    ReservingInventory,
    ProcessingPayment,
    CreatingShipment,
    /// Paid and a shipment exists; waits for the carrier (no timeout: people ship).
    Confirmed,
    /// The stock left the warehouse; waits for delivery.
    Dispatched,
    Completed,
    Cancelled {
        reason: String,
    },
}

impl Stage {
    /// The step a stage waits on, which a timeout fails.
    fn step(&self) -> Option<&'static str> {
        match self {
            Stage::ReservingInventory => Some(RESERVE),
            Stage::ProcessingPayment => Some(PAYMENT),
            Stage::CreatingShipment => Some(SHIPMENT),
            _ => None,
        }
    }

    pub fn status(&self) -> OrderStatus {
        match self {
            Stage::ReservingInventory | Stage::ProcessingPayment | Stage::CreatingShipment => {
                OrderStatus::Pending
            }
            Stage::Confirmed | Stage::Dispatched => OrderStatus::Confirmed,
            Stage::Completed => OrderStatus::Completed,
            Stage::Cancelled { .. } => OrderStatus::Cancelled,
        }
    }
}

const RESERVE: &str = "reserve_inventory";
const PAYMENT: &str = "process_payment";
const SHIPMENT: &str = "create_shipment";
const CONFIRM_RESERVATION: &str = "confirm_reservation";
const COMMIT: &str = "commit_inventory";
const RELEASE: &str = "release_inventory";
const REFUND: &str = "refund_payment";
const CANCEL_SHIPMENT: &str = "cancel_shipment";
const DISPATCH: &str = "dispatch_shipment";
const DELIVER: &str = "deliver_shipment";
const CANCEL_ORDER: &str = "cancel_order";

pub const REASON_CUSTOMER: &str = "customer_cancelled";
pub const REASON_PAYMENT: &str = "payment_failed";
pub const REASON_SHIPMENT: &str = "shipment_failed";

/// A participant's answer, already matched to this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Reply {
    InventoryReserved,
    InventoryReservationFailed {
        reason: String,
    },
    InventoryReleased,
    InventoryCommitted,
    PaymentProcessed {
        payment_id: String,
    },
    PaymentFailed {
        reason: String,
    },
    RefundProcessed,
    ShipmentCreated {
        shipment_id: String,
        tracking_number: String,
    },
    ShipmentFailed {
        reason: String,
    },
    ShipmentCancelled,
    ShipmentDispatched,
    ShipmentDelivered,
}

/// What a transition asks the service to send: commands to participants and order events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    ReserveInventory,
    ProcessPayment { payment: CardPayment },
    CreateShipment,
    ConfirmReservation,
    CommitInventory,
    ReleaseInventory { reason: String },
    RefundPayment { reason: String },
    CancelShipment { reason: String },
    OrderConfirmed,
    OrderCancelled { reason: String },
    OrderCompleted,
}

/// The customer asked to cancel an order that has left the warehouse (or is already final).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {0:?} cannot be cancelled")]
pub struct NotCancellable(pub OrderStatus);

/// The saga of one order: its stage, what has been done (so compensation undoes exactly
/// that, once) and the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub stage: Stage,
    /// When the step in progress is overdue; None when no step with a timeout is running.
    pub deadline_ms: Option<i64>,
    /// Fixed when the order is placed, so replaying the log times steps out the same way
    /// whatever the node's setting is now.
    pub step_timeout_ms: i64,
    /// The card's token, needed once, for ProcessPayment; forgotten as soon as the payment
    /// step is over. (A saga saved before cards were tokenized held `card_number` here: it
    /// is read without it.)
    #[serde(default)]
    pub payment: Option<CardPayment>,
    pub reserved: bool,
    pub released: bool,
    pub payment_id: Option<String>,
    pub refunded: bool,
    pub shipment_id: Option<String>,
    pub tracking_number: Option<String>,
    pub shipment_cancelled: bool,
    pub steps: Vec<Step>,
}

impl Saga {
    /// A new order's saga: reserve the stock first.
    pub fn start(at_ms: i64, step_timeout_ms: i64, payment: CardPayment) -> (Saga, Vec<Action>) {
        let mut saga = Saga {
            stage: Stage::ReservingInventory,
            deadline_ms: Some(at_ms.saturating_add(step_timeout_ms)),
            step_timeout_ms,
            payment: Some(payment),
            reserved: false,
            released: false,
            payment_id: None,
            refunded: false,
            shipment_id: None,
            tracking_number: None,
            shipment_cancelled: false,
            steps: Vec::new(),
        };
        saga.record(RESERVE, "requested", at_ms, None);
        (saga, vec![Action::ReserveInventory])
    }

    pub fn status(&self) -> OrderStatus {
        self.stage.status()
    }

    pub fn cancel_reason(&self) -> Option<&str> {
        match &self.stage {
            Stage::Cancelled { reason } => Some(reason),
            _ => None,
        }
    }

    /// Applies a reply; None when it does not fit where the order stands (a duplicate, a
    /// reply to a step already timed out and undone): nothing changes.
    pub fn on_reply(&mut self, reply: &Reply, at_ms: i64) -> Option<Vec<Action>> {
        let actions = match (&self.stage, reply) {
            (Stage::ReservingInventory, Reply::InventoryReserved) => {
                self.reserved = true;
                self.record(RESERVE, "succeeded", at_ms, None);
                let payment = self.payment.clone().unwrap_or_default();
                self.enter(Stage::ProcessingPayment, at_ms);
                self.record(PAYMENT, "requested", at_ms, None);
                vec![Action::ProcessPayment { payment }]
            }
            (Stage::ReservingInventory, Reply::InventoryReservationFailed { reason }) => {
                self.record(RESERVE, "failed", at_ms, Some(reason.clone()));
                self.cancel_with(reason.clone(), at_ms)
            }
            (Stage::ProcessingPayment, Reply::PaymentProcessed { payment_id }) => {
                self.payment_id = Some(payment_id.clone());
                self.payment = None;
                self.record(PAYMENT, "succeeded", at_ms, None);
                self.enter(Stage::CreatingShipment, at_ms);
                self.record(SHIPMENT, "requested", at_ms, None);
                vec![Action::CreateShipment]
            }
            (Stage::ProcessingPayment, Reply::PaymentFailed { reason }) => {
                self.record(PAYMENT, "failed", at_ms, Some(reason.clone()));
                self.cancel_with(REASON_PAYMENT.to_string(), at_ms)
            }
            (
                Stage::CreatingShipment,
                Reply::ShipmentCreated {
                    shipment_id,
                    tracking_number,
                },
            ) => {
                self.shipment_id = Some(shipment_id.clone());
                self.tracking_number = Some(tracking_number.clone());
                self.record(SHIPMENT, "succeeded", at_ms, Some(tracking_number.clone()));
                self.enter(Stage::Confirmed, at_ms);
                self.record(CONFIRM_RESERVATION, "requested", at_ms, None);
                vec![Action::ConfirmReservation, Action::OrderConfirmed]
            }
            (Stage::CreatingShipment, Reply::ShipmentFailed { reason }) => {
                self.record(SHIPMENT, "failed", at_ms, Some(reason.clone()));
                self.cancel_with(REASON_SHIPMENT.to_string(), at_ms)
            }
            (Stage::Confirmed, Reply::ShipmentDispatched) => {
                self.record(DISPATCH, "succeeded", at_ms, None);
                self.enter(Stage::Dispatched, at_ms);
                self.record(COMMIT, "requested", at_ms, None);
                vec![Action::CommitInventory]
            }
            // Delivered without a dispatch seen first: the goods left anyway, so the stock
            // is committed before the order completes.
            (Stage::Confirmed, Reply::ShipmentDelivered) => {
                self.record(DELIVER, "succeeded", at_ms, None);
                self.record(COMMIT, "requested", at_ms, None);
                self.enter(Stage::Completed, at_ms);
                vec![Action::CommitInventory, Action::OrderCompleted]
            }
            (Stage::Dispatched, Reply::ShipmentDelivered) => {
                self.record(DELIVER, "succeeded", at_ms, None);
                self.enter(Stage::Completed, at_ms);
                vec![Action::OrderCompleted]
            }
            // Late successes for a cancelled order: undo each once.
            (Stage::Cancelled { reason }, Reply::InventoryReserved)
                if !self.reserved && !self.released =>
            {
                let reason = reason.clone();
                self.reserved = true;
                self.record(RESERVE, "succeeded", at_ms, Some("late: releasing".into()));
                self.release(reason, at_ms)
            }
            (Stage::Cancelled { reason }, Reply::PaymentProcessed { payment_id })
                if self.payment_id.is_none() =>
            {
                let reason = reason.clone();
                self.payment_id = Some(payment_id.clone());
                self.record(PAYMENT, "succeeded", at_ms, Some("late: refunding".into()));
                self.refund(reason, at_ms)
            }
            (
                Stage::Cancelled { reason },
                Reply::ShipmentCreated {
                    shipment_id,
                    tracking_number,
                },
            ) if self.shipment_id.is_none() => {
                let reason = reason.clone();
                self.shipment_id = Some(shipment_id.clone());
                self.tracking_number = Some(tracking_number.clone());
                self.record(
                    SHIPMENT,
                    "succeeded",
                    at_ms,
                    Some("late: cancelling".into()),
                );
                self.cancel_shipment(reason, at_ms)
            }
            // Answers to compensations and commits: only the timeline changes.
            (_, Reply::InventoryReleased) if self.released => {
                self.record(RELEASE, "succeeded", at_ms, None);
                Vec::new()
            }
            (_, Reply::RefundProcessed) if self.refunded => {
                self.record(REFUND, "succeeded", at_ms, None);
                Vec::new()
            }
            (_, Reply::ShipmentCancelled) if self.shipment_cancelled => {
                self.record(CANCEL_SHIPMENT, "succeeded", at_ms, None);
                Vec::new()
            }
            (Stage::Dispatched | Stage::Completed, Reply::InventoryCommitted) => {
                self.record(COMMIT, "succeeded", at_ms, None);
                Vec::new()
            }
            _ => return None,
        };
        Some(actions)
    }

    /// Fails the running step if its deadline has passed at `now_ms`, compensating as if it
    /// had failed; None when nothing is overdue.
    pub fn on_tick(&mut self, now_ms: i64) -> Option<Vec<Action>> {
        let deadline = self.deadline_ms?;
        let step = self.stage.step()?;
        if now_ms < deadline {
            return None;
        }
        self.record(step, "timed_out", now_ms, None);
        Some(self.cancel_with(format!("timeout:{step}"), now_ms))
    }

    /// The customer (or an admin) cancels: allowed until the shipment is dispatched.
    pub fn cancel(&mut self, at_ms: i64) -> Result<Vec<Action>, NotCancellable> {
        match self.stage {
            Stage::ReservingInventory
            | Stage::ProcessingPayment
            | Stage::CreatingShipment
            | Stage::Confirmed => {
                self.record(CANCEL_ORDER, "requested", at_ms, None);
                Ok(self.cancel_with(REASON_CUSTOMER.to_string(), at_ms))
            }
            _ => Err(NotCancellable(self.status())),
        }
    }

    /// Ends the saga cancelled, undoing whatever was done so far.
    fn cancel_with(&mut self, reason: String, at_ms: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.shipment_id.is_some() {
            actions.extend(self.cancel_shipment(reason.clone(), at_ms));
        }
        if self.payment_id.is_some() {
            actions.extend(self.refund(reason.clone(), at_ms));
        }
        if self.reserved {
            actions.extend(self.release(reason.clone(), at_ms));
        }
        self.payment = None;
        self.enter(
            Stage::Cancelled {
                reason: reason.clone(),
            },
            at_ms,
        );
        actions.push(Action::OrderCancelled { reason });
        actions
    }

    fn release(&mut self, reason: String, at_ms: i64) -> Vec<Action> {
        if self.released {
            return Vec::new();
        }
        self.released = true;
        self.record(RELEASE, "requested", at_ms, None);
        vec![Action::ReleaseInventory { reason }]
    }

    fn refund(&mut self, reason: String, at_ms: i64) -> Vec<Action> {
        if self.refunded {
            return Vec::new();
        }
        self.refunded = true;
        self.record(REFUND, "requested", at_ms, None);
        vec![Action::RefundPayment { reason }]
    }

    fn cancel_shipment(&mut self, reason: String, at_ms: i64) -> Vec<Action> {
        if self.shipment_cancelled {
            return Vec::new();
        }
        self.shipment_cancelled = true;
        self.record(CANCEL_SHIPMENT, "requested", at_ms, None);
        vec![Action::CancelShipment { reason }]
    }

    fn enter(&mut self, stage: Stage, at_ms: i64) {
        self.deadline_ms = stage
            .step()
            .map(|_| at_ms.saturating_add(self.step_timeout_ms));
        self.stage = stage;
    }

    fn record(&mut self, name: &str, status: &str, at_ms: i64, detail: Option<String>) {
        self.steps.push(Step {
            name: name.to_string(),
            status: status.to_string(),
            at: rfc3339(at_ms),
            detail,
        });
    }
}
