//! Payment's state transitions on a real store, with the worker and the test provider:
//! pending -> captured / failed, a replayed command charging nothing, refunds once, the
//! card's token dropped once the charge is answered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::PaymentService;
use super::apply::{BY_ORDER, PAYMENTS, PENDING};
use super::commands::Command;
use super::model::{DeclineReason, Payment, PaymentStatus};
use crate::platform::Money;
use crate::platform::engine::CommandContext;
use crate::platform::envelope::derived_id;
use crate::platform::{ReadTx, StoreError};
use std::sync::Arc;

/// ProcessPayment as the saga sends it: the card by its token (see [`vault_test_cards`]).
fn process(order: &str, card: &str) -> Command {
    let key = format!("order:{order}");
    let last4 = &card[card.len() - 4..];
    Command::Process {
        payment_id: derived_id(&["payment", &key]),
        order_id: order.to_string(),
        customer_id: "cust-1".to_string(),
        amount: Money {
            amount: 2500,
            currency: "USD".to_string(),
        },
        payment_token: format!("tok_{last4}"),
        card_last4: last4.to_string(),
        idempotency_key: key,
    }
}

fn refund(order: &str, key: &str) -> Command {
    Command::Refund {
        order_id: order.to_string(),
        refund_id: derived_id(&["refund", key]),
        reason: "shipment_failed".to_string(),
    }
}

/// Tokenizes the test cards as the edge would, each under `tok_<last four digits>`.
async fn vault_test_cards(service: &PaymentService) {
    use super::card_vault::VaultedCard;
    use super::provider_ledger::{LedgerCommand, decide};
    for card in ["4242424242424242", "4000000000000002", "4000000000009995"] {
        let number = crate::platform::card::CardNumber::parse(card).unwrap();
        let command = LedgerCommand::Vault {
            token: format!("tok_{}", number.last4()),
            card: VaultedCard {
                brand: number.brand(),
                last4: number.last4(),
                fingerprint: String::new(),
                decline: decide(&number).err(),
            },
        };
        let engine = service.provider.engine();
        engine
            .submit(command, CommandContext::default())
            .await
            .unwrap()
            .unwrap();
    }
}

async fn submit(service: &Arc<PaymentService>, command: Command) {
    service
        .engine
        .submit(command, CommandContext::default())
        .await
        .unwrap()
        .unwrap();
}

fn payment(service: &PaymentService, order: &str) -> Payment {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let id = BY_ORDER.get(store, order).unwrap().unwrap();
    PAYMENTS.get(store, &id).unwrap().unwrap()
}

fn event_types(service: &PaymentService) -> Vec<String> {
    service
        .engine
        .store()
        .outbox_pending(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, entry)| entry.event.event_type)
        .collect()
}

async fn work(service: &PaymentService) -> Result<usize, StoreError> {
    Ok(service.worker().work_once().await.unwrap())
}

#[tokio::test]
async fn good_card_is_captured_once_and_its_token_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let service = PaymentService::open(dir.path()).unwrap();
    let raft = crate::platform::testing::single_node(dir.path()).await;
    crate::platform::testing::attach(&raft, &service.engine).await;
    crate::platform::testing::attach(&raft, service.provider.engine()).await;
    vault_test_cards(&service).await;
    submit(&service, process("o1", "4242424242424242")).await;
    let pending = payment(&service, "o1");
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(pending.payment_token.as_deref(), Some("tok_4242"));
    assert_eq!(event_types(&service), ["PaymentInitiated"]);

    assert_eq!(work(&service).await.unwrap(), 1);
    let captured = payment(&service, "o1");
    assert_eq!(captured.status, PaymentStatus::Captured);
    assert_eq!(
        captured.payment_token, None,
        "the token is dropped once answered"
    );
    assert_eq!(captured.card_last4, "4242");
    assert_eq!(
        event_types(&service),
        ["PaymentInitiated", "PaymentProcessed"]
    );
    let store: &dyn ReadTx = service.engine.store().as_ref();
    assert!(PENDING.scan(store).unwrap().is_empty());

    // The same command again (a replay): nothing new, nothing charged.
    submit(&service, process("o1", "4242424242424242")).await;
    assert_eq!(work(&service).await.unwrap(), 0);
    assert_eq!(
        event_types(&service),
        ["PaymentInitiated", "PaymentProcessed"]
    );
    assert_eq!(service.provider.charges_for("o1").unwrap().len(), 1);
}

#[tokio::test]
async fn declined_cards_fail_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let service = PaymentService::open(dir.path()).unwrap();
    let raft = crate::platform::testing::single_node(dir.path()).await;
    crate::platform::testing::attach(&raft, &service.engine).await;
    crate::platform::testing::attach(&raft, service.provider.engine()).await;
    vault_test_cards(&service).await;
    for (order, card, reason) in [
        ("o2", "4000000000000002", DeclineReason::CardDeclined),
        ("o3", "4000000000009995", DeclineReason::InsufficientFunds),
        ("o4", "1234567890", DeclineReason::InvalidCard),
    ] {
        submit(&service, process(order, card)).await;
        work(&service).await.unwrap();
        let failed = payment(&service, order);
        assert_eq!(failed.status, PaymentStatus::Failed, "{order}");
        assert_eq!(failed.failure_reason, Some(reason));
        assert_eq!(failed.payment_token, None);
        assert!(service.provider.charges_for(order).unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_refund_is_made_once_per_order() {
    let dir = tempfile::tempdir().unwrap();
    let service = PaymentService::open(dir.path()).unwrap();
    let raft = crate::platform::testing::single_node(dir.path()).await;
    crate::platform::testing::attach(&raft, &service.engine).await;
    crate::platform::testing::attach(&raft, service.provider.engine()).await;
    vault_test_cards(&service).await;
    submit(&service, process("o5", "4242424242424242")).await;
    work(&service).await.unwrap();
    submit(&service, refund("o5", "refund:o5")).await;
    submit(&service, refund("o5", "refund:o5-again")).await;
    assert_eq!(work(&service).await.unwrap(), 1);
    let refunded = payment(&service, "o5");
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(refunded.refunds.len(), 1);
    let types = event_types(&service);
    assert_eq!(types.iter().filter(|t| *t == "RefundProcessed").count(), 1);
    assert_eq!(
        service.provider.charges_for("o5").unwrap()[0].refunded,
        2500
    );
}

#[tokio::test]
async fn a_refund_asked_while_pending_follows_the_capture_and_none_follows_a_decline() {
    let dir = tempfile::tempdir().unwrap();
    let service = PaymentService::open(dir.path()).unwrap();
    let raft = crate::platform::testing::single_node(dir.path()).await;
    crate::platform::testing::attach(&raft, &service.engine).await;
    crate::platform::testing::attach(&raft, service.provider.engine()).await;
    vault_test_cards(&service).await;
    submit(&service, process("o6", "4242424242424242")).await;
    submit(&service, refund("o6", "refund:o6")).await;
    submit(&service, process("o7", "4000000000000002")).await;
    submit(&service, refund("o7", "refund:o7")).await;
    submit(&service, refund("unknown-order", "refund:x")).await;
    while work(&service).await.unwrap() > 0 {}
    assert_eq!(payment(&service, "o6").status, PaymentStatus::Refunded);
    assert_eq!(payment(&service, "o7").status, PaymentStatus::Failed);
    assert!(payment(&service, "o7").refunds.is_empty());
}
