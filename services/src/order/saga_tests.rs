//! The saga's transitions, one behaviour per test: the happy path, each failure's
//! compensation, timeouts, customer cancel, late successes, and replies that do not fit.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::model::OrderStatus;
use super::saga::{Action, NotCancellable, Reply, Saga, Stage};
use crate::platform::card::CardPayment;

const TIMEOUT: i64 = 1_000;

fn card() -> CardPayment {
    CardPayment {
        token: "tok_test".to_string(),
        card_last4: "4242".to_string(),
    }
}

fn started() -> Saga {
    let (saga, actions) = Saga::start(0, TIMEOUT, card());
    assert_eq!(actions, vec![Action::ReserveInventory]);
    saga
}

fn reserved() -> Saga {
    let mut saga = started();
    let actions = saga.on_reply(&Reply::InventoryReserved, 10).unwrap();
    assert_eq!(actions, vec![Action::ProcessPayment { payment: card() }]);
    saga
}

fn paid() -> Saga {
    let mut saga = reserved();
    let reply = Reply::PaymentProcessed {
        payment_id: "pay-1".into(),
    };
    assert_eq!(
        saga.on_reply(&reply, 20).unwrap(),
        vec![Action::CreateShipment]
    );
    saga
}

fn shipment_created() -> Reply {
    Reply::ShipmentCreated {
        shipment_id: "ship-1".into(),
        tracking_number: "TRK1".into(),
    }
}

fn confirmed() -> Saga {
    let mut saga = paid();
    assert_eq!(
        saga.on_reply(&shipment_created(), 30).unwrap(),
        vec![Action::ConfirmReservation, Action::OrderConfirmed]
    );
    saga
}

fn cancelled(reason: &str) -> Action {
    Action::OrderCancelled {
        reason: reason.to_string(),
    }
}

fn release(reason: &str) -> Action {
    Action::ReleaseInventory {
        reason: reason.to_string(),
    }
}

fn refund(reason: &str) -> Action {
    Action::RefundPayment {
        reason: reason.to_string(),
    }
}

fn timeline(saga: &Saga) -> Vec<(String, String)> {
    saga.steps
        .iter()
        .map(|step| (step.name.clone(), step.status.clone()))
        .collect()
}

fn pairs(steps: &[(&str, &str)]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|(name, status)| (name.to_string(), status.to_string()))
        .collect()
}

#[test]
fn happy_path_reserves_pays_ships_confirms_commits_and_completes() {
    let mut saga = confirmed();
    assert_eq!(saga.status(), OrderStatus::Confirmed);
    assert_eq!(saga.tracking_number.as_deref(), Some("TRK1"));
    assert_eq!(
        saga.payment, None,
        "the card's token is forgotten once paid"
    );
    assert_eq!(
        saga.deadline_ms, None,
        "waiting on the carrier never times out"
    );
    assert_eq!(
        saga.on_reply(&Reply::ShipmentDispatched, 40).unwrap(),
        vec![Action::CommitInventory]
    );
    assert_eq!(saga.status(), OrderStatus::Confirmed);
    assert_eq!(
        saga.on_reply(&Reply::InventoryCommitted, 45).unwrap(),
        vec![]
    );
    assert_eq!(
        saga.on_reply(&Reply::ShipmentDelivered, 50).unwrap(),
        vec![Action::OrderCompleted]
    );
    assert_eq!(saga.stage, Stage::Completed);
    assert_eq!(
        timeline(&saga),
        pairs(&[
            ("reserve_inventory", "requested"),
            ("reserve_inventory", "succeeded"),
            ("process_payment", "requested"),
            ("process_payment", "succeeded"),
            ("create_shipment", "requested"),
            ("create_shipment", "succeeded"),
            ("confirm_reservation", "requested"),
            ("dispatch_shipment", "succeeded"),
            ("commit_inventory", "requested"),
            ("commit_inventory", "succeeded"),
            ("deliver_shipment", "succeeded"),
        ])
    );
    assert_eq!(saga.steps[1].at, "1970-01-01T00:00:00.010Z");
}

#[test]
fn each_step_restarts_the_deadline() {
    let saga = started();
    assert_eq!(saga.deadline_ms, Some(TIMEOUT));
    let saga = reserved();
    assert_eq!(saga.deadline_ms, Some(10 + TIMEOUT));
    let saga = paid();
    assert_eq!(saga.deadline_ms, Some(20 + TIMEOUT));
}

#[test]
fn a_failed_reservation_cancels_with_nothing_to_undo() {
    let mut saga = started();
    let reply = Reply::InventoryReservationFailed {
        reason: "insufficient_stock".into(),
    };
    assert_eq!(
        saga.on_reply(&reply, 5).unwrap(),
        vec![cancelled("insufficient_stock")]
    );
    assert_eq!(saga.status(), OrderStatus::Cancelled);
    assert_eq!(saga.cancel_reason(), Some("insufficient_stock"));
    assert_eq!(saga.deadline_ms, None);
    assert_eq!(saga.payment, None);
}

#[test]
fn a_failed_payment_releases_the_reservation() {
    let mut saga = reserved();
    let reply = Reply::PaymentFailed {
        reason: "card_declined".into(),
    };
    assert_eq!(
        saga.on_reply(&reply, 20).unwrap(),
        vec![release("payment_failed"), cancelled("payment_failed")]
    );
    assert_eq!(saga.steps[3].detail.as_deref(), Some("card_declined"));
    // The release's answer lands on the timeline; nothing else happens.
    assert_eq!(
        saga.on_reply(&Reply::InventoryReleased, 30).unwrap(),
        vec![]
    );
    assert_eq!(saga.steps.last().unwrap().status, "succeeded");
}

#[test]
fn a_failed_shipment_refunds_and_releases() {
    let mut saga = paid();
    let reply = Reply::ShipmentFailed {
        reason: "undeliverable".into(),
    };
    assert_eq!(
        saga.on_reply(&reply, 30).unwrap(),
        vec![
            refund("shipment_failed"),
            release("shipment_failed"),
            cancelled("shipment_failed")
        ]
    );
}

#[test]
fn a_timeout_fails_the_running_step_like_a_failure() {
    let mut saga = started();
    assert_eq!(saga.on_tick(TIMEOUT - 1), None, "not yet due");
    assert_eq!(
        saga.on_tick(TIMEOUT).unwrap(),
        vec![cancelled("timeout:reserve_inventory")]
    );
    assert_eq!(
        saga.on_tick(TIMEOUT * 5),
        None,
        "a cancelled saga has no deadline"
    );

    let mut saga = reserved();
    assert_eq!(
        saga.on_tick(10 + TIMEOUT).unwrap(),
        vec![
            release("timeout:process_payment"),
            cancelled("timeout:process_payment")
        ]
    );

    let mut saga = paid();
    assert_eq!(
        saga.on_tick(20 + TIMEOUT).unwrap(),
        vec![
            refund("timeout:create_shipment"),
            release("timeout:create_shipment"),
            cancelled("timeout:create_shipment")
        ]
    );
    assert_eq!(confirmed().on_tick(i64::MAX), None);
}

#[test]
fn late_successes_after_a_cancel_are_undone_once() {
    // Reservation timed out, then the reservation arrives: release it, once.
    let mut saga = started();
    saga.on_tick(TIMEOUT).unwrap();
    assert_eq!(
        saga.on_reply(&Reply::InventoryReserved, TIMEOUT + 1)
            .unwrap(),
        vec![release("timeout:reserve_inventory")]
    );
    assert_eq!(saga.on_reply(&Reply::InventoryReserved, TIMEOUT + 2), None);
    assert_eq!(saga.status(), OrderStatus::Cancelled);

    // Payment timed out, then it went through: refund it, once.
    let mut saga = reserved();
    saga.on_tick(10 + TIMEOUT).unwrap();
    let processed = Reply::PaymentProcessed {
        payment_id: "pay-9".into(),
    };
    assert_eq!(
        saga.on_reply(&processed, 2_000).unwrap(),
        vec![refund("timeout:process_payment")]
    );
    assert_eq!(saga.on_reply(&processed, 2_001), None);

    // Shipment timed out, then it was created: cancel it, once.
    let mut saga = paid();
    saga.on_tick(20 + TIMEOUT).unwrap();
    assert_eq!(
        saga.on_reply(&shipment_created(), 2_000).unwrap(),
        vec![Action::CancelShipment {
            reason: "timeout:create_shipment".into()
        }]
    );
    assert_eq!(saga.on_reply(&shipment_created(), 2_001), None);
}

#[test]
fn a_late_reservation_after_a_release_is_not_released_twice() {
    let mut saga = reserved();
    saga.on_reply(
        &Reply::PaymentFailed {
            reason: "card_declined".into(),
        },
        20,
    )
    .unwrap();
    assert_eq!(saga.on_reply(&Reply::InventoryReserved, 30), None);
}

#[test]
fn replies_that_do_not_fit_the_step_change_nothing() {
    let mut saga = started();
    let before = saga.clone();
    for reply in [
        Reply::PaymentProcessed {
            payment_id: "pay".into(),
        },
        shipment_created(),
        Reply::ShipmentDispatched,
        Reply::ShipmentDelivered,
        Reply::InventoryReleased,
        Reply::RefundProcessed,
    ] {
        assert_eq!(saga.on_reply(&reply, 5), None, "{reply:?}");
    }
    assert_eq!(saga, before);

    // A duplicate success after the step moved on.
    let mut saga = paid();
    assert_eq!(saga.on_reply(&Reply::InventoryReserved, 40), None);
    let mut saga = confirmed();
    assert_eq!(
        saga.on_reply(
            &Reply::PaymentFailed {
                reason: "card_declined".into()
            },
            40
        ),
        None
    );
}

#[test]
fn customer_cancel_undoes_what_was_done_at_each_step() {
    let mut saga = started();
    assert_eq!(
        saga.cancel(1).unwrap(),
        vec![cancelled("customer_cancelled")]
    );

    let mut saga = reserved();
    assert_eq!(
        saga.cancel(11).unwrap(),
        vec![
            release("customer_cancelled"),
            cancelled("customer_cancelled")
        ]
    );

    let mut saga = paid();
    assert_eq!(
        saga.cancel(21).unwrap(),
        vec![
            refund("customer_cancelled"),
            release("customer_cancelled"),
            cancelled("customer_cancelled")
        ]
    );

    let mut saga = confirmed();
    assert_eq!(
        saga.cancel(31).unwrap(),
        vec![
            Action::CancelShipment {
                reason: "customer_cancelled".into()
            },
            refund("customer_cancelled"),
            release("customer_cancelled"),
            cancelled("customer_cancelled")
        ]
    );
    assert_eq!(saga.cancel_reason(), Some("customer_cancelled"));
    assert_eq!(
        saga.steps
            .iter()
            .filter(|s| s.name == "cancel_order")
            .count(),
        1
    );
}

#[test]
fn no_cancel_after_dispatch_or_twice() {
    let mut saga = confirmed();
    saga.on_reply(&Reply::ShipmentDispatched, 40).unwrap();
    assert_eq!(saga.cancel(41), Err(NotCancellable(OrderStatus::Confirmed)));
    let mut saga = started();
    saga.cancel(1).unwrap();
    assert_eq!(saga.cancel(2), Err(NotCancellable(OrderStatus::Cancelled)));
}

#[test]
fn a_delivery_without_a_seen_dispatch_still_commits_the_stock() {
    let mut saga = confirmed();
    assert_eq!(
        saga.on_reply(&Reply::ShipmentDelivered, 50).unwrap(),
        vec![Action::CommitInventory, Action::OrderCompleted]
    );
}
