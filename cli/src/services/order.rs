//! order: orders and the order saga, pricing from the catalog through the order service's
//! `ProductCatalog` port.

use super::{ServiceEngine, Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::catalog::CatalogService;
use commerce_services::order::routes::OrderApi;
use commerce_services::order::{self, CatalogError, OrderService, ProductCatalog, ProductInfo};
use commerce_services::platform::record_signature::RecordKeys;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

/// The catalog as order sees it: a read of catalog's current product (same node, same
/// process; across nodes this becomes a call to catalog's API).
struct CatalogPort(Arc<CatalogService>);

impl ProductCatalog for CatalogPort {
    fn product(&self, id: &str) -> Result<Option<ProductInfo>, CatalogError> {
        let product = self
            .0
            .product(id)
            .map_err(|error| CatalogError(error.to_string()))?;
        Ok(product.map(|product| ProductInfo {
            id: product.id,
            sku: product.sku,
            name: product.name,
            price: product.price,
            // A product without a weight ships as weightless: the carrier's minimum applies.
            weight_grams: product.weight_grams.unwrap_or(0),
        }))
    }
}

pub fn wire(
    dir: &Path,
    catalog: Arc<CatalogService>,
    step_timeout: Duration,
    keys: &RecordKeys,
) -> anyhow::Result<(Arc<OrderService>, Wired)> {
    let service = OrderService::open(dir, Arc::new(CatalogPort(catalog)), step_timeout)
        .with_context(|| format!("cannot open the order service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, order::consumers::OrderSubscriber, keys);
    let clock_service = service.clone();
    let clock: Task =
        Arc::new(move |_log, stopped| tokio::spawn(clock_service.clone().run_clock(stopped)));
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "order",
        mount: Some(mount(
            "/api/orders",
            service.router(),
            OrderApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: Some(order::PRODUCER_ID),
        tasks: vec![consumer, clock],
    };
    Ok((service, wired))
}
