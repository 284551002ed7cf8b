//! Wiring the services: their stores under `<data-dir>/services/`, their routes handed to the
//! gateway, their outbox relays publishing through the built-in broker, and their consumers
//! and workers reading from it. One file per service says how that service is wired
//! ([`Wired`]); this file runs them all the same way.

mod analytics;
mod catalog;
mod identity;
mod inventory;
mod notification;
mod order;
mod payment;
mod shipping;

use crate::config::NodeSettings;
use crate::event_log::BrokerEventLog;
use commerce_broker::Broker;
use commerce_gateway::{ServiceMount, Services};
use commerce_services::identity::IdentityService;
use commerce_services::platform::consumer::{Consumer, Subscriber};
use commerce_services::platform::outbox::Relay;
use commerce_services::platform::resilience::{BreakerConfig, RetryPolicy};
use commerce_services::platform::{Engine, Store};
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// A background task a service runs once the broker is up: a consumer or a worker.
pub type Task =
    Box<dyn FnOnce(Arc<BrokerEventLog>, watch::Receiver<bool>) -> JoinHandle<()> + Send>;

/// One service, ready to run.
pub struct Wired {
    pub name: &'static str,
    pub store: Arc<Store>,
    /// Its routes, `None` for identity (the gateway mounts identity itself).
    pub mount: Option<ServiceMount>,
    /// Its outbox relay's fixed producer id and wake-up signal; `None` if it emits nothing.
    pub relay: Option<(i64, Arc<Notify>)>,
    pub tasks: Vec<Task>,
}

/// Every service of the node.
pub struct NodeServices {
    pub identity: Arc<IdentityService>,
    wired: Vec<Wired>,
}

pub fn open(settings: &NodeSettings) -> anyhow::Result<NodeServices> {
    let dir = settings.data_dir.join("services");
    let (identity, identity_wired) = identity::wire(&dir)?;
    let (catalog, catalog_wired) = catalog::wire(&dir)?;
    let (_inventory, inventory_wired) = inventory::wire(&dir)?;
    let (_payment, payment_wired) = payment::wire(&dir)?;
    let (_shipping, shipping_wired) = shipping::wire(&dir)?;
    let (_notification, notification_wired) = notification::wire(&dir)?;
    let (_analytics, analytics_wired) = analytics::wire(&dir)?;
    let (_order, order_wired) = order::wire(&dir, catalog, settings.saga_step_timeout)?;
    Ok(NodeServices {
        identity,
        wired: vec![
            identity_wired,
            catalog_wired,
            inventory_wired,
            payment_wired,
            shipping_wired,
            notification_wired,
            analytics_wired,
            order_wired,
        ],
    })
}

impl NodeServices {
    /// What the gateway serves.
    pub fn gateway(&self) -> Services {
        Services {
            identity: self.identity.clone(),
            mounts: self
                .wired
                .iter()
                .filter_map(|wired| wired.mount.clone())
                .collect(),
        }
    }

    /// Starts every relay, consumer and worker; each stops when `stopped` turns true.
    pub fn spawn(
        &mut self,
        broker: Arc<Broker>,
        stopped: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let log = Arc::new(BrokerEventLog::new(broker));
        let mut handles = Vec::new();
        for wired in &mut self.wired {
            if let Some((producer_id, signal)) = wired.relay.clone() {
                let relay = Relay {
                    service: wired.name,
                    store: wired.store.clone(),
                    log: log.clone(),
                    producer_id,
                    signal,
                };
                handles.push(tokio::spawn(relay.run(stopped.clone())));
            }
            for task in wired.tasks.drain(..) {
                handles.push(task(log.clone(), stopped.clone()));
            }
        }
        handles
    }

    /// Flushes the service stores on a clean stop.
    pub fn close(&self) {
        for wired in &self.wired {
            if let Err(error) = wired.store.sync() {
                tracing::warn!(service = wired.name, %error, "cannot flush the service store");
            }
        }
    }
}

/// The task that runs `subscriber` for the service behind `engine`, with the platform's
/// retry and circuit-breaker defaults.
fn consumer<S: Subscriber>(engine: Arc<Engine<S::Machine>>, subscriber: S) -> Task {
    Box::new(move |log, stopped| {
        let consumer = Consumer {
            log,
            engine,
            subscriber,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
        };
        tokio::spawn(consumer.run(stopped))
    })
}

/// A mount whose readiness follows its store's health.
fn mount(
    path: &'static str,
    router: axum::Router,
    openapi: utoipa::openapi::OpenApi,
    store: &Arc<Store>,
) -> ServiceMount {
    let store = store.clone();
    ServiceMount {
        path,
        router,
        openapi,
        healthy: Arc::new(move || store.is_healthy()),
    }
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
