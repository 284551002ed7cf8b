//! inventory: stock, reservations for the order saga, and the reservation expiry worker.

use super::{ServiceEngine, Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::inventory::routes::InventoryApi;
use commerce_services::inventory::{self, InventoryService};
use commerce_services::platform::record_signature::RecordKeys;
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path, keys: &RecordKeys) -> anyhow::Result<(Arc<InventoryService>, Wired)> {
    let service = InventoryService::open(dir)
        .with_context(|| format!("cannot open the inventory service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, inventory::consumers::InventorySubscriber, keys);
    let expiry_service = service.clone();
    let expiry: Task = Arc::new(move |_log, stopped| {
        tokio::spawn(inventory::expiry::run(expiry_service.clone(), stopped))
    });
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "inventory",
        mount: Some(mount(
            "/api/inventory",
            service.router(),
            InventoryApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: Some(inventory::PRODUCER_ID),
        tasks: vec![consumer, expiry],
    };
    Ok((service, wired))
}
