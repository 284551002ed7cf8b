//! Notification's state machine with the worker and the recording sink: one message per
//! channel with the variables filled, a redelivered event notifying once, a channel without
//! an address failing with `no_address`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::NotificationService;
use super::apply::{NOTIFICATIONS, PENDING};
use super::commands::Command;
use super::model::{Channel, Contact, Content, DeliveryStatus};
use crate::platform::engine::{Applied, CommandContext};
use std::collections::BTreeMap;

fn notify(event_id: &str, template: &str, variables: &[(&str, &str)]) -> (Command, CommandContext) {
    let command = Command::Notify {
        id_base: format!("n-{event_id}"),
        template: template.to_string(),
        recipient_id: "u1".to_string(),
        variables: variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        contact: (template == "welcome").then(|| Contact {
            user_id: "u1".to_string(),
            email: "u1@example.com".to_string(),
            name: "Una".to_string(),
        }),
    };
    let context = CommandContext {
        consumed_event: Some(event_id.to_string()),
        ..CommandContext::default()
    };
    (command, context)
}

#[tokio::test]
async fn each_event_notifies_once_per_channel_with_its_variables() {
    let dir = tempfile::tempdir().unwrap();
    let service = NotificationService::open(dir.path()).unwrap();
    let raft = crate::platform::testing::single_node(dir.path()).await;
    crate::platform::testing::attach(&raft, &service.engine).await;
    crate::platform::testing::attach(&raft, service.sink.engine()).await;
    service.seed_templates().await.unwrap();
    let (command, context) = notify("ev-1", "welcome", &[("email", "u1@example.com")]);
    service
        .engine
        .submit_consumed(command, context)
        .await
        .unwrap();
    let (command, context) = notify(
        "ev-2",
        "payment_received",
        &[("order_id", "o-9"), ("amount", "1.50 USD")],
    );
    service
        .engine
        .submit_consumed(command.clone(), context.clone())
        .await
        .unwrap();
    let again = service
        .engine
        .submit_consumed(command, context)
        .await
        .unwrap();
    assert!(matches!(again, Applied::AlreadyApplied));

    assert_eq!(service.worker().work_once().await.unwrap(), 2);
    let store = service.engine.store().as_ref();
    let all = NOTIFICATIONS.scan_prefix(store, "u1/").unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|n| n.status == DeliveryStatus::Sent));
    let paid = all
        .iter()
        .find(|n| n.template == "payment_received")
        .unwrap();
    assert_eq!(paid.subject, "Payment received for order o-9");
    assert!(
        paid.body.starts_with("Hello Una, we received 1.50 USD"),
        "{}",
        paid.body
    );
    assert!(PENDING.scan(store).unwrap().is_empty());
    assert_eq!(service.sink.len(), 2);
}

#[tokio::test]
async fn a_channel_without_an_address_fails_with_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let service = NotificationService::open(dir.path()).unwrap();
    let raft = crate::platform::testing::single_node(dir.path()).await;
    crate::platform::testing::attach(&raft, &service.engine).await;
    crate::platform::testing::attach(&raft, service.sink.engine()).await;
    service.seed_templates().await.unwrap();
    let channels = BTreeMap::from([(
        Channel::Sms,
        Content {
            subject: "Hi".to_string(),
            body: "Hi {{name}}".to_string(),
        },
    )]);
    let put = Command::PutTemplate {
        name: "welcome".to_string(),
        channels,
    };
    service
        .engine
        .submit(put, CommandContext::default())
        .await
        .unwrap()
        .unwrap();
    let (command, context) = notify("ev-3", "welcome", &[]);
    service
        .engine
        .submit_consumed(command, context)
        .await
        .unwrap();
    service.worker().work_once().await.unwrap();
    let store = service.engine.store().as_ref();
    let all = NOTIFICATIONS.scan_prefix(store, "u1/").unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, DeliveryStatus::Failed);
    assert_eq!(all[0].failure_reason.as_deref(), Some("no_address"));
    assert!(service.sink.is_empty());
}
