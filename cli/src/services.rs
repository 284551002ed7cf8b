//! Wiring the services: their stores under `<data-dir>/services/`, their outbox relays
//! publishing through the built-in broker, their event consumers reading from it, and the
//! bootstrap admin.

use crate::event_log::BrokerEventLog;
use anyhow::Context;
use commerce_broker::Broker;
use commerce_gateway::Services;
use commerce_services::catalog::{self, CatalogService};
use commerce_services::identity::{self, IdentityService};
use commerce_services::platform::consumer::Consumer;
use commerce_services::platform::outbox::Relay;
use commerce_services::platform::resilience::{BreakerConfig, RetryPolicy};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn open(data_dir: &Path) -> anyhow::Result<Services> {
    let dir = data_dir.join("services");
    let identity = IdentityService::open(&dir)
        .with_context(|| format!("cannot open the identity service in {}", dir.display()))?;
    let catalog = CatalogService::open(&dir)
        .with_context(|| format!("cannot open the catalog service in {}", dir.display()))?;
    Ok(Services { identity, catalog })
}

/// One relay per service, each with its fixed producer id.
pub fn spawn_relays(
    services: &Services,
    broker: Arc<Broker>,
    stopped: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let log = Arc::new(BrokerEventLog::new(broker));
    let identity = Relay {
        service: "identity",
        store: services.identity.engine.store().clone(),
        log: log.clone(),
        producer_id: identity::PRODUCER_ID,
        signal: services.identity.engine.outbox_signal(),
    };
    let catalog = Relay {
        service: "catalog",
        store: services.catalog.engine.store().clone(),
        log,
        producer_id: catalog::PRODUCER_ID,
        signal: services.catalog.engine.outbox_signal(),
    };
    vec![
        tokio::spawn(identity.run(stopped.clone())),
        tokio::spawn(catalog.run(stopped)),
    ]
}

/// One consumer per service that reacts to events (catalog, of identity's).
pub fn spawn_consumers(
    services: &Services,
    broker: Arc<Broker>,
    stopped: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let catalog = Consumer {
        log: Arc::new(BrokerEventLog::new(broker)),
        engine: services.catalog.engine.clone(),
        subscriber: catalog::consumers::CatalogSubscriber,
        retry: RetryPolicy::default(),
        breaker: BreakerConfig::default(),
    };
    vec![tokio::spawn(catalog.run(stopped))]
}

/// Creates the configured admin unless an account with that email exists.
pub async fn ensure_admin(
    identity: &IdentityService,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let created = identity
        .ensure_admin(email, password)
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the admin {email}: {error}"))?;
    if created {
        tracing::info!(%email, "created the admin account");
    }
    Ok(())
}

/// Flushes the service stores on a clean stop.
pub fn close(services: &Services) {
    for (name, store) in [
        ("identity", services.identity.engine.store()),
        ("catalog", services.catalog.engine.store()),
    ] {
        if let Err(error) = store.sync() {
            tracing::warn!(service = name, %error, "cannot flush the service store");
        }
    }
}
