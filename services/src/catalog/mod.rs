//! Catalog: products (unique SKU, price in minor units, category, metadata), admin writes,
//! public browsing with search, category filter and pages over a cached product list.
//! Events on `catalog-events`. Consumes `identity-events` into its own read model of the
//! users who write products (`consumers.rs`, `GET /api/catalog/authors/{id}`).

pub mod apply;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod model;
pub mod routes;

use crate::platform::{Engine, ReadTx, Store, StoreError};
use apply::{Catalog, PRODUCTS};
use model::Product;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The producer id catalog's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0002;

pub struct CatalogService {
    pub engine: Arc<Engine<Catalog>>,
    /// Every product, read once and shared by list requests until the next applied command
    /// (made through any node): browsing is far more frequent than catalog changes. Keyed by
    /// the applied index it was read at.
    cache: RwLock<Option<(u64, Arc<Vec<Product>>)>>,
}

impl CatalogService {
    pub fn open(services_dir: &Path) -> Result<Arc<CatalogService>, StoreError> {
        let store = Arc::new(Store::open(&services_dir.join("catalog"))?);
        let engine = Engine::open(store, Catalog)?;
        Ok(Arc::new(CatalogService {
            engine,
            cache: RwLock::new(None),
        }))
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// One product as stored now (None if there is none, or it was deleted).
    pub fn product(&self, id: &str) -> Result<Option<Product>, StoreError> {
        PRODUCTS.get(self.engine.store().as_ref(), id)
    }

    pub(crate) fn all_products(&self) -> Result<Arc<Vec<Product>>, StoreError> {
        let applied = self.engine.applied_index();
        if let Ok(cache) = self.cache.read()
            && let Some((at, products)) = cache.as_ref()
            && *at == applied
        {
            return Ok(products.clone());
        }
        let store: &dyn ReadTx = self.engine.store().as_ref();
        let mut products = PRODUCTS.scan(store)?;
        products.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let products = Arc::new(products);
        if let Ok(mut cache) = self.cache.write() {
            *cache = Some((applied, products.clone()));
        }
        Ok(products)
    }

    pub(crate) fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.write() {
            *cache = None;
        }
    }
}
