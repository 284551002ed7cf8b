//! Analytics: a read model over every domain topic (identity, catalog, order, payment,
//! inventory, shipping events), aggregated as the events arrive into its own store: order
//! counts, revenue and refunds, conversion, top products, per-minute series. Admin routes
//! under `/api/analytics`; it emits nothing.
//!
//! Each event is applied once (the platform's inbox), and each order transition is counted
//! once per order even if an event is published again under a new id.

pub mod apply;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod model;
pub mod routes;

use crate::platform::{Engine, Store, StoreError};
use apply::Analytics;
use std::path::Path;
use std::sync::Arc;

pub struct AnalyticsService {
    pub engine: Arc<Engine<Analytics>>,
}

impl AnalyticsService {
    pub fn open(services_dir: &Path) -> Result<Arc<AnalyticsService>, StoreError> {
        let store = Arc::new(Store::open(&services_dir.join("analytics"))?);
        let engine = Engine::open(store, Analytics)?;
        Ok(Arc::new(AnalyticsService { engine }))
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }
}
