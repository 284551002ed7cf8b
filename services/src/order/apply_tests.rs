//! The order state machine on a real store: what one apply writes and emits, the clock's
//! index of open steps, and answers that must change nothing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::apply::{OPEN_STEPS, ORDERS, Orders};
use super::commands::{Command, NewOrder};
use super::model::{Address, Money, OrderLine, OrderStatus, ShippingMethod};
use super::placement::Placement;
use super::saga::Reply;
use crate::platform::card::CardPayment;
use crate::platform::engine::CommandContext;
use crate::platform::error::RejectionKind;
use crate::platform::testing::Standalone;
use crate::platform::{Engine, ReadTx, Store};
use std::sync::Arc;

const TIMEOUT_MS: i64 = 30_000;

fn engine(dir: &tempfile::TempDir) -> Standalone<Orders> {
    let store = Arc::new(Store::open(dir.path()).unwrap());
    Standalone::open(dir.path(), store, Orders)
}

fn new_order(id: &str) -> NewOrder {
    let price = Money {
        amount: 500,
        currency: "USD".into(),
    };
    NewOrder {
        id: id.into(),
        customer_id: "customer-1".into(),
        lines: vec![OrderLine {
            product_id: "p1".into(),
            sku: "SKU-1".into(),
            name: "Mug".into(),
            quantity: 2,
            unit_price: price.clone(),
            line_total: Money {
                amount: 1000,
                currency: "USD".into(),
            },
            weight_grams: 250,
        }],
        total: Money {
            amount: 1000,
            currency: "USD".into(),
        },
        shipping_address: Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        },
        shipping_method: ShippingMethod::Standard,
        payment: CardPayment {
            token: "tok_test".into(),
            card_last4: "4242".into(),
        },
        placement: None,
        step_timeout_ms: TIMEOUT_MS,
    }
}

fn context() -> CommandContext {
    CommandContext {
        correlation_id: "corr-1".into(),
        ..Default::default()
    }
}

/// (topic, type) of every event waiting in the outbox.
fn outbox(engine: &Engine<Orders>) -> Vec<(String, String)> {
    engine
        .store()
        .outbox_pending(1000)
        .unwrap()
        .into_iter()
        .map(|(_, entry)| (entry.topic, entry.event.event_type))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn placing_stores_the_order_and_emits_created_and_reserve_together() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = engine(&dir);
    let engine = &standalone.engine;
    let order = engine
        .submit_blocking(Command::Place(Box::new(new_order("o1"))), context())
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(order.saga.status(), OrderStatus::Pending);
    assert_eq!(
        outbox(engine),
        pairs(&[
            ("order-events", "OrderCreated"),
            ("inventory-commands", "ReserveInventory")
        ])
    );
    let store: &dyn ReadTx = engine.store().as_ref();
    let open = OPEN_STEPS.get(store, "o1").unwrap().unwrap();
    assert_eq!(open.deadline_ms, order.created_at_ms + TIMEOUT_MS);
    // The same id again is refused and writes nothing.
    let again = engine
        .submit_blocking(Command::Place(Box::new(new_order("o1"))), context())
        .unwrap();
    assert_eq!(again.unwrap_err().code, "order_exists");
    assert_eq!(outbox(engine).len(), 2);
}

#[test]
fn a_tick_past_the_deadline_cancels_and_leaves_the_clock_index() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = engine(&dir);
    let engine = &standalone.engine;
    let order = engine
        .submit_blocking(Command::Place(Box::new(new_order("o1"))), context())
        .unwrap()
        .unwrap()
        .unwrap();
    let deadline = order.created_at_ms + TIMEOUT_MS;
    let early = Command::Tick {
        now_ms: deadline - 1,
    };
    engine.submit_blocking(early, context()).unwrap().unwrap();
    let store: &dyn ReadTx = engine.store().as_ref();
    assert_eq!(
        ORDERS.get(store, "o1").unwrap().unwrap().saga.status(),
        OrderStatus::Pending
    );
    let due = Command::Tick { now_ms: deadline };
    engine.submit_blocking(due, context()).unwrap().unwrap();
    let order = ORDERS.get(store, "o1").unwrap().unwrap();
    assert_eq!(
        order.saga.cancel_reason(),
        Some("timeout:reserve_inventory")
    );
    assert!(OPEN_STEPS.get(store, "o1").unwrap().is_none());
    let events = outbox(engine);
    assert_eq!(
        events.last().unwrap(),
        &("order-events".to_string(), "OrderCancelled".to_string())
    );
    // The cancel event carries the order's own correlation id, not the tick's.
    let pending = engine.store().outbox_pending(1000).unwrap();
    assert!(
        pending
            .iter()
            .all(|(_, entry)| entry.event.correlation_id == "corr-1")
    );
}

#[test]
fn replies_for_unknown_orders_or_the_wrong_step_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = engine(&dir);
    let engine = &standalone.engine;
    engine
        .submit_blocking(Command::Place(Box::new(new_order("o1"))), context())
        .unwrap()
        .unwrap();
    let unknown = Command::Reply {
        order_id: "nobody".into(),
        reply: Reply::InventoryReserved,
    };
    assert!(
        engine
            .submit_blocking(unknown, context())
            .unwrap()
            .unwrap()
            .is_none()
    );
    let misplaced = Command::Reply {
        order_id: "o1".into(),
        reply: Reply::ShipmentDispatched,
    };
    assert!(
        engine
            .submit_blocking(misplaced, context())
            .unwrap()
            .unwrap()
            .is_none()
    );
    assert_eq!(outbox(engine).len(), 2);

    let reserved = Command::Reply {
        order_id: "o1".into(),
        reply: Reply::InventoryReserved,
    };
    let order = engine
        .submit_blocking(reserved, context())
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(order.saga.steps.len(), 3);
    assert_eq!(
        outbox(engine).last().unwrap(),
        &("payment-commands".to_string(), "ProcessPayment".to_string())
    );
}

#[test]
fn cancelling_twice_is_an_invalid_state() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = engine(&dir);
    let engine = &standalone.engine;
    engine
        .submit_blocking(Command::Place(Box::new(new_order("o1"))), context())
        .unwrap()
        .unwrap();
    let cancel = || Command::Cancel {
        order_id: "o1".into(),
    };
    let order = engine
        .submit_blocking(cancel(), context())
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(order.saga.cancel_reason(), Some("customer_cancelled"));
    let again = engine.submit_blocking(cancel(), context()).unwrap();
    assert_eq!(again.unwrap_err().code, "invalid_state");
    let missing = Command::Cancel {
        order_id: "nobody".into(),
    };
    let missing = engine.submit_blocking(missing, context()).unwrap();
    assert_eq!(missing.unwrap_err().code, "not_found");
}

fn keyed(id: &str, key: &str, request_fingerprint: &str) -> Command {
    let mut new = new_order(id);
    new.placement = Some(Placement {
        key: key.into(),
        request_fingerprint: request_fingerprint.into(),
    });
    Command::Place(Box::new(new))
}

#[test]
fn a_key_places_one_order_and_answers_it_to_every_retry() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = engine(&dir);
    let engine = &standalone.engine;
    let first = engine
        .submit_blocking(keyed("o1", "k1", "request-a"), context())
        .unwrap()
        .unwrap()
        .unwrap();
    // A retry (here even with another id: an older node's random one) answers the first
    // order and sends nothing.
    let retry = engine
        .submit_blocking(keyed("o2", "k1", "request-a"), context())
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(retry.id, first.id);
    assert_eq!(outbox(engine).len(), 2);
    let store: &dyn ReadTx = engine.store().as_ref();
    assert!(ORDERS.get(store, "o2").unwrap().is_none());
    // The key with another request is refused (422) and changes nothing.
    let other = engine
        .submit_blocking(keyed("o3", "k1", "request-b"), context())
        .unwrap()
        .unwrap_err();
    assert_eq!(other.code, "idempotency_key_reused");
    assert_eq!(other.kind, RejectionKind::Unprocessable);
    assert_eq!(outbox(engine).len(), 2);
    // Another customer's same key is another key.
    let mut theirs = new_order("o4");
    theirs.customer_id = "customer-2".into();
    theirs.placement = Some(Placement {
        key: "k1".into(),
        request_fingerprint: "request-b".into(),
    });
    let placed = engine
        .submit_blocking(Command::Place(Box::new(theirs)), context())
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(placed.id, "o4");
}

#[test]
fn a_journal_entry_from_before_tokenization_is_read_without_its_card_number() {
    // A Place logged by an older version: `card_number`, no token, no key.
    let mut old = serde_json::to_value(Command::Place(Box::new(new_order("o1")))).unwrap();
    let place = old["Place"].as_object_mut().unwrap();
    place.remove("payment");
    place.remove("placement");
    place.insert("card_number".into(), "4242424242424242".into());
    let command: Command = serde_json::from_value(old).unwrap();
    let Command::Place(new) = &command else {
        panic!("a Place");
    };
    assert_eq!(new.payment, CardPayment::default());
    assert!(
        !serde_json::to_string(&command)
            .unwrap()
            .contains("4242424242424242")
    );
}
