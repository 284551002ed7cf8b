//! Wiring the services: their stores under `<data-dir>/services/`, their command logs as
//! Raft groups, their routes handed to the gateway, and their outbox relays, consumers and
//! workers, which run on the leader of the service's group only (`leadership.rs`). One file
//! per service says how that service is wired ([`Wired`]); this file runs them all the same
//! way.

mod analytics;
mod balance;
mod catalog;
pub mod catch_up;
mod engine_handle;
mod identity;
mod inventory;
pub mod leadership;
mod notification;
mod order;
mod payment;
mod shipping;
pub mod startup;

pub use engine_handle::ServiceEngine;

use crate::config::NodeSettings;
use commerce_gateway::idempotency::IdempotencyRecords;
use commerce_gateway::{ServiceMount, Services};
use commerce_services::identity::IdentityService;
use commerce_services::payment::PaymentService;
use commerce_services::platform::Engine;
use commerce_services::platform::consumer::{Consumer, Subscriber};
use commerce_services::platform::record_signature::{RecordKey, RecordKeys};
use commerce_services::platform::resilience::{BreakerConfig, RetryPolicy};
use commerce_services::shipping::ShippingService;
use commerce_storage::raft::{GroupId, GroupStart, RaftNode};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The event log the services publish to and consume from.
pub type ServiceLog = crate::node_event_log::NodeEventLog;

/// A background task a service's leader runs: a consumer or a worker. Called again each
/// time this node becomes the group's leader; the task stops when `stopped` turns true.
pub type Task = Arc<dyn Fn(Arc<ServiceLog>, watch::Receiver<bool>) -> JoinHandle<()> + Send + Sync>;

/// The operator's copy of the platform's record signing key, under `<data-dir>/services/`:
/// what a tool needs to write a record the services will accept (the key itself is derived
/// from identity's replicated token signing key, so every node holds the same).
pub const RECORD_KEY_FILE: &str = "record-signing-key";

/// Service groups' ids: far above the partition groups the controller numbers from 1.
const SERVICE_GROUP_BASE: u64 = 1 << 48;

/// Every replicated service state, in group id order (an id never changes once used).
pub const SERVICE_GROUPS: [&str; 11] = [
    "identity",
    "catalog",
    "inventory",
    "payment",
    "shipping",
    "notification",
    "analytics",
    "order",
    // The built-in stand-ins for outside systems every node shares: the test payment
    // provider's books and the notification sink's records.
    "payment-provider",
    "notification-sink",
    // The gateway's `Idempotency-Key` records, so a retry on another node is recognised.
    "gateway-idempotency",
];

/// The Raft group of the service state named `name`.
pub fn service_group(name: &str) -> Option<GroupId> {
    SERVICE_GROUPS
        .iter()
        .position(|known| *known == name)
        .and_then(|index| u64::try_from(index).ok())
        .map(|index| GroupId(SERVICE_GROUP_BASE + index + 1))
}

/// The service name of a group id, for status pages.
pub fn group_service(group: u64) -> Option<&'static str> {
    let index = group.checked_sub(SERVICE_GROUP_BASE + 1)?;
    SERVICE_GROUPS.get(usize::try_from(index).ok()?).copied()
}

/// Whether `group` can serve here: it has a leader, and if that is this node, a majority
/// acknowledged it lately. A node cut off from its majority finds no leader (its elections
/// fail); a `--join` node not yet added has no leader either.
pub fn group_ready(raft: &RaftNode, group: GroupId) -> Result<(), String> {
    let metrics = raft.metrics(group).map_err(|error| error.to_string())?;
    match metrics.current_leader {
        None => Err("its command log has no leader this node can reach".to_string()),
        Some(leader) if leader == raft.node_id() && !raft.leads(group, leadership::LEASE) => {
            Err("this node leads its command log but has lost its majority".to_string())
        }
        Some(_) => Ok(()),
    }
}

/// One service, ready to run.
pub struct Wired {
    pub name: &'static str,
    pub engine: Arc<dyn ServiceEngine>,
    /// Its routes, `None` for identity (the gateway mounts identity itself).
    pub mount: Option<ServiceMount>,
    /// Its outbox relay's fixed producer id; `None` if it emits nothing.
    pub producer_id: Option<i64>,
    pub tasks: Vec<Task>,
}

/// Every service of the node.
pub struct NodeServices {
    pub identity: Arc<IdentityService>,
    shipping: Arc<ShippingService>,
    payment: Arc<PaymentService>,
    idempotency: IdempotencyRecords,
    wired: Vec<Wired>,
    /// The platform's record signing key once installed: the relays sign with it, the
    /// consumers refuse records it did not sign.
    record_keys: RecordKeys,
    record_key_file: std::path::PathBuf,
}

/// A replicated state with no routes and no side effects of its own.
fn state_only(name: &'static str, engine: Arc<dyn ServiceEngine>) -> Wired {
    Wired {
        name,
        engine,
        mount: None,
        producer_id: None,
        tasks: Vec::new(),
    }
}

pub fn open(settings: &NodeSettings) -> anyhow::Result<NodeServices> {
    let dir = settings.data_dir.join("services");
    let keys = RecordKeys::default();
    let (identity, identity_wired) = identity::wire(&dir)?;
    let (catalog, catalog_wired) = catalog::wire(&dir, &keys)?;
    let (_inventory, inventory_wired) = inventory::wire(&dir, &keys)?;
    let (payment, payment_wired) = payment::wire(&dir, &keys)?;
    let (shipping, shipping_wired) = shipping::wire(&dir, &keys)?;
    let (notification, notification_wired) = notification::wire(&dir, &keys)?;
    let (_analytics, analytics_wired) = analytics::wire(&dir, &keys)?;
    let (_order, order_wired) = order::wire(
        &dir,
        catalog,
        payment.provider.clone(),
        settings.saga_step_timeout,
        &keys,
    )?;
    let provider = state_only("payment-provider", payment.provider.engine().clone());
    let sink = state_only("notification-sink", notification.sink.engine().clone());
    let idempotency_dir = settings.data_dir.join("gateway").join("idempotency");
    let idempotency = commerce_gateway::idempotency::open(&idempotency_dir).map_err(|error| {
        anyhow::anyhow!(
            "cannot open the idempotency records in {}: {error}",
            idempotency_dir.display()
        )
    })?;
    let idempotency_wired = state_only("gateway-idempotency", idempotency.clone());
    Ok(NodeServices {
        identity,
        shipping,
        payment,
        idempotency: IdempotencyRecords(idempotency, keys.clone()),
        wired: vec![
            identity_wired,
            catalog_wired,
            inventory_wired,
            payment_wired,
            shipping_wired,
            notification_wired,
            analytics_wired,
            order_wired,
            provider,
            sink,
            idempotency_wired,
        ],
        record_keys: keys,
        record_key_file: dir.join(RECORD_KEY_FILE),
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

    /// The gateway's replicated `Idempotency-Key` records.
    pub fn idempotency(&self) -> IdempotencyRecords {
        self.idempotency.clone()
    }

    /// Opens every service's Raft group on `raft`, each started as `start` says.
    pub async fn replicate(&self, raft: &Arc<RaftNode>, start: &GroupStart) -> anyhow::Result<()> {
        for wired in &self.wired {
            let group = service_group(wired.name).ok_or_else(|| {
                anyhow::anyhow!("the service {} has no Raft group id", wired.name)
            })?;
            wired
                .engine
                .replicate(raft.clone(), group, start.clone())
                .await
                .map_err(|error| {
                    anyhow::anyhow!(
                        "cannot open the {} service's command log: {error}",
                        wired.name
                    )
                })?;
        }
        Ok(())
    }

    /// What every node must share before it serves: the token signing key, the carrier
    /// webhook token and the payment provider's card fingerprint key (installed once, the
    /// first node's wins), and the record signing key derived from the token signing key.
    /// Commands, so they run once the groups are open, off the async workers (they block on
    /// the group's answers).
    pub async fn install_shared_secrets(&self) -> anyhow::Result<()> {
        let identity = self.identity.clone();
        let shipping = self.shipping.clone();
        let payment = self.payment.clone();
        let record_key_file = self.record_key_file.clone();
        let record_key = tokio::task::spawn_blocking(move || -> anyhow::Result<RecordKey> {
            payment.ensure_fingerprint_key().map_err(|error| {
                anyhow::anyhow!("cannot install the card fingerprint key: {error}")
            })?;
            let signing_key = identity.ensure_signing_key().map_err(|error| {
                anyhow::anyhow!("cannot install the token signing key: {error}")
            })?;
            shipping
                .ensure_carrier_token()
                .map_err(|error| anyhow::anyhow!("cannot install the carrier token: {error}"))?;
            // Derived, not stored on its own: the token signing key is already the one secret
            // every node holds the same (replicated by identity's group, first one wins, never
            // replaced), so the record key needs no replication of its own, and an upgraded
            // data directory gets it with no new state.
            let record_key = RecordKey::derive(signing_key.der()).map_err(|error| {
                anyhow::anyhow!("cannot derive the record signing key: {error}")
            })?;
            commerce_services::platform::secret_file::write_if_changed(
                &record_key_file,
                format!("{}\n", record_key.to_hex()).as_bytes(),
            )
            .map_err(|error| {
                anyhow::anyhow!("cannot write {}: {error}", record_key_file.display())
            })?;
            Ok(record_key)
        })
        .await??;
        if self.record_keys.current().as_ref() != Some(&record_key) {
            tracing::info!(key_id = record_key.id(), "record signing key installed");
            self.record_keys.install(record_key);
        }
        Ok(())
    }

    /// The groups of the services, for readiness: every one must have a leader.
    pub fn groups(&self) -> Vec<(&'static str, GroupId)> {
        self.wired
            .iter()
            .filter_map(|wired| Some((wired.name, service_group(wired.name)?)))
            .collect()
    }

    /// Starts, for every service, the supervisor that runs its relay, consumers and workers
    /// while this node leads the service's group, and the balancer that spreads the groups'
    /// leaders over the nodes; each stops when `stopped` turns true.
    pub fn spawn(
        &self,
        raft: Arc<RaftNode>,
        log: Arc<ServiceLog>,
        stopped: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        self.wired
            .iter()
            .filter_map(|wired| {
                let group = service_group(wired.name)?;
                let leader = leadership::LeaderTasks {
                    service: wired.name,
                    engine: wired.engine.clone(),
                    producer_id: wired.producer_id,
                    tasks: wired.tasks.clone(),
                    record_keys: self.record_keys.clone(),
                };
                Some(tokio::spawn(leader.run(
                    raft.clone(),
                    group,
                    log.clone(),
                    stopped.clone(),
                )))
            })
            .chain(std::iter::once(tokio::spawn(
                balance::run_service_leader_balancer(raft.clone(), stopped.clone()),
            )))
            .collect()
    }

    /// Flushes the service stores on a clean stop.
    pub fn close(&self) {
        for wired in &self.wired {
            if let Err(error) = wired.engine.store().sync() {
                tracing::warn!(service = wired.name, %error, "cannot flush the service store");
            }
        }
    }
}

/// The task that runs `subscriber` for the service behind `engine`, with the platform's
/// retry and circuit-breaker defaults, applying only records signed with the platform's key.
fn consumer<S: Subscriber + Clone>(
    engine: Arc<Engine<S::Machine>>,
    subscriber: S,
    keys: &RecordKeys,
) -> Task {
    let keys = keys.clone();
    Arc::new(move |log, stopped| {
        let consumer = Consumer {
            log,
            engine: engine.clone(),
            subscriber: subscriber.clone(),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            keys: keys.clone(),
        };
        tokio::spawn(consumer.run(stopped))
    })
}

/// A mount whose readiness follows its store's health, and whose every request first waits
/// for this node's replica to have applied what the group's leader had committed (so any
/// node answers as the leader would).
fn mount(
    path: &'static str,
    router: axum::Router,
    openapi: utoipa::openapi::OpenApi,
    engine: Arc<dyn ServiceEngine>,
) -> ServiceMount {
    let healthy = engine.clone();
    let router = router.layer(axum::middleware::from_fn_with_state(engine, read_barrier));
    ServiceMount {
        path,
        router,
        openapi,
        healthy: Arc::new(move || healthy.store().is_healthy()),
    }
}

async fn read_barrier(
    axum::extract::State(engine): axum::extract::State<Arc<dyn ServiceEngine>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    commerce_services::platform::http::after_barrier(engine.read_barrier(), request, next).await
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
