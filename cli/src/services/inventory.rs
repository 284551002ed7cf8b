//! inventory: stock, reservations for the order saga, and the reservation expiry worker.

use super::{Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::inventory::routes::InventoryApi;
use commerce_services::inventory::{self, InventoryService};
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<InventoryService>, Wired)> {
    let service = InventoryService::open(dir)
        .with_context(|| format!("cannot open the inventory service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, inventory::consumers::InventorySubscriber);
    let expiry_service = service.clone();
    let expiry: Task = Box::new(move |_log, stopped| {
        tokio::spawn(inventory::expiry::run(expiry_service, stopped))
    });
    let store = service.engine.store().clone();
    let wired = Wired {
        name: "inventory",
        mount: Some(mount(
            "/api/inventory",
            service.router(),
            InventoryApi::openapi(),
            &store,
        )),
        store,
        relay: Some((inventory::PRODUCER_ID, service.engine.outbox_signal())),
        tasks: vec![consumer, expiry],
    };
    Ok((service, wired))
}
