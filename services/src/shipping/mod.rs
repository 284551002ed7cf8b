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
use carrier::{CarrierToken, CarrierTokenError};
use std::path::Path;
use std::sync::Arc;

/// The producer id shipping's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0006;

pub struct ShippingService {
    pub engine: Arc<Engine<Shipping>>,
    pub carrier_token: CarrierToken,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    CarrierToken(#[from] CarrierTokenError),
}

impl ShippingService {
    /// Opens shipping's store and its carrier token under `<services_dir>/shipping`.
    pub fn open(services_dir: &Path) -> Result<Arc<ShippingService>, OpenError> {
        let dir = services_dir.join("shipping");
        let store = Arc::new(Store::open(&dir)?);
        let engine = Engine::open(store, Shipping)?;
        let carrier_token = CarrierToken::load_or_create(&dir)?;
        Ok(Arc::new(ShippingService {
            engine,
            carrier_token,
        }))
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }
}
