//! catalog: products, and its read model of identity's users.

use super::{ServiceEngine, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::catalog::routes::CatalogApi;
use commerce_services::catalog::{self, CatalogService};
use commerce_services::platform::record_signature::RecordKeys;
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path, keys: &RecordKeys) -> anyhow::Result<(Arc<CatalogService>, Wired)> {
    let service = CatalogService::open(dir)
        .with_context(|| format!("cannot open the catalog service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, catalog::consumers::CatalogSubscriber, keys);
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "catalog",
        mount: Some(mount(
            "/api/catalog",
            service.router(),
            CatalogApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: Some(catalog::PRODUCER_ID),
        tasks: vec![consumer],
    };
    Ok((service, wired))
}
