//! notification: messages to customers from identity, order, payment and shipping events;
//! its worker hands them to the recording sink outside the state machine.

use super::{ServiceEngine, Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::notification::routes::NotificationApi;
use commerce_services::notification::{self, NotificationService};
use commerce_services::platform::record_signature::RecordKeys;
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path, keys: &RecordKeys) -> anyhow::Result<(Arc<NotificationService>, Wired)> {
    let service = NotificationService::open(dir)
        .with_context(|| format!("cannot open the notification service in {}", dir.display()))?;
    // The recording sink's records are an engine of their own (`service.sink.engine()`, no
    // outbox): in a cluster it joins a Raft group like the service's engine, so every node
    // delivers into the same records.
    let engine = service.engine.clone();
    let consumer = consumer(
        engine,
        notification::consumers::NotificationSubscriber,
        keys,
    );
    let worker_service = service.clone();
    let worker: Task =
        Arc::new(move |_log, stopped| tokio::spawn(worker_service.worker().run(stopped)));
    // The leader stores the default templates if some are missing.
    let seed_service = service.clone();
    let seed: Task = Arc::new(move |_log, _stopped| {
        let service = seed_service.clone();
        tokio::spawn(async move {
            if let Err(error) = service.seed_templates().await {
                tracing::warn!(%error, "cannot seed the notification templates");
            }
        })
    });
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "notification",
        mount: Some(mount(
            "/api/notifications",
            service.router(),
            NotificationApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: Some(notification::PRODUCER_ID),
        tasks: vec![consumer, worker, seed],
    };
    Ok((service, wired))
}
