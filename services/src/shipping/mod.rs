//! Shipping: answers the saga's CreateShipment / CancelShipment from `shipping-commands`
//! (address validation, zone and cost, a tracking number), and moves shipments along
//! (dispatched, in transit, delivered) at an admin's or the carrier's word (a webhook with
//! its own token). Events on `shipping-events` (docs/order-flow.md).

pub mod apply;
pub mod carrier;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod model;
pub mod rates;
pub mod routes;

use crate::platform::{Engine, Store, StoreError};
use apply::Shipping;
use carrier::CarrierTokenError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The producer id shipping's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0006;

pub struct ShippingService {
    pub engine: Arc<Engine<Shipping>>,
    /// Where this node keeps its copy of the carrier token (`<services_dir>/shipping`).
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    CarrierToken(#[from] CarrierTokenError),
}

impl ShippingService {
    /// Opens shipping's store under `<services_dir>/shipping`. The carrier webhook refuses
    /// every call until a carrier token is installed: see
    /// [`ShippingService::ensure_carrier_token`].
    pub fn open(services_dir: &Path) -> Result<Arc<ShippingService>, OpenError> {
        let dir = services_dir.join("shipping");
        let store = Arc::new(Store::open(&dir)?);
        let engine = Engine::open(store, Shipping)?;
        Ok(Arc::new(ShippingService { engine, dir }))
    }

    /// At start: installs a carrier token unless shipping's state holds one (the token file
    /// of an older data directory, else a fresh token; the first installed wins
    /// cluster-wide), and writes the installed token to `<services_dir>/shipping/
    /// carrier-token`. It submits a command, so it runs once the engine takes commands (in a
    /// cluster, after it joined its group).
    pub fn ensure_carrier_token(&self) -> Result<(), OpenError> {
        carrier::ensure_installed(&self.engine, &self.dir)?;
        Ok(())
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }
}
