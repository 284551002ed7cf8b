//! analytics: aggregates over every domain topic; emits nothing, so it has no relay.

use super::{Task, Wired, mount};
use anyhow::Context;
use commerce_services::analytics::routes::AnalyticsApi;
use commerce_services::analytics::{self, AnalyticsService};
use commerce_services::platform::consumer::Consumer;
use commerce_services::platform::resilience::{BreakerConfig, RetryPolicy};
use std::path::Path;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<AnalyticsService>, Wired)> {
    let service = AnalyticsService::open(dir)
        .with_context(|| format!("cannot open the analytics service in {}", dir.display()))?;
    let engine = service.engine.clone();
    let consumer: Task = Box::new(move |log, stopped| {
        let consumer = Consumer {
            log,
            engine,
            subscriber: analytics::consumers::AnalyticsSubscriber,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
        };
        tokio::spawn(consumer.run(stopped))
    });
    let store = service.engine.store().clone();
    let wired = Wired {
        name: "analytics",
        mount: Some(mount(
            "/api/analytics",
            service.router(),
            AnalyticsApi::openapi(),
            &store,
        )),
        store,
        relay: None,
        tasks: vec![consumer],
    };
    Ok((service, wired))
}
