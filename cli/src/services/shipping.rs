//! shipping: shipments for the order saga, status changes by admins and the carrier.

use super::{ServiceEngine, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::platform::record_signature::RecordKeys;
use commerce_services::shipping::routes::ShippingApi;
use commerce_services::shipping::{self, ShippingService};
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path, keys: &RecordKeys) -> anyhow::Result<(Arc<ShippingService>, Wired)> {
    let service = ShippingService::open(dir)
        .with_context(|| format!("cannot open the shipping service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, shipping::consumers::ShippingSubscriber, keys);
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "shipping",
        mount: Some(mount(
            "/api/shipping",
            service.router(),
            ShippingApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: Some(shipping::PRODUCER_ID),
        tasks: vec![consumer],
    };
    Ok((service, wired))
}
