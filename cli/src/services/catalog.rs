//! catalog: products, and its read model of identity's users.

use super::{Wired, consumer, mount};
use anyhow::Context;
use commerce_services::catalog::routes::CatalogApi;
use commerce_services::catalog::{self, CatalogService};
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<CatalogService>, Wired)> {
    let service = CatalogService::open(dir)
        .with_context(|| format!("cannot open the catalog service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, catalog::consumers::CatalogSubscriber);
    let store = service.engine.store().clone();
    let wired = Wired {
        name: "catalog",
        mount: Some(mount(
            "/api/catalog",
            service.router(),
            CatalogApi::openapi(),
            &store,
        )),
        store,
        relay: Some((catalog::PRODUCER_ID, service.engine.outbox_signal())),
        tasks: vec![consumer],
    };
    Ok((service, wired))
}
