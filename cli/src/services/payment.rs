//! payment: charges and refunds through the built-in test provider, answering the saga's
//! commands; its worker calls the provider outside the state machine.

use super::{ServiceEngine, Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::payment::routes::PaymentApi;
use commerce_services::payment::{self, PaymentService};
use commerce_services::platform::record_signature::RecordKeys;
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path, keys: &RecordKeys) -> anyhow::Result<(Arc<PaymentService>, Wired)> {
    let service = PaymentService::open(dir)
        .with_context(|| format!("cannot open the payment service in {}", dir.display()))?;
    // The test provider's books are an engine of their own (`service.provider.engine()`, no
    // outbox): in a cluster it joins a Raft group like the service's engine, so every node
    // charges into the same books.
    let engine = service.engine.clone();
    let consumer = consumer(engine, payment::consumers::PaymentSubscriber, keys);
    let worker_service = service.clone();
    let worker: Task =
        Arc::new(move |_log, stopped| tokio::spawn(worker_service.worker().run(stopped)));
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "payment",
        mount: Some(mount(
            "/api/payments",
            service.router(),
            PaymentApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: Some(payment::PRODUCER_ID),
        tasks: vec![consumer, worker],
    };
    Ok((service, wired))
}
