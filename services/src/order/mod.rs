//! Order: customers place orders (priced from the catalog at order time) and the order saga
//! ([`saga`]) drives them through inventory, payment and shipping by commands on their command
//! topics, listening to their replies (`consumers.rs`), compensating on failure, timeout or
//! customer cancel. Events on `order-events`. The contract with the participants is
//! docs/order-flow.md.
//!
//! Order never reads catalog's store: it asks a [`ProductCatalog`] port, which the composition
//! root implements over the catalog service. It never keeps a card number either: the number
//! an order request carries is exchanged for the payment provider's token through the
//! [`CardTokenizer`] port before the order's command is built.

pub mod apply;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod model;
pub mod placement;
pub mod routes;
pub mod saga;
pub mod validate;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod saga_tests;

use crate::platform::card::{CardNumber, CardPayment};
use crate::platform::{Engine, ReadTx, Store, StoreError};
use apply::{OPEN_STEPS, Orders};
use commands::Command;
use model::Money;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The producer id order's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0003;

/// How often the clock looks for overdue steps.
const CLOCK_PERIOD: Duration = Duration::from_secs(1);

/// A product as order needs it to price a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub price: Money,
    pub weight_grams: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("the catalog cannot be read: {0}")]
pub struct CatalogError(pub String);

/// The port to the catalog (implemented by the composition root).
pub trait ProductCatalog: Send + Sync + 'static {
    /// The product with this id; None if it does not exist (or was deleted).
    fn product(&self, id: &str) -> Result<Option<ProductInfo>, CatalogError>;

    /// Waits until reads here include every catalog write answered anywhere (in a cluster,
    /// a write made through another node a moment ago). Asked before a product is called
    /// unknown.
    fn catch_up(&self) -> CatchUp<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// What [`ProductCatalog::catch_up`] returns.
pub type CatchUp<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CatalogError>> + Send + 'a>>;

/// A card as the provider tokenized it, with its keyed fingerprint (which tells a retried
/// request from another one without the number).
#[derive(Debug, Clone)]
pub struct TokenizedCard {
    pub payment: CardPayment,
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the card cannot be tokenized now: {0}")]
pub struct TokenizeError(pub String);

/// The port to the payment provider's tokenization (implemented by the composition root).
pub trait CardTokenizer: Send + Sync + 'static {
    /// The card's keyed fingerprint, computed without recording anything.
    fn fingerprint(&self, card: &CardNumber) -> Result<String, TokenizeError>;

    /// Exchanges the number for a token the payment service can charge.
    fn tokenize<'a>(&'a self, card: &'a CardNumber) -> Tokenizing<'a>;
}

/// What [`CardTokenizer::tokenize`] returns.
pub type Tokenizing<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<TokenizedCard, TokenizeError>> + Send + 'a>,
>;

pub struct OrderService {
    pub engine: Arc<Engine<Orders>>,
    catalog: Arc<dyn ProductCatalog>,
    cards: Arc<dyn CardTokenizer>,
    /// How long a saga step may wait for its reply (fixed into each order when placed).
    step_timeout_ms: i64,
}

impl OrderService {
    pub fn open(
        services_dir: &Path,
        catalog: Arc<dyn ProductCatalog>,
        cards: Arc<dyn CardTokenizer>,
        step_timeout: Duration,
    ) -> Result<Arc<OrderService>, StoreError> {
        let store = Arc::new(Store::open(&services_dir.join("order"))?);
        let engine = Engine::open(store, Orders)?;
        Ok(Arc::new(OrderService {
            engine,
            catalog,
            cards,
            step_timeout_ms: i64::try_from(step_timeout.as_millis()).unwrap_or(i64::MAX),
        }))
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// Whether a step is overdue at `now_ms` (read-only, so an idle clock logs nothing).
    pub fn has_overdue_step(&self, now_ms: i64) -> Result<bool, StoreError> {
        let store: &dyn ReadTx = self.engine.store().as_ref();
        Ok(OPEN_STEPS
            .scan(store)?
            .iter()
            .any(|open| open.deadline_ms <= now_ms))
    }

    /// The saga's clock: every second, if a step is overdue, submits `Tick { now }` (the time
    /// fixed here, before the command is logged) so apply times the steps out.
    pub async fn run_clock(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CLOCK_PERIOD) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            let now_ms = crate::platform::time::now_ms();
            match self.has_overdue_step(now_ms) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(error) => {
                    tracing::warn!(%error, "the order clock cannot read open steps");
                    continue;
                }
            }
            let context = crate::platform::engine::CommandContext {
                correlation_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            };
            if let Err(error) = self.engine.submit(Command::Tick { now_ms }, context).await {
                tracing::warn!(%error, "the order clock cannot submit a tick");
            }
        }
    }
}
