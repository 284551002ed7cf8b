//! order: orders and the order saga, pricing from the catalog through the order service's
//! `ProductCatalog` port and tokenizing cards through its `CardTokenizer` port (the payment
//! provider's tokenization).

use super::{ServiceEngine, Task, Wired, consumer, mount};
use anyhow::Context;
use commerce_services::catalog::CatalogService;
use commerce_services::order::routes::OrderApi;
use commerce_services::order::{
    self, CardTokenizer, CatalogError, OrderService, ProductCatalog, ProductInfo, TokenizeError,
    TokenizedCard, Tokenizing,
};
use commerce_services::payment::provider::TestProvider;
use commerce_services::platform::card::{CardNumber, CardPayment};
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

/// The payment provider's tokenization as order sees it: the built-in test provider, whose
/// vault is replicated, so a token made on this node is charged by whichever node runs the
/// payment service.
struct TokenizerPort(TestProvider);

impl CardTokenizer for TokenizerPort {
    fn fingerprint(&self, card: &CardNumber) -> Result<String, TokenizeError> {
        self.0
            .fingerprint(card)
            .map_err(|error| TokenizeError(error.to_string()))
    }

    fn tokenize<'a>(&'a self, card: &'a CardNumber) -> Tokenizing<'a> {
        Box::pin(async move {
            let token = self
                .0
                .tokenize(card)
                .await
                .map_err(|error| TokenizeError(error.to_string()))?;
            Ok(TokenizedCard {
                payment: CardPayment {
                    token: token.token,
                    card_last4: token.card_last4,
                },
                fingerprint: token.fingerprint,
            })
        })
    }
}

pub fn wire(
    dir: &Path,
    catalog: Arc<CatalogService>,
    provider: TestProvider,
    step_timeout: Duration,
    keys: &RecordKeys,
) -> anyhow::Result<(Arc<OrderService>, Wired)> {
    let service = OrderService::open(
        dir,
        Arc::new(CatalogPort(catalog)),
        Arc::new(TokenizerPort(provider)),
        step_timeout,
    )
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
