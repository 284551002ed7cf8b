//! analytics: aggregates over every domain topic; emits nothing, so it has no relay.

use super::{ServiceEngine, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::analytics::routes::AnalyticsApi;
use commerce_services::analytics::{self, AnalyticsService};
use commerce_services::platform::record_signature::RecordKeys;
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path, keys: &RecordKeys) -> anyhow::Result<(Arc<AnalyticsService>, Wired)> {
    let service = AnalyticsService::open(dir)
        .with_context(|| format!("cannot open the analytics service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer = consumer(engine, analytics::consumers::AnalyticsSubscriber, keys);
    let handle: Arc<dyn ServiceEngine> = service.engine.clone();
    let wired = Wired {
        name: "analytics",
        mount: Some(mount(
            "/api/analytics",
            service.router(),
            AnalyticsApi::openapi(),
            handle.clone(),
        )),
        engine: handle,
        producer_id: None,
        tasks: vec![consumer],
    };
    Ok((service, wired))
}
