//! Inventory: stock per product and warehouse, reservations per order (all or nothing, with
//! an expiry), release, commit on shipment, low-stock alerts. It answers the order saga's
//! commands from `inventory-commands` (`consumers.rs`) with events on `inventory-events`
//! (docs/order-flow.md); admins set and adjust stock over HTTP.
//!
//! Never oversell: every reservation is one command applied in log order against the stock
//! record, so two orders for the last unit cannot both see it free.

pub mod apply;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod expiry;
pub mod model;
pub mod routes;

use crate::platform::{Engine, Store, StoreError};
use apply::Inventory;
use std::path::Path;
use std::sync::Arc;

/// The producer id inventory's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0004;

pub struct InventoryService {
    pub engine: Arc<Engine<Inventory>>,
}

impl InventoryService {
    pub fn open(services_dir: &Path) -> Result<Arc<InventoryService>, StoreError> {
        let store = Arc::new(Store::open(&services_dir.join("inventory"))?);
        let engine = Engine::open(store, Inventory)?;
        Ok(Arc::new(InventoryService { engine }))
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }
}
