//! notification: messages to customers from identity, order, payment and shipping events;
//! its worker hands them to the recording sink outside the state machine.

use super::{Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::notification::routes::NotificationApi;
use commerce_services::notification::{self, NotificationService};
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<NotificationService>, Wired)> {
    let service = NotificationService::open(dir)
        .with_context(|| format!("cannot open the notification service in {}", dir.display()))?;
    // The recording sink's records are an engine of their own (`service.sink.engine()`, no
    // outbox): in a cluster it joins a Raft group like the service's engine, so every node
    // delivers into the same records.
    let engine = service.engine.clone();
    let consumer = consumer(engine, notification::consumers::NotificationSubscriber);
    let worker = service.worker();
    let worker: Task = Box::new(move |_log, stopped| tokio::spawn(worker.run(stopped)));
    let store = service.engine.store().clone();
    let wired = Wired {
        name: "notification",
        mount: Some(mount(
            "/api/notifications",
            service.router(),
            NotificationApi::openapi(),
            &store,
        )),
        store,
        relay: Some((notification::PRODUCER_ID, service.engine.outbox_signal())),
        tasks: vec![consumer, worker],
    };
    Ok((service, wired))
}
