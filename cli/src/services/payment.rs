//! payment: charges and refunds through the built-in test provider, answering the saga's
//! commands; its worker calls the provider outside the state machine.

use super::{Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::payment::routes::PaymentApi;
use commerce_services::payment::{self, PaymentService};
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<PaymentService>, Wired)> {
    let service = PaymentService::open(dir)
        .with_context(|| format!("cannot open the payment service in {}", dir.display()))?;
    // The test provider's books are an engine of their own (`service.provider.engine()`, no
    // outbox): in a cluster it joins a Raft group like the service's engine, so every node
    // charges into the same books.
    let engine = service.engine.clone();
    let consumer = consumer(engine, payment::consumers::PaymentSubscriber);
    let worker = service.worker();
    let worker: Task = Box::new(move |_log, stopped| tokio::spawn(worker.run(stopped)));
    let store = service.engine.store().clone();
    let wired = Wired {
        name: "payment",
        mount: Some(mount(
            "/api/payments",
            service.router(),
            PaymentApi::openapi(),
            &store,
        )),
        store,
        relay: Some((payment::PRODUCER_ID, service.engine.outbox_signal())),
        tasks: vec![consumer, worker],
    };
    Ok((service, wired))
}
