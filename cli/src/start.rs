//! `commerce start`: run one node — the Kafka listener, the services with their outbox
//! relays, the HTTP gateway and the log maintenance — until SIGTERM or ctrl-c, then stop cleanly (listeners closed, logs flushed
//! and closed, so the next start skips recovery scans).

use crate::cluster::runtime::ClusterRuntime;
use crate::cluster_event_log::ClusterEventLog;
use crate::config::{NodeArgs, NodeSettings};
use crate::event_log::BrokerEventLog;
use crate::node_event_log::NodeEventLog;
use crate::services::startup::{
    PREPARE_WAIT, cluster_service_start, prepare_when_possible, start_local_raft, wait_for,
};
use anyhow::Context;
use commerce_broker::controller::NodeRecord;
use commerce_broker::replication::Replication;
use commerce_broker::{Broker, BrokerConfig};
use commerce_storage::raft::{GroupId, GroupStart, RaftNode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long in-flight requests get to finish once a stop is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often interval flushes and retention run.
const MAINTENANCE_PERIOD: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub async fn run(args: StartArgs) -> anyhow::Result<()> {
    let settings = NodeSettings::resolve(args.node)?;
    init_tracing(&settings.log_level);

    let kafka_listener = TcpListener::bind(settings.kafka_addr)
        .await
        .with_context(|| format!("cannot listen for Kafka on {}", settings.kafka_addr))?;
    let http_listener = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", settings.http_addr))?;
    let kafka_addr = kafka_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let advertised_host = advertised_host(&settings, kafka_addr);
    let (stop, stopped) = watch::channel(false);
    let cluster = match &settings.cluster {
        Some(cluster) => {
            let me = NodeRecord {
                id: cluster.node_id,
                kafka_addr: format!("{advertised_host}:{}", kafka_addr.port()),
                raft_addr: cluster.raft_addr.to_string(),
                http_addr: http_addr.to_string(),
            };
            let runtime = ClusterRuntime::start(
                cluster,
                &settings.data_dir,
                me,
                settings.raft,
                stopped.clone(),
            )
            .await?;
            Some(Arc::new(runtime))
        }
        None => None,
    };
    let replication = match (&cluster, &settings.cluster) {
        (Some(runtime), Some(cluster)) => Some(Replication::new(
            runtime.raft(),
            runtime.metadata(),
            cluster.node_id,
        )),
        _ => None,
    };
    let broker = open_broker(&settings, kafka_addr, &advertised_host, replication)?;
    // Every service's command log is a Raft group: with the cluster's voters, or this node
    // alone.
    let (raft, service_start) = match (&cluster, &settings.cluster) {
        (Some(runtime), Some(cluster)) => (runtime.raft(), cluster_service_start(cluster)),
        _ => {
            let raft = start_local_raft(&settings).await?;
            let me = BTreeMap::from([(raft.node_id(), raft.addr().to_string())]);
            (raft, GroupStart::Bootstrap(me))
        }
    };
    let services = crate::services::open(&settings)?;
    services.replicate(&raft, &service_start).await?;
    let services = Arc::new(services);
    let admin_ready = Arc::new(AtomicBool::new(false));
    let admin_task = tokio::spawn(prepare_when_possible(
        services.clone(),
        settings.admin.clone(),
        admin_ready.clone(),
        stopped.clone(),
    ));
    let metrics = commerce_gateway::metrics::Metrics::install()
        .map_err(|error| anyhow::anyhow!("cannot install the metrics recorder: {error}"))?;
    let gateway = commerce_gateway::GatewayConfig {
        rate_limit_per_minute: settings.rate_limit_per_minute,
        cors_origins: settings.cors_origins.clone(),
        body_read_timeout: settings.http_limits.body_timeout,
        idempotency: Some(services.idempotency()),
        ..commerce_gateway::GatewayConfig::default()
    };
    let mut gateway_services = services.gateway();
    if let Some(cluster) = &cluster {
        gateway_services
            .mounts
            .push(crate::cluster::admin::mount(cluster.clone()));
    }
    let service_groups: Vec<GroupId> = services.groups().iter().map(|(_, g)| *g).collect();
    let catch_up = crate::services::catch_up::CatchUp::new(&service_groups);
    let catch_up_task = tokio::spawn(catch_up.clone().watch(
        raft.clone(),
        service_groups,
        stopped.clone(),
    ));
    let ready = readiness(
        &broker,
        raft.clone(),
        services.groups(),
        catch_up,
        admin_ready.clone(),
    );
    let mut app = commerce_gateway::router(&gateway, gateway_services, ready, metrics)
        .context("cannot build the HTTP gateway")?;
    if let Some(cluster) = &cluster {
        app = app.merge(crate::cluster::status::router(cluster.clone()));
    }

    let kafka = tokio::spawn(commerce_broker::server::run(
        kafka_listener,
        broker.clone(),
        stopped.clone(),
    ));
    let maintenance = tokio::spawn(run_maintenance(broker.clone(), stopped.clone()));
    let group_timers = tokio::spawn(commerce_broker::group::run_timers(
        broker.clone(),
        stopped.clone(),
    ));
    let reconciler = tokio::spawn(commerce_broker::replication::run_reconciler(
        broker.clone(),
        stopped.clone(),
    ));
    let coordination = tokio::spawn(commerce_broker::replication::run_ownership(
        broker.clone(),
        stopped.clone(),
    ));
    let balancer = tokio::spawn(commerce_broker::replication::run_leader_balancer(
        broker.clone(),
        stopped.clone(),
    ));
    let mut background = vec![
        kafka,
        maintenance,
        group_timers,
        reconciler,
        coordination,
        balancer,
    ];
    // The services publish to and consume from this node's log, or in a cluster the
    // cluster's replicated topics (through the Kafka protocol, to whichever node leads each
    // partition or coordinates each group).
    let service_log = Arc::new(match &cluster {
        None => NodeEventLog::Local(BrokerEventLog::new(broker.clone())),
        Some(_) => NodeEventLog::Cluster(
            ClusterEventLog::connect(&format!("{advertised_host}:{}", kafka_addr.port()))
                .map_err(|error| anyhow::anyhow!("cannot reach the cluster's log: {error}"))?,
        ),
    });
    let mut service_tasks = services.spawn(raft.clone(), service_log, stopped.clone());
    service_tasks.push(admin_task);
    service_tasks.push(catch_up_task);
    // HTTP is served once the shared secrets and the configured admin are in place (a node
    // alone elects itself at once, a cluster as soon as a majority runs), so a client's
    // first request finds them. A node without its majority serves after the wait anyway,
    // answering 503 where its readiness says so.
    wait_for(&admin_ready, PREPARE_WAIT).await;
    let listener_config = commerce_gateway::server::ListenerConfig {
        limits: commerce_gateway::server::ConnectionLimits {
            total: settings.http_limits.max_connections,
            per_ip: settings.http_limits.max_connections_per_ip,
        },
        header_read_timeout: settings.http_limits.header_timeout,
        // Within the wait for background tasks below, so the listener's own warning names
        // the connections still open.
        drain_timeout: DRAIN_TIMEOUT.saturating_sub(Duration::from_millis(500)),
    };
    background.push(tokio::spawn(commerce_gateway::server::serve(
        http_listener,
        app,
        listener_config,
        stopped.clone(),
    )));

    let raft_note = settings
        .cluster
        .as_ref()
        .map(|cluster| format!(", raft {}", cluster.raft_addr))
        .unwrap_or_default();
    println!(
        "commerce node {} listening: kafka {kafka_addr}, http {http_addr}{raft_note}, data {}",
        settings.node_id,
        settings.data_dir.display()
    );
    wait_for_stop_signal().await?;
    tracing::info!("stopping");
    let _ = stop.send(true);
    for task in background.into_iter().chain(service_tasks) {
        if tokio::time::timeout(DRAIN_TIMEOUT, task).await.is_err() {
            tracing::warn!("a task did not stop within {DRAIN_TIMEOUT:?}");
        }
    }
    if let Some(cluster) = cluster {
        drop(raft);
        match Arc::try_unwrap(cluster) {
            Ok(cluster) => cluster.shutdown().await,
            Err(_) => tracing::warn!("the cluster runtime is still in use; not shut down cleanly"),
        }
    } else {
        raft.shutdown().await;
    }
    services.close();
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    println!("commerce node {} stopped", settings.node_id);
    Ok(())
}

fn advertised_host(settings: &NodeSettings, kafka_addr: std::net::SocketAddr) -> String {
    match &settings.advertised_host {
        Some(host) => host.clone(),
        None if kafka_addr.ip().is_unspecified() => "127.0.0.1".to_string(),
        None => kafka_addr.ip().to_string(),
    }
}

fn broker_config(
    settings: &NodeSettings,
    data_dir: std::path::PathBuf,
    kafka_addr: std::net::SocketAddr,
    advertised_host: &str,
) -> BrokerConfig {
    let mut config = BrokerConfig::single_node(data_dir, kafka_addr);
    config.node_id = settings.node_id;
    config.num_partitions = settings.num_partitions;
    config.auto_create_topics = settings.auto_create_topics;
    config.log_flush = settings.log_flush;
    config.max_request_bytes = settings.max_request_bytes;
    config.advertised_host = advertised_host.to_string();
    config
}

fn open_broker(
    settings: &NodeSettings,
    kafka_addr: std::net::SocketAddr,
    advertised_host: &str,
    replication: Option<Replication>,
) -> anyhow::Result<Arc<Broker>> {
    let config = broker_config(
        settings,
        settings.data_dir.clone(),
        kafka_addr,
        advertised_host,
    );
    let opened = match replication {
        Some(replication) => Broker::open_replicated(config, replication),
        None => Broker::open(config),
    };
    opened.with_context(|| {
        format!(
            "cannot open the data directory {}",
            settings.data_dir.display()
        )
    })
}

/// Ready when the data directory is still there, every service's group has a leader this
/// node can reach (a node cut off from its majority, or a `--join` node not yet added, has
/// none) and this node's replica has caught up with it, and the configured admin exists.
fn readiness(
    broker: &Broker,
    raft: Arc<RaftNode>,
    groups: Vec<(&'static str, GroupId)>,
    catch_up: Arc<crate::services::catch_up::CatchUp>,
    admin_ready: Arc<AtomicBool>,
) -> commerce_gateway::ReadinessCheck {
    let data_dir = broker.config().data_dir.clone();
    Arc::new(move || {
        std::fs::metadata(data_dir.join("metadata.redb"))
            .map_err(|error| format!("metadata store unavailable: {error}"))?;
        for (service, group) in &groups {
            crate::services::group_ready(&raft, *group)
                .and_then(|()| catch_up.check(*group))
                .map_err(|why| format!("the {service} service is not available here: {why}"))?;
        }
        if !admin_ready.load(Ordering::Acquire) {
            return Err(
                "the shared signing key, carrier token or configured admin is not in place yet"
                    .to_string(),
            );
        }
        Ok(())
    })
}

async fn run_maintenance(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(MAINTENANCE_PERIOD);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        let broker = broker.clone();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // fsync and file deletion block: keep them off the async workers.
        let blocking = broker.clone();
        if let Err(error) =
            tokio::task::spawn_blocking(move || blocking.run_maintenance(now_ms)).await
        {
            tracing::error!(%error, "maintenance task failed");
        }
        commerce_broker::replication::enforce_retention(&broker, now_ms).await;
    }
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for ctrl-c")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// openraft logs every failed RPC to an unreachable peer, for each group, several lines a
/// heartbeat, and every election step at INFO. The Raft transport says once when a peer
/// becomes unreachable and again when it answers; unless a filter names openraft itself,
/// only openraft's warnings and errors outside that chatter are kept.
const QUIET_OPENRAFT: &str =
    "openraft=warn,openraft::replication=off,openraft::engine::handler::replication_handler=off";

fn init_tracing(filter: &str) {
    let wanted = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| filter.to_string());
    let directives = if wanted.contains("openraft") {
        wanted
    } else {
        format!("{wanted},{QUIET_OPENRAFT}")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
